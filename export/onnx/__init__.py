"""``export.onnx``: a trained model directory to verified fp32 and int8 ONNX models.

Library entry point :func:`export_onnx`; ``python -m export.onnx`` is a thin CLI over it. The
fp32 model must reproduce the SavedModel's logits on real images (``max_fp32_delta``) before
the int8 model is built from it; both are then verified and published like every export.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ExportError
from runtime.fileio import sha256_file

from ..config import OnnxExportConfig
from ..int8 import Int8Format, quantize
from ..metadata import build_metadata, embed_onnx, seal_artifact
from ..publish import sidecar_path, staged_file
from ..session import ExportResult, ExportSession
from ..source import open_model_dir

log = logging.getLogger("export")

__all__ = ["OnnxExportConfig", "export_onnx"]

# uint8 activations with int8 weights (U8S8) for both targets, as Optimum's arm64 and avx512_vnni presets: onnxruntime
# computes this graph bit for bit alike on aarch64 and x86 (tests/test_pi_sim.py), so its verification here is the
# Pi's answer. With int8 activations (S8S8) aarch64 answered up to 0.026 in probability away from the x86 run that
# verified it, and no ARM timing showed S8S8 faster; x86 VNNI is 2.6x faster with U8S8 than S8S8.
ACTIVATION_TYPE = {"pi": "uint8", "x86": "uint8"}


def export_onnx(cfg: OnnxExportConfig) -> list[ExportResult]:
    """Write ``model_fp32.onnx`` and the int8 model for ``cfg.target``; return both results.

    An fp32 model already published from the same SavedModel (checked by sha256) is reused
    rather than refused, so exporting a second target needs no ``--overwrite``.
    """
    source = open_model_dir(cfg.model)
    fp32_dest = Path(cfg.out or source.directory) / cfg.fp32_name
    reused = None if cfg.overwrite else reusable_fp32(fp32_dest, source.card, cfg.opset)
    names = [cfg.int8_name] if reused else [cfg.fp32_name, cfg.int8_name]
    session = ExportSession.open(cfg, names, needs_calibration=True, source=source)
    int8_dest = session.out_dir / cfg.int8_name
    results = []
    with tempfile.TemporaryDirectory(prefix="inception-edge-onnx-") as tmp:  # scratch (~3x the model) outside the destination
        work = Path(tmp)
        if reused:
            log.info("reusing %s (same SavedModel, checksum verified)", fp32_dest)
            fp32_file = fp32_dest
            results.append(reused)
        else:
            fp32_file = work / cfg.fp32_name
            results.append(_export_fp32(session, cfg, fp32_file, fp32_dest))

        int8_model, int8_meta, extra = _int8(session, cfg, fp32_file, work)
        embed_onnx(int8_model, int8_meta)
        data, int8_meta = seal_artifact(int8_model.SerializeToString(), int8_meta, cfg.int8_name)
        with staged_file(int8_dest) as staged:
            staged.write_bytes(data)
            results.append(session.verify_and_publish(staged, int8_dest, int8_meta, extra))
    return results


def _int8(session: ExportSession, cfg: OnnxExportConfig, fp32_file: Path, work: Path
          ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The shared int8 recipe (:func:`export.int8.quantize`) over QDQ builds from one calibration. Returns the
    model to publish, its metadata and the sidecar's extra sections."""
    import onnx

    from . import convert, layers

    plans: list[convert.Int8Plan] = []

    def calibrate(pixels: np.ndarray) -> Int8Format:
        plan = convert.calibrate_int8(fp32_file, pixels, ACTIVATION_TYPE[cfg.target], cfg.calibration_method, work)
        plans.append(plan)
        prepared = onnx.load(str(plan.prepared))

        def build(float_nodes: list[str], step: int) -> tuple[Path, dict[str, Any]]:
            raw, path = work / f"step{step}.raw.onnx", work / f"step{step}.onnx"
            convert.write_int8(plan, raw, float_nodes)
            model = onnx.load(str(raw))
            record: dict[str, Any] = {"bias_correction": None}
            if cfg.bias_correction:
                measured = session.logit_shift(raw)
                record["bias_correction"] = {**measured, **convert.shift_output(model, -measured["mean_delta_logit"])}
                log.info("bias correction: mean int8 - float logit %+.4f on %d calibration images",
                         measured["mean_delta_logit"], measured["images"])
            onnx.save(model, str(path))
            return path, record

        return Int8Format(
            build=build, layer_errors=lambda images: layers.layer_errors(work / "step0.raw.onnx", prepared, images, work),
            layer_method="QDQ activations before and after their QuantizeLinear/DequantizeLinear pair (onnxruntime, "
                         "no fusion)",
            fallback_group=lambda layer: layers.fallback_group(prepared, layer.tensor))

    outcome = quantize(session, cfg, calibrate, work)
    settings = dict(plans[0].settings)
    if cfg.fallback == "auto":
        settings["nodes_to_exclude"] = outcome.float_nodes
    settings["bias_correction"] = outcome.record["bias_correction"]
    meta = build_metadata(session.source, {"format": "onnx", "precision": "int8", "float_layers": outcome.float_layers,
                                           "opset": cfg.opset, "target": cfg.target, "quantization": settings},
                          {"name": convert.INPUT_NAME, "dtype": "float32", "quantization": None},
                          session.calibration().record)
    return onnx.load(str(outcome.path)), meta, outcome.extra


