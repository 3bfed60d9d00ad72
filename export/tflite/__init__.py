"""``export.tflite``: a trained model directory to a verified TFLite model (int8 by default).

Library entry point :func:`export_tflite`; ``python -m export.tflite`` is a thin CLI over it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TFLiteExportConfig
from ..int8 import Int8Format, quantize
from ..metadata import build_metadata, embed_tflite, seal_artifact
from ..publish import staged_file
from ..session import ExportResult, ExportSession

log = logging.getLogger("export")

__all__ = ["TFLiteExportConfig", "export_tflite"]

_PRECISION = {"int8": "int8 weights and activations (per-channel weights)",
              "float16": "float16 weights, float32 compute", "dynamic": "int8 weights, float activations"}


def export_tflite(cfg: TFLiteExportConfig) -> ExportResult:
    """Convert, embed metadata, verify against the float SavedModel and publish one ``.tflite``."""
    session = ExportSession.open(cfg, [cfg.artifact_name], needs_calibration=cfg.mode == "int8")
    if cfg.mode != "int8":
        return _export_float(session, cfg)
    with tempfile.TemporaryDirectory(prefix="inception-edge-tflite-") as tmp:
        return _export_int8(session, cfg, Path(tmp))


def _export_float(session: ExportSession, cfg: TFLiteExportConfig) -> ExportResult:
    from . import convert

    start = time.perf_counter()
    model = convert.read_model(convert.convert(str(session.source.saved_model), cfg.mode))
    seconds = round(time.perf_counter() - start, 2)
    metadata = build_metadata(session.source, {"format": "tflite", "mode": cfg.mode, "precision": _PRECISION[cfg.mode],
                                               "bias_correction": None},
                              {"dtype": "float32", "quantization": None}, None)
    return _publish(session, cfg, model, metadata, {"convert_seconds": seconds})


def _export_int8(session: ExportSession, cfg: TFLiteExportConfig, work: Path) -> ExportResult:
    """The shared int8 recipe (:func:`export.int8.quantize`) over TFLite builds from one calibration; publish."""
    from . import convert, layers

    builds: dict[int, Any] = {}

    def calibrate(pixels: np.ndarray) -> Int8Format:
        calibrated = convert.calibrate(str(session.source.saved_model), pixels)

        def build(float_nodes: list[str], step: int) -> tuple[Path, dict[str, Any]]:
            model = convert.read_model(convert.quantize(calibrated, cfg.input_type, float_nodes, cfg.artifact_name))
            record: dict[str, Any] = {"input_quantization": convert.pin_input_quantization(model, cfg.input_type)}
            leftover = convert.float_kernels(model)
            if leftover and not float_nodes:
                raise RuntimeError(f"full-integer conversion left float kernels: {leftover}")
            record["float_kernels"] = leftover
            record["bias_correction"] = _correct_bias(session, model, work / f"probe{step}.tflite") if cfg.bias_correction else None
            path = work / f"step{step}.tflite"
            path.write_bytes(convert.write_model(model))
            builds[step] = model
            return path, record

        return Int8Format(
            build=build, layer_errors=lambda images: layers.layer_errors(calibrated, images),
            layer_method="TFLite debug-mode model, as QuantizationDebugger builds it: each op in int8 vs in float on the "
                         "same dequantized inputs (NumericVerify), reference kernels",
            fallback_group=lambda layer: layers.fallback_group(builds[0], layer.tensor), kernel_sets=cfg.verify_kernels)

    outcome = quantize(session, cfg, calibrate, work)
    record, float_layers = outcome.record, outcome.float_layers
    precision = _PRECISION["int8"] + (f"; kept float: {', '.join(float_layers)}" if float_layers else "")
    metadata = build_metadata(session.source, {"format": "tflite", "mode": "int8", "precision": precision,
                                               "bias_correction": record["bias_correction"],
                                               "float_layers": float_layers},
                              {"dtype": cfg.input_type, "quantization": record["input_quantization"]},
                              session.calibration().record)
    return _publish(session, cfg, builds[outcome.step], metadata, {**outcome.extra, "float_kernels": record["float_kernels"]})


def _publish(session: ExportSession, cfg: TFLiteExportConfig, model: Any, metadata: dict[str, Any],
             extra: dict[str, Any]) -> ExportResult:
    from . import convert

    embed_tflite(model, metadata)
    destination = session.out_dir / cfg.artifact_name
    data, metadata = seal_artifact(convert.write_model(model), metadata, cfg.artifact_name)
    with staged_file(destination) as staged:
        staged.write_bytes(data)
        log.info("converted %s in %.1f s (%.1f MB)", cfg.artifact_name, extra["convert_seconds"], staged.stat().st_size / 1e6)
        return session.verify_and_publish(staged, destination, metadata,
                                          {"kernels": convert.kernel_inventory(model), **extra},
                                          kernel_sets=cfg.verify_kernels)


def _correct_bias(session: ExportSession, model: object, probe: Path) -> dict[str, object]:
    """Measure the int8 model's mean logit shift on the calibration images and remove it from the output bias."""
    from . import convert

    probe.write_bytes(convert.write_model(model))
    measured = session.logit_shift(probe)
    done = convert.shift_output_bias(model, -measured["mean_delta_logit"])
    log.info("bias correction: mean int8 - float logit %+.4f on %d calibration images; output bias shifted by %+.4f",
             measured["mean_delta_logit"], measured["images"], done.get("logit_shift", 0.0))
    return {**measured, **done}
