"""Inference backends: run an exported model on 0-255 RGB pixels and return float logits.

One small class per file format, sharing one contract (:class:`Backend`): the caller hands
pixels as the trainer saw them (``runtime.images.to_model_pixels``), the backend quantizes them
with the input tensor's own scale and zero point when the model is integer, and dequantizes the
output the same way. For the default uint8-input TFLite export (scale 1, zero point 0) the
quantization is the identity on integer pixels, so no float maths happens before the model.

Packages are imported when a backend is opened, never at module import: the runtime must load
on a device that has only one of them installed.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import BackendError, ModelFileError

TFLITE_PACKAGES = ("ai-edge-litert", "tflite-runtime")  # preferred first; same Interpreter API
ONNX_PACKAGES = ("onnxruntime",)
BACKENDS = TFLITE_PACKAGES + ONNX_PACKAGES
_MODULES = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter",
            "onnxruntime": "onnxruntime"}
_ONNX_BATCH = 32  # onnxruntime amortises per-call overhead over a batch; 32 keeps 299x299 input under 35 MB


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape, dtype and (for integer tensors) the affine quantization of one model tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and self.dtype in (np.dtype(np.int8), np.dtype(np.uint8))


def quantize(values: np.ndarray, spec: TensorInfo) -> np.ndarray:
    """Float values to the integer tensor ``spec``: round(x / scale) + zero_point, saturated."""
    info = np.iinfo(spec.dtype)
    if spec.dtype == np.uint8 and values.dtype == np.uint8 and spec.scale == 1.0 and spec.zero_point == 0:
        return values  # the exact path: raw pixels are the model's input
    q = np.rint(np.asarray(values, dtype=np.float64) / spec.scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(values: np.ndarray, spec: TensorInfo) -> np.ndarray:
    if not spec.quantized:
        return np.asarray(values, dtype=np.float64)
    return (np.asarray(values, dtype=np.float64) - spec.zero_point) * spec.scale


class Backend(Protocol):
    package: str
    input: TensorInfo
    output: TensorInfo

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Logits, float64 of shape (N,), for pixels of shape (N, S, S, 3) in [0, 255]."""
        ...


def _import(package: str):
    try:
        return importlib.import_module(_MODULES[package])
    except ImportError as exc:
        raise BackendError(f"backend {package!r} is not installed ({exc}); install it with `pip install {package}`") from None


def _cpu_threads(threads: int | None) -> int:
    return threads if threads else (os.cpu_count() or 1)


class TFLiteBackend:
    """A TFLite interpreter behind a lock: one interpreter is not safe to call from two threads."""

    def __init__(self, path: Path, threads: int | None = None, package: str | None = None) -> None:
        if package:
            module, self.package = _import(package), package
        else:
            module = None
            for name in TFLITE_PACKAGES:
                try:
                    module, self.package = _import(name), name
                    break
                except BackendError:
                    continue
            if module is None:
                raise BackendError(f"{path}: no TFLite interpreter installed; install ai-edge-litert (`pip install ai-edge-litert`) "
                                   "or tflite-runtime")
        try:
            self._interpreter = module.Interpreter(model_path=str(path), num_threads=_cpu_threads(threads))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: the TFLite interpreter cannot load it ({str(exc).strip().splitlines()[0]})") from None
        (inp,), (out,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self.input, self.output = self._info(inp), self._info(out)
        self._in_index, self._out_index = inp["index"], out["index"]
        self._lock = threading.Lock()

    @staticmethod
    def _info(detail: dict) -> TensorInfo:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return TensorInfo(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]),
                          float(scale), int(zero_point))

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        out = np.empty(len(pixels), dtype=np.float64)
        with self._lock:
            for i in range(len(pixels)):  # batch 1, as on the device; the graph is converted for batch 1
                x = pixels[i:i + 1]
                x = quantize(x, self.input) if self.input.quantized else np.asarray(x, dtype=self.input.dtype)
                self._interpreter.set_tensor(self._in_index, x)
                self._interpreter.invoke()
                out[i] = dequantize(self._interpreter.get_tensor(self._out_index), self.output).reshape(-1)[0]
        return out


class OnnxBackend:
    """An onnxruntime session (thread-safe by design) fed float32 pixels in batches."""

    package = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = _cpu_threads(threads)
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ModelFileError(f"{path}: onnxruntime cannot load it ({str(exc).strip().splitlines()[0]})") from None
        (inp,), (out,) = self._session.get_inputs(), self._session.get_outputs()
        self.input = TensorInfo(inp.name, tuple(d if isinstance(d, int) else -1 for d in inp.shape), np.dtype(np.float32))
        self.output = TensorInfo(out.name, tuple(d if isinstance(d, int) else -1 for d in out.shape), np.dtype(np.float32))

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        parts = [self._session.run([self.output.name], {self.input.name: np.asarray(pixels[s:s + _ONNX_BATCH], dtype=np.float32)}
                                   )[0].reshape(-1) for s in range(0, len(pixels), _ONNX_BATCH)]
        return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None) -> Backend:
    """Open ``path`` with the backend its suffix calls for (or the one named)."""
    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        if backend in ONNX_PACKAGES:
            raise BackendError(f"{path}: backend {backend!r} cannot run a .tflite model; expected one of {', '.join(TFLITE_PACKAGES)}")
        return TFLiteBackend(path, threads, backend)
    if suffix == ".onnx":
        if backend in TFLITE_PACKAGES:
            raise BackendError(f"{path}: backend {backend!r} cannot run an .onnx model; expected onnxruntime")
        return OnnxBackend(path, threads)
    raise ModelFileError(f"{path}: unsupported model suffix {suffix!r}; expected .tflite or .onnx")