def _export_fp32(session: ExportSession, cfg: OnnxExportConfig, scratch: Path, destination: Path) -> ExportResult:
    """tf2onnx, metadata, the numerical check against the SavedModel, then verification and publishing."""
    from . import convert

    start = time.perf_counter()
    model = convert.saved_model_to_onnx(session.source.saved_model, scratch.with_suffix(".raw.onnx"), cfg.opset)
    seconds = round(time.perf_counter() - start, 2)
    meta = build_metadata(session.source, {"format": "onnx", "precision": "fp32", "opset": cfg.opset},
                          {"name": convert.INPUT_NAME, "dtype": "float32", "quantization": None}, None)
    embed_onnx(model, meta)
    data, meta = seal_artifact(model.SerializeToString(), meta, cfg.fp32_name)
    scratch.write_bytes(data)
    numerical, outputs = check_fp32(session, scratch, cfg.max_fp32_delta)
    with staged_file(destination) as staged:
        shutil.copyfile(scratch, staged)  # the very bytes the numerical check ran
        return session.verify_and_publish(staged, destination, meta, {"numerical_check": numerical, "convert_seconds": seconds},
                                          outputs=outputs)


def reusable_fp32(path: Path, card: dict[str, Any], opset: int) -> ExportResult | None:
    """The published fp32 model at ``path`` if it is intact and was made from this SavedModel at ``opset``."""
    try:
        sidecar = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    meta = sidecar.get("metadata") or {}
    if (not path.is_file() or sidecar.get("sha256") != sha256_file(path)
            or (meta.get("source") or {}).get("saved_model_sha256") != card.get("saved_model_sha256")
            or (meta.get("artifact") or {}).get("opset") != opset or not (sidecar.get("verification") or {}).get("passed")):
        return None
    return ExportResult(path, sidecar)


def check_fp32(session: ExportSession, path: Path, max_delta: float
               ) -> tuple[dict[str, float | int], tuple[dict[str, np.ndarray], str]]:
    """The conversion proof: fp32 ONNX logits vs SavedModel logits on every verification image."""
    outputs = session.artifact_logits(path)
    reference = session.reference()
    deltas = np.concatenate([np.abs(outputs[0][name] - reference[name]) for name in reference])
    result = {"images": int(deltas.size), "max_abs_delta_logit": float(deltas.max()),
              "mean_abs_delta_logit": float(deltas.mean()), "limit": max_delta}
    log.info("fp32 ONNX vs SavedModel on %d images: max |delta logit| %.3g (limit %g)", deltas.size, deltas.max(), max_delta)
    if not deltas.max() <= max_delta:
        raise ExportError(f"{path.name}: tf2onnx output differs from the SavedModel by up to {deltas.max():.3g} in logit "
                          f"on {deltas.size} images; expected <= {max_delta} (--max-fp32-delta)")
    return result, outputs
