"""SavedModel to ONNX with tf2onnx, and fp32 ONNX to int8 QDQ with onnxruntime's static quantization.

tf2onnx runs in a child process (``python -m tf2onnx.convert``, the path measured to work with
TF 2.21): its TensorFlow graph state and its logging stay out of this process, and a crash in
it cannot take the export down with a half-written file. Its own tests stop at TF 2.15, so the
caller checks the result numerically against the SavedModel.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ExportError

log = logging.getLogger("export")

INPUT_NAME, OUTPUT_NAME = "pixels", "logit"


def saved_model_to_onnx(saved_model_dir: Path, destination: Path, opset: int) -> Any:
    """Convert with tf2onnx and return the ``onnx.ModelProto`` with its output named ``logit``."""
    import onnx

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model_dir), "--output", str(destination),
           "--opset", str(opset)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not destination.is_file() or destination.stat().st_size == 0:
        errors = [line for line in proc.stderr.splitlines() if "Error" in line or "error" in line] or proc.stderr.splitlines()[-1:]
        raise ExportError(f"{saved_model_dir}: tf2onnx failed with status {proc.returncode} ({errors[-1].strip() if errors else 'no message'})")
    model = onnx.load(str(destination))
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ExportError(f"{saved_model_dir}: tf2onnx produced {len(model.graph.input)} inputs and {len(model.graph.output)} "
                          "outputs; expected one image input and one logit output")
    _rename_output(model, OUTPUT_NAME)
    return model


def _rename_output(model: Any, name: str) -> None:
    old = model.graph.output[0].name
    if old == name:
        return
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name


class _Reader:
    """onnxruntime's CalibrationDataReader over the calibration pixels, one image per call.

    ``__len__`` and ``set_range`` let quantize_static collect in chunks (``CalibStridedMinMax``):
    the histogram methods otherwise keep every activation of every image until the end (about
    4 MB per image at 75x75 and 16 times that at 299x299; 200 images at 299 held about 14 GB).
    """

    def __init__(self, input_name: str, pixels: np.ndarray) -> None:
        self._input_name, self._pixels = input_name, pixels
        self.set_range(0, len(pixels))

    def __len__(self) -> int:
        return len(self._pixels)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self._pixels))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return {self._input_name: self._pixels[self._next - 1:self._next].astype(np.float32)}


# Ops whose output reuses their input's scale in onnxruntime's QDQ quantizer; a Concat's inputs and
# output are tied through them into one group, as TFLite ties them.
SAME_SCALE_OPS = ("MaxPool", "AveragePool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")
_ACTIVATION_BYTES_75 = 4.0e6  # float activations InceptionV3 produces per 75x75 image (measured 3.95 MiB)
_CHUNK_BUDGET_BYTES = 1.0e9  # activations the histogram calibrators may hold at once


def calibration_stride(n_images: int, image_size: int) -> int:
    """The largest divisor of ``n_images`` whose activations fit the chunk budget (quantize_static needs a divisor)."""
    per_image = _ACTIVATION_BYTES_75 * (image_size / 75) ** 2
    limit = max(1, int(_CHUNK_BUDGET_BYTES // per_image))
    return max(d for d in range(1, min(limit, n_images) + 1) if n_images % d == 0)


def concat_shared_ranges(model_path: Path, ranges: Any) -> dict[str, list[dict[str, np.ndarray]]]:
    """TensorQuantOverrides giving every Concat's inputs and output one common [rmin, rmax].

    TFLite requires this and onnxruntime does not: without it every Inception block's output is
    re-rounded once more on its way into the concatenation. Measured on the 75x75 reference model
    over ten calibration draws, sharing passed the default drift limits in 7-8 of 10 draws against
    5 of 10 for independent ranges.
    """
    import onnx

    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for node in onnx.load(str(model_path)).graph.node:
        if node.op_type == "Concat":
            for name in node.input:
                parent[root(name)] = root(node.output[0])
        elif node.op_type in SAME_SCALE_OPS:
            parent[root(node.input[0])] = root(node.output[0])
    groups: dict[str, list[str]] = {}
    for name in list(parent):
        groups.setdefault(root(name), []).append(name)
    overrides: dict[str, list[dict[str, np.ndarray]]] = {}
    for members in groups.values():
        known = [t for t in members if t in ranges.data]
        if len(members) < 2 or not known:
            continue
        low = min(float(np.min(ranges.data[t].range_value[0])) for t in known)
        high = max(float(np.max(ranges.data[t].range_value[1])) for t in known)
        for name in known:
            overrides[name] = [{"rmin": np.array(low, np.float32), "rmax": np.array(high, np.float32)}]
    return overrides


PERCENTILE = 99.9999  # clips one activation in a million: calibration outliers stop stretching the range
# uint8 activations with int8 weights (U8S8), as Optimum's arm64 and avx512_vnni presets: onnxruntime computes this
# graph bit for bit alike on aarch64 and x86 (tests/test_pi_sim.py), so its verification here is the Pi's answer.
# With int8 activations (S8S8) aarch64 answered up to 0.026 in probability away from the x86 run that verified it,
# and no ARM timing showed S8S8 faster; x86 VNNI is 2.6x faster with U8S8 than S8S8.
ACTIVATIONS = "uint8"


@dataclass(frozen=True)
class Int8Plan:
    """A calibrated quantization, ready to be written with any set of nodes left in float."""

    prepared: Path  # the fp32 model after onnxruntime's pre-processing; node names refer to it
    options: dict[str, Any]  # extra_options of the writing pass, including the Concat overrides
    common: dict[str, Any]  # quantize_static keyword arguments both passes share
    settings: dict[str, Any]  # what the report records


def calibrate_int8(fp32_path: Path, calibration: np.ndarray, method: str, work_dir: Path) -> Int8Plan:
    """Pre-process, calibrate (in chunks) and cache the ranges; tie each Concat group to one range.

    Calibration is the slow pass; :func:`write_int8` then writes the QDQ model from the cache as
    often as the fallback needs, with different nodes excluded.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import load_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work_dir / "prepared.onnx"  # quantize_static writes PREPARED-inferred.onnx beside it: keep it private
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
    image_size = int(calibration.shape[1])
    stride = calibration_stride(len(calibration), image_size)
    options: dict[str, Any] = {"CalibStridedMinMax": stride}
    if method == "percentile":
        options.update(CalibTensorRangeSymmetric=False, CalibPercentile=PERCENTILE)
    cache = work_dir / "calibration_ranges.json"
    common = {"quant_format": QuantFormat.QDQ, "per_channel": True, "weight_type": QuantType.QInt8,
              "activation_type": QuantType.QUInt8,
              "calibrate_method": {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                   "percentile": CalibrationMethod.Percentile}[method],
              "calibration_cache_path": str(cache)}
    quantize_static(str(prepared), str(work_dir / "calibration_pass.onnx"), _Reader(INPUT_NAME, calibration),
                    extra_options=options, **common)
    overrides = concat_shared_ranges(prepared, load_tensors_data(str(cache)))
    settings = {"format": "QDQ", "per_channel": True, "weight_type": "int8", "activation_type": ACTIVATIONS,
                "calibration_method": method, "percentile": PERCENTILE if method == "percentile" else None,
                "calibration_chunk": stride, "concat_shared_ranges": len(overrides)}
    return Int8Plan(prepared, {**options, "TensorQuantOverrides": overrides}, common, settings)


def write_int8(plan: Int8Plan, destination: Path, float_nodes: list[str] | None = None) -> None:
    """Write the QDQ model from the cached ranges, with ``float_nodes`` (node names) left in float."""
    from onnxruntime.quantization import quantize_static

    quantize_static(str(plan.prepared), str(destination), None, extra_options=plan.options,
                    nodes_to_exclude=list(float_nodes or []), **plan.common)


def shift_output(model: Any, shift: float) -> dict[str, Any]:
    """Add ``shift`` to the ``logit`` output with one final Add (a float op after the last DequantizeLinear)."""
    from onnx import helper, numpy_helper

    inner = OUTPUT_NAME + "_before_bias_correction"
    for node in model.graph.node:
        node.output[:] = [inner if o == OUTPUT_NAME else o for o in node.output]
    constant = OUTPUT_NAME + "_bias_correction"
    model.graph.initializer.append(numpy_helper.from_array(np.array([shift], dtype=np.float32), constant))
    model.graph.node.append(helper.make_node("Add", [inner, constant], [OUTPUT_NAME], name="bias_correction"))
    return {"applied": True, "logit_shift": float(np.float32(shift))}
