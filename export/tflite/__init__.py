"""``export.tflite``: a trained model directory to a verified TFLite model (int8 by default).

Library entry point :func:`export_tflite`; ``python -m export.tflite`` is a thin CLI over it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from ..config import TFLiteExportConfig
from ..metadata import build_metadata, embed_tflite
from ..publish import staged_file
from ..session import ExportResult, ExportSession

log = logging.getLogger("export")

__all__ = ["TFLiteExportConfig", "export_tflite"]


def export_tflite(cfg: TFLiteExportConfig) -> ExportResult:
    """Convert, embed metadata, verify against the float SavedModel and publish one ``.tflite``."""
    from . import convert

    session = ExportSession.open(cfg, [cfg.artifact_name], needs_calibration=cfg.mode == "int8")
    calibration = session.calibration() if cfg.mode == "int8" else None
    start = time.perf_counter()
    blob = convert.convert(str(session.source.saved_model), cfg.mode, cfg.input_type,
                           None if calibration is None else calibration.pixels)
    model = convert.read_model(blob)
    if cfg.mode == "int8":
        input_quantization = convert.pin_input_quantization(model, cfg.input_type)
        input_spec = {"dtype": cfg.input_type, "quantization": input_quantization}
        leftover = convert.float_kernels(model)
        if leftover:
            raise RuntimeError(f"full-integer conversion left float kernels: {leftover}")
    else:
        input_spec = {"dtype": "float32", "quantization": None}
    correction = None
    if cfg.mode == "int8" and cfg.bias_correction:
        correction = _correct_bias(session, model, cfg.artifact_name)
    seconds = round(time.perf_counter() - start, 2)
    precision = {"int8": "int8 weights and activations (per-channel weights)",
                 "float16": "float16 weights, float32 compute", "dynamic": "int8 weights, float activations"}[cfg.mode]
    metadata = build_metadata(session.source, {"format": "tflite", "mode": cfg.mode, "precision": precision,
                                               "bias_correction": correction},
                              input_spec, None if calibration is None else calibration.record)
    embed_tflite(model, metadata)
    destination = session.out_dir / cfg.artifact_name
    with staged_file(destination) as staged:
        staged.write_bytes(convert.write_model(model))
        log.info("converted %s in %.1f s (%.1f MB)", cfg.artifact_name, seconds, staged.stat().st_size / 1e6)
        return session.verify_and_publish(staged, destination, metadata,
                                          {"kernels": convert.kernel_inventory(model), "convert_seconds": seconds},
                                          kernel_sets=cfg.verify_kernels)


def _correct_bias(session: ExportSession, model: object, name: str) -> dict[str, object]:
    """Measure the int8 model's mean logit shift on the calibration images and remove it from the output bias."""
    from . import convert

    with tempfile.TemporaryDirectory(prefix="inception-edge-tflite-") as tmp:
        probe = Path(tmp) / name
        probe.write_bytes(convert.write_model(model))
        measured = session.logit_shift(probe)
    done = convert.shift_output_bias(model, -measured["mean_delta_logit"])
    log.info("bias correction: mean int8 - float logit %+.4f on %d calibration images; output bias shifted by %+.4f",
             measured["mean_delta_logit"], measured["images"], done.get("logit_shift", 0.0))
    return {**measured, **done}
