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

import numpy as np

from runtime.backends import open_backend
from runtime.errors import ExportError

from ..config import OnnxExportConfig
from ..metadata import build_metadata, embed_onnx
from ..publish import staged_file
from ..session import ExportResult, ExportSession

log = logging.getLogger("export")

__all__ = ["OnnxExportConfig", "export_onnx"]

ACTIVATION_TYPE = {"pi": "int8", "x86": "uint8"}  # ARM's int8 kernels favour signed; x86 VNNI is 2.6x faster with unsigned


def export_onnx(cfg: OnnxExportConfig) -> list[ExportResult]:
    """Write ``model_fp32.onnx`` and the int8 model for ``cfg.target``; return both results."""
    import onnx

    from . import convert

    session = ExportSession.open(cfg, [cfg.fp32_name, cfg.int8_name], needs_calibration=True)
    calibration = session.calibration()
    fp32_dest, int8_dest = session.out_dir / cfg.fp32_name, session.out_dir / cfg.int8_name
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=session.out_dir if session.out_dir.exists() else None) as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        raw = work / "tf2onnx.onnx"
        model = convert.saved_model_to_onnx(session.source.saved_model, raw, cfg.opset)
        fp32_seconds = round(time.perf_counter() - start, 2)
        fp32_meta = build_metadata(session.source, {"format": "onnx", "precision": "fp32", "opset": cfg.opset},
                                   {"name": convert.INPUT_NAME, "dtype": "float32", "quantization": None}, None)
        embed_onnx(model, fp32_meta)
        fp32_check = work / "model_fp32.onnx"
        onnx.save(model, str(fp32_check))
        numerical = check_fp32(session, fp32_check, cfg.max_fp32_delta)

        start = time.perf_counter()
        int8_raw = work / "int8.onnx"
        settings = convert.quantize_int8(fp32_check, int8_raw, calibration.pixels, ACTIVATION_TYPE[cfg.target],
                                         cfg.calibration_method, work)
        int8_seconds = round(time.perf_counter() - start, 2)
        int8_model = onnx.load(str(int8_raw))
        int8_meta = build_metadata(session.source, {"format": "onnx", "precision": "int8", "opset": cfg.opset,
                                                    "target": cfg.target, "quantization": settings},
                                   {"name": convert.INPUT_NAME, "dtype": "float32", "quantization": None}, calibration.record)
        embed_onnx(int8_model, int8_meta)

        results = []
        with staged_file(fp32_dest) as staged:
            staged.write_bytes(model.SerializeToString())
            results.append(session.verify_and_publish(staged, fp32_dest, fp32_meta,
                                                      {"numerical_check": numerical, "convert_seconds": fp32_seconds}))
        with staged_file(int8_dest) as staged:
            staged.write_bytes(int8_model.SerializeToString())
            results.append(session.verify_and_publish(staged, int8_dest, int8_meta, {"convert_seconds": int8_seconds}))
    return results


def check_fp32(session: ExportSession, path: Path, max_delta: float) -> dict[str, float | int]:
    """The conversion proof: fp32 ONNX logits vs SavedModel logits on every verification image."""
    backend = open_backend(path, threads=session.cfg.threads)
    reference = session.reference()
    deltas = np.concatenate([np.abs(backend.logits(d.pixels) - reference[d.name]) for d in session.verify_data()])
    result = {"images": int(deltas.size), "max_abs_delta_logit": float(deltas.max()),
              "mean_abs_delta_logit": float(deltas.mean()), "limit": max_delta}
    log.info("fp32 ONNX vs SavedModel on %d images: max |delta logit| %.3g (limit %g)", deltas.size, deltas.max(), max_delta)
    if not deltas.max() <= max_delta:
        raise ExportError(f"{path.name}: tf2onnx output differs from the SavedModel by up to {deltas.max():.3g} in logit "
                          f"on {deltas.size} images; expected <= {max_delta} (--max-fp32-delta)")
    return result
