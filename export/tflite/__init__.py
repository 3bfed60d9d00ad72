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

from runtime.model_metadata import ArtifactInfo

from ..config import TFLiteExportConfig
from ..fallback import Step
from ..int8 import quantize
from ..layer_errors import LayerError
from ..session import ExportResult, ExportSession

log = logging.getLogger("export")

__all__ = ["TFLiteExportConfig", "export_tflite"]

_PRECISION = {"int8": "int8 weights and activations (per-channel weights)",
              "float16": "float16 weights, float32 compute", "dynamic": "int8 weights, float activations"}


def export_tflite(cfg: TFLiteExportConfig) -> ExportResult:
    """Convert, embed metadata, verify against the float SavedModel and publish one ``.tflite``."""
    from . import convert

    session = ExportSession.open(cfg, [cfg.artifact_name], needs_calibration=cfg.mode == "int8")
    started = time.perf_counter()
    if cfg.mode != "int8":
        model = convert.read_model(convert.convert(str(session.source.saved_model), cfg.mode))
        metadata = session.metadata(ArtifactInfo("tflite", _PRECISION[cfg.mode], mode=cfg.mode), "float32")
        sections: dict[str, Any] = {"convert_seconds": round(time.perf_counter() - started, 2)}
        return session.publish(cfg.artifact_name, _serialize(model, metadata), metadata,
                               {**sections, "kernels": convert.kernel_inventory(model)}, cfg.verify_kernels)
    with tempfile.TemporaryDirectory(prefix="inception-edge-tflite-") as tmp:
        fmt = TFLiteInt8(str(session.source.saved_model), session.calibration().pixels, cfg)
        outcome = quantize(session, fmt, Path(tmp), started)
        record, float_layers = outcome.final.record, outcome.float_layers
        precision = _PRECISION["int8"] + (f"; kept float: {', '.join(float_layers)}" if float_layers else "")
        metadata = session.metadata(ArtifactInfo("tflite", precision, mode="int8", float_layers=tuple(float_layers),
                                                 bias_correction=record["bias_correction"]),
                                    cfg.input_type, record["input_quantization"], calibrated=True)
        model = outcome.final.model
        sections = {**outcome.sections, "float_kernels": record["float_kernels"],
                    "kernels": convert.kernel_inventory(model)}
        return session.publish(cfg.artifact_name, _serialize(model, metadata), metadata, sections, cfg.verify_kernels,
                               outcome.repaired)


def _serialize(model: Any, metadata: Any) -> bytes:
    from ..metadata import embed_tflite
    from . import convert

    embed_tflite(model, metadata)
    return convert.write_model(model)


class TFLiteInt8:
    """Full-integer TFLite builds from one calibration (:class:`export.int8.Int8Format`)."""

    suffix = ".tflite"
    kernel_sets: tuple[str, ...]  # set from the config: XNNPACK and, by default, TFLite's built-in kernels
    layer_method = ("TFLite debug-mode model, as QuantizationDebugger builds it: each op in int8 vs in float on the "
                    "same dequantized inputs (NumericVerify), reference kernels")

    def __init__(self, saved_model: str, calibration: np.ndarray, cfg: TFLiteExportConfig) -> None:
        from . import convert

        self.calibrated = convert.calibrate(saved_model, calibration)  # the slow pass, once; every build reuses it
        self.input_type, self.label = cfg.input_type, cfg.artifact_name
        self.kernel_sets = cfg.verify_kernels

    def build(self, float_nodes: list[str]) -> tuple[Any, dict[str, Any]]:
        from . import convert

        model = convert.read_model(convert.quantize(self.calibrated, self.input_type, float_nodes, self.label))
        record: dict[str, Any] = {"input_quantization": convert.pin_input_quantization(model, self.input_type)}
        leftover = convert.float_kernels(model)
        if leftover and not float_nodes:
            raise RuntimeError(f"full-integer conversion left float kernels: {leftover}")
        record["float_kernels"] = leftover
        return model, record

    def save(self, model: Any, path: Path) -> None:
        from . import convert

        path.write_bytes(convert.write_model(model))

    def shift_output(self, model: Any, shift: float) -> dict[str, Any]:
        from . import convert

        return convert.shift_output_bias(model, shift)

    def layer_errors(self, plain: Step, images: np.ndarray) -> list[LayerError]:
        from . import layers

        return layers.layer_errors(self.calibrated, images)

    def fallback_group(self, plain: Step, layer: LayerError) -> list[str]:
        from . import layers

        return layers.fallback_group(plain.model, layer.tensor)
