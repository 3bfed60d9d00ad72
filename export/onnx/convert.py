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
from collections.abc import Iterator
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
    """onnxruntime's CalibrationDataReader protocol over the calibration pixels, one image per call."""

    def __init__(self, input_name: str, pixels: np.ndarray) -> None:
        self._input_name, self._pixels = input_name, pixels
        self._iter: Iterator[dict[str, np.ndarray]] = self._make()

    def _make(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self._pixels)):
            yield {self._input_name: self._pixels[i:i + 1].astype(np.float32)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._make()


def quantize_int8(fp32_path: Path, destination: Path, calibration: np.ndarray, activation_type: str,
                  method: str, work_dir: Path) -> dict[str, Any]:
    """Static QDQ quantization with per-channel int8 weights; returns the settings used (for the report)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work_dir / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
    activation = QuantType.QInt8 if activation_type == "int8" else QuantType.QUInt8
    zero = -128 if activation_type == "int8" else 0
    extra_options: dict[str, Any] = {
        # Pixels are integers in [0, 255]: scale 1 represents every one exactly, where the calibrated
        # range (e.g. 0-248) would round them and clip the brightest.
        "TensorQuantOverrides": {INPUT_NAME: [{"scale": np.array(1.0, dtype=np.float32), "zero_point": np.array(zero, dtype=np.int8 if zero else np.uint8)}]},
        "CalibMaxIntermediateOutputs": 16,  # bound calibration memory: fold ranges every 16 images
    }
    settings = {"format": "QDQ", "per_channel": True, "weight_type": "int8", "activation_type": activation_type,
                "calibration_method": method, "input_scale": 1.0, "input_zero_point": zero}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    with open(os.devnull, "w"):
        quantize_static(str(prepared), str(destination), _Reader(INPUT_NAME, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=activation, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], extra_options=extra_options)
    return settings
