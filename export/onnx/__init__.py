"""``export.onnx``: a trained model directory to verified fp32 and int8 ONNX models.

Library entry point :func:`export_onnx`; ``python -m export.onnx`` is a thin CLI over it. The
fp32 model must reproduce the SavedModel's logits on real images (``max_fp32_delta``) before
the int8 model is built from it; both are then verified and published like every export.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ExportError, InceptionEdgeError
from runtime.fileio import sha256_file
from runtime.model_metadata import ArtifactInfo

from ..config import OnnxExportConfig
from ..fallback import Step
from ..int8 import quantize
from ..layer_errors import LayerError
from ..publish import sidecar_path
from ..session import ExportResult, ExportSession, Logits
from ..sidecar import Sidecar
from ..source import open_model_dir

log = logging.getLogger("export")

__all__ = ["OnnxExportConfig", "export_onnx"]


def export_onnx(cfg: OnnxExportConfig) -> list[ExportResult]:
    """Write ``model_fp32.onnx`` and the int8 model; return both results.

    An fp32 model already published from the same SavedModel (checked by sha256) is reused
    rather than refused, so exporting another int8 variant needs no ``--overwrite``.
    """
    source = open_model_dir(cfg.model)
    fp32_dest = Path(cfg.out or source.directory) / cfg.fp32_name
    reused = None if cfg.overwrite else reusable_fp32(fp32_dest, source.card.saved_model_sha256, cfg.opset)
    names = [cfg.int8_name] if reused else [cfg.fp32_name, cfg.int8_name]
    session = ExportSession.open(cfg, names, needs_calibration=True, source=source)
    with tempfile.TemporaryDirectory(prefix="inception-edge-onnx-") as tmp:  # scratch (~3x the model) outside the destination
        work = Path(tmp)
        if reused:
            log.info("reusing %s (same SavedModel, checksum verified)", fp32_dest)
        fp32 = reused or _export_fp32(session, cfg, work)
        started = time.perf_counter()
        fmt = OnnxInt8(fp32.path, session.calibration().pixels, cfg, work)
        outcome = quantize(session, fmt, work, started)
        quantization = {**fmt.settings, **({"nodes_to_exclude": outcome.final.float_nodes} if cfg.fallback == "auto" else {})}
        metadata = session.metadata(ArtifactInfo("onnx", "int8", opset=cfg.opset, float_layers=tuple(outcome.float_layers),
                                                 bias_correction=outcome.final.record["bias_correction"],
                                                 quantization=quantization),
                                    "float32", input_name=_input_name(), calibrated=True)
        int8 = session.publish(cfg.int8_name, _serialize(outcome.final.model, metadata), metadata, outcome.sections,
                               repaired=outcome.repaired)
    return [fp32, int8]


def _input_name() -> str:
    from .convert import INPUT_NAME

    return INPUT_NAME


def _serialize(model: Any, metadata: Any) -> bytes:
    from ..metadata import embed_onnx

    embed_onnx(model, metadata)
    return model.SerializeToString()


def _export_fp32(session: ExportSession, cfg: OnnxExportConfig, work: Path) -> ExportResult:
    """tf2onnx, metadata, the numerical check against the SavedModel on the staged file, verification, publishing."""
    from . import convert

    start = time.perf_counter()
    model = convert.saved_model_to_onnx(session.source.saved_model, work / "fp32.raw.onnx", cfg.opset)
    seconds = round(time.perf_counter() - start, 2)
    metadata = session.metadata(ArtifactInfo("onnx", "fp32", opset=cfg.opset), "float32", input_name=convert.INPUT_NAME)

    def check(logits: Logits) -> dict[str, Any]:
        return {"numerical_check": check_fp32(session.reference(), logits, cfg.fp32_name, cfg.max_fp32_delta)}

    return session.publish(cfg.fp32_name, _serialize(model, metadata), metadata, {"convert_seconds": seconds}, check=check)


def reusable_fp32(path: Path, saved_model_sha256: str | None, opset: int) -> ExportResult | None:
    """The published fp32 model at ``path`` if it is intact and was made from this SavedModel at ``opset``."""
    try:
        sidecar = Sidecar.load(sidecar_path(path))
    except InceptionEdgeError:
        return None
    meta = sidecar.metadata
    if (not path.is_file() or sidecar.sha256 != sha256_file(path) or meta.source.get("saved_model_sha256") != saved_model_sha256
            or meta.artifact.opset != opset or not sidecar.verification.passed):
        return None
    return ExportResult(path, sidecar)


def check_fp32(reference: Logits, outputs: Logits, name: str, max_delta: float) -> dict[str, float | int]:
    """The conversion proof: fp32 ONNX logits vs SavedModel logits on every verification image."""
    deltas = np.concatenate([np.abs(outputs[split] - reference[split]) for split in reference])
    result = {"images": int(deltas.size), "max_abs_delta_logit": float(deltas.max()),
              "mean_abs_delta_logit": float(deltas.mean()), "limit": max_delta}
    log.info("fp32 ONNX vs SavedModel on %d images: max |delta logit| %.3g (limit %g)", deltas.size, deltas.max(), max_delta)
    if not deltas.max() <= max_delta:
        raise ExportError(f"{name}: tf2onnx output differs from the SavedModel by up to {deltas.max():.3g} in logit "
                          f"on {deltas.size} images; expected <= {max_delta} (--max-fp32-delta)")
    return result


class OnnxInt8:
    """QDQ int8 builds from one onnxruntime calibration of the fp32 model (:class:`export.int8.Int8Format`)."""

    suffix = ".onnx"
    kernel_sets: tuple[str, ...] = ("default",)  # onnxruntime's one CPU kernel set
    layer_method = ("QDQ activations before and after their QuantizeLinear/DequantizeLinear pair (onnxruntime, "
                    "no fusion)")

    def __init__(self, fp32_file: Path, calibration: np.ndarray, cfg: OnnxExportConfig, work: Path) -> None:
        import onnx

        from . import convert

        self.plan = convert.calibrate_int8(fp32_file, calibration, cfg.calibration_method, work)
        self.prepared = onnx.load(str(self.plan.prepared))  # node names of the fallback refer to it
        self.work, self._builds = work, 0

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.plan.settings)

    def build(self, float_nodes: list[str]) -> tuple[Any, dict[str, Any]]:
        import onnx

        from . import convert

        raw = self.work / f"build{self._builds}.raw.onnx"
        self._builds += 1
        convert.write_int8(self.plan, raw, float_nodes)
        return onnx.load(str(raw)), {}

    def save(self, model: Any, path: Path) -> None:
        import onnx

        onnx.save(model, str(path))

    def shift_output(self, model: Any, shift: float) -> dict[str, Any]:
        from . import convert

        return convert.shift_output(model, shift)

    def layer_errors(self, plain: Step, images: np.ndarray) -> list[LayerError]:
        from . import layers

        return layers.layer_errors(plain.path, self.prepared, images, self.work)

    def fallback_group(self, plain: Step, layer: LayerError) -> list[str]:
        from . import layers

        return layers.fallback_group(self.prepared, layer.tensor)

