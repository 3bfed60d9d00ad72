"""Inference backends: run an exported model on 0-255 RGB pixels and return float logits.

One small class per file format, sharing one contract (:class:`Backend`): the caller hands
pixels as the trainer saw them (``runtime.images.to_model_pixels``), the backend quantizes them
with the input tensor's own scale and zero point when the model is integer, and dequantizes the
output the same way. For the default uint8-input TFLite export (scale 1, zero point 0) the
quantization is the identity on integer pixels, so no float maths happens before the model.

Packages are imported when a backend is opened, never at module import: the runtime must load
on a device that has only one of them installed. TensorFlow's ``tf.lite`` is the last TFLite
fallback, for a development machine that has TensorFlow and neither interpreter package.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import BackendError, ConfigError, ModelFileError, first_line

# Preferred first. All three share one Interpreter API; tensorflow is a development-machine fallback only.
TFLITE_PACKAGES = ("ai-edge-litert", "tflite-runtime", "tensorflow")
ONNX_PACKAGES = ("onnxruntime",)
BACKENDS = TFLITE_PACKAGES + ONNX_PACKAGES
_MODULES = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter",
            "tensorflow": "tensorflow", "onnxruntime": "onnxruntime"}
# Which TFLite kernels run an int8 model. "default" is what the package does unasked: ai-edge-litert
# applies the XNNPACK delegate. "builtin" is TFLite's own kernels without default delegates, which is
# what tflite-runtime 2.14 runs for int8 models. The two round differently inside the network
# (measured on the 75x75 reference model: up to 21 output steps apart), so export verifies both.
TFLITE_KERNELS = ("default", "builtin")
# The interpreter's C++ logger writes this on every load; on a CLI it would turn a one-line error into two.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
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
    kernels: str
    input: TensorInfo
    output: TensorInfo

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Logits, float64 of shape (N,), for pixels of shape (N, S, S, 3) in [0, 255]."""
        ...

    def bare_call(self, pixels: np.ndarray) -> contextlib.AbstractContextManager[Callable[[], np.ndarray]]:
        ...


def _import(package: str):
    try:
        module = importlib.import_module(_MODULES[package])
    except ImportError as exc:
        raise BackendError(f"backend {package!r} is not installed ({exc}); install it with `pip install {package}`") from None
    return module.lite if package == "tensorflow" else module


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 while the block runs.

    Interpreter loading logs from C++ straight to the descriptor, out of Python's reach. The
    captured lines are handed to the caller (to put a native error message into a typed error)
    and everything except known noise is written back to ``sys.stderr`` afterwards, so nothing a
    user might need is lost. The descriptor is process-wide, hence the lock.
    """
    lines: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter): capture nothing
            yield lines
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())
            kept = [line for line in lines if line not in _NATIVE_NOISE]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def cpu_threads(threads: int | None) -> int:
    """The engine thread count: as asked, or every core."""
    return threads if threads else (os.cpu_count() or 1)


def _tflite_module(path: Path, package: str | None):
    """The TFLite interpreter module to use, and its package: the one named, or the first installed."""
    if package:
        return _import(package), package
    for name in TFLITE_PACKAGES:
        try:
            return _import(name), name
        except BackendError:
            continue
    raise BackendError(f"{path}: no TFLite interpreter is installed; install ai-edge-litert (`pip install ai-edge-litert`), "
                       "or tflite-runtime on Pi images that have numpy<2")


def import_backend(path: str | Path, backend: str | None = None) -> str:
    """Import the package :func:`open_backend` will use for ``path`` and name it (``bench`` times this step)."""
    if Path(path).suffix.lower() == ".onnx":
        _import(backend or "onnxruntime")
        return backend or "onnxruntime"
    return _tflite_module(Path(path), backend)[1]


class TFLiteBackend:
    """TFLite interpreters for one model, safe to share between threads.

    A TFLite interpreter holds its tensors and must not run two calls at once, so each call takes
    an interpreter from a pool and gives it back. With ``interpreters=1`` (the default) this is a
    lock; more interpreters let that many calls run side by side, each on ``threads`` threads,
    at the cost of one activation arena each (``python -m runtime bench --callers`` measures both).
    """

    def __init__(self, path: Path, threads: int | None = None, package: str | None = None, interpreters: int = 1,
                 kernels: str = "default") -> None:
        module, self.package = _tflite_module(path, package)
        self.kernels = kernels
        options = {}
        if kernels == "builtin":
            resolvers = getattr(module, "OpResolverType", None) or module.experimental.OpResolverType  # tf.lite keeps it there
            options["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        loaded = [self._load(module, path, cpu_threads(threads), options) for _ in range(interpreters)]
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for interpreter in loaded:
            self._pool.put(interpreter)
        (inp,), (out,) = loaded[0].get_input_details(), loaded[0].get_output_details()
        self.input, self.output = self._info(inp), self._info(out)
        self._in_index, self._out_index = inp["index"], out["index"]

    def _load(self, module, path: Path, threads: int, options: dict):
        with native_stderr_captured() as native, warnings.catch_warnings():
            # tf.lite says it is deprecated in favour of ai-edge-litert; the fallback order already says so
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            try:
                interpreter = module.Interpreter(model_path=str(path), num_threads=threads, **options)
                interpreter.allocate_tensors()
                return interpreter
            except (ValueError, RuntimeError) as exc:
                error = exc
        detail = next((line for line in native if line.startswith("ERROR")), first_line(error))
        raise ModelFileError(f"{path}: the TFLite interpreter ({self.package}) cannot load it ({detail})") from None

    @staticmethod
    def _info(detail: dict) -> TensorInfo:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return TensorInfo(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]),
                          float(scale), int(zero_point))

    def _as_input(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels in the input tensor's dtype: quantized with its own scale and zero point when it is integer."""
        return quantize(pixels, self.input) if self.input.quantized else np.asarray(pixels, dtype=self.input.dtype)

    def invoke(self, interpreter, x: np.ndarray) -> np.ndarray:
        """One bare interpreter call on an already quantized batch of one (what ``bench`` compares against)."""
        interpreter.set_tensor(self._in_index, x)
        interpreter.invoke()
        return interpreter.get_tensor(self._out_index)

    @contextlib.contextmanager
    def interpreter(self) -> Iterator:
        """Borrow an interpreter for exclusive use; blocks while all are busy."""
        interpreter = self._pool.get()
        try:
            yield interpreter
        finally:
            self._pool.put(interpreter)

    @contextlib.contextmanager
    def bare_call(self, pixels: np.ndarray) -> Iterator[Callable[[], np.ndarray]]:
        """The engine alone on one prepared image: the baseline that wrapper overhead is measured against."""
        x = self._as_input(pixels[:1])
        with self.interpreter() as interpreter:
            yield lambda: self.invoke(interpreter, x)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        out = np.empty(len(pixels), dtype=np.float64)
        with self.interpreter() as interpreter:
            for i in range(len(pixels)):  # batch 1, as on the device; the graph is converted for batch 1
                out[i] = dequantize(self.invoke(interpreter, self._as_input(pixels[i:i + 1])), self.output).reshape(-1)[0]
        return out


def _onnxruntime_errors(ort) -> tuple[type[BaseException], ...]:
    """onnxruntime's load errors: its own exception classes (not RuntimeError subclasses), plus the builtins it raises."""
    state = ort.capi.onnxruntime_pybind11_state
    own = (getattr(state, name, None) for name in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf",
                                                    "InvalidGraph", "RuntimeException", "NotImplemented"))
    return tuple(cls for cls in own if isinstance(cls, type)) + (RuntimeError, ValueError)


class OnnxBackend:
    """An onnxruntime session (thread-safe by design) fed float32 pixels in batches."""

    package = "onnxruntime"
    kernels = "default"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads(threads)
        options.inter_op_num_threads = 1
        # On x86 without VNNI (AVX2, AVX-512 before VNNI) onnxruntime's uint8 x int8 kernels add products in pairs
        # into int16 and saturate: measured on an AVX2-only EPYC, the std of the int8 - float logit was 0.74 where the
        # same QDQ graph computed exactly gives 0.24. This option makes those CPUs multiply as uint8 x uint8 (no
        # saturation; 0.22 measured); on VNNI CPUs and on ARM it changes nothing.
        options.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except _onnxruntime_errors(ort) as exc:
            raise ModelFileError(f"{path}: onnxruntime cannot load it ({first_line(exc)})") from None
        (inp,), (out,) = self._session.get_inputs(), self._session.get_outputs()
        self.input = TensorInfo(inp.name, tuple(d if isinstance(d, int) else -1 for d in inp.shape), np.dtype(np.float32))
        self.output = TensorInfo(out.name, tuple(d if isinstance(d, int) else -1 for d in out.shape), np.dtype(np.float32))

    @contextlib.contextmanager
    def bare_call(self, pixels: np.ndarray) -> Iterator[Callable[[], np.ndarray]]:
        """The engine alone on one prepared image: the baseline that wrapper overhead is measured against."""
        feeds = {self.input.name: np.asarray(pixels[:1], dtype=np.float32)}
        yield lambda: self._session.run([self.output.name], feeds)[0]

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        parts = [self._session.run([self.output.name], {self.input.name: np.asarray(pixels[s:s + _ONNX_BATCH], dtype=np.float32)}
                                   )[0].reshape(-1) for s in range(0, len(pixels), _ONNX_BATCH)]
        return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None, interpreters: int = 1,
                 kernels: str = "default") -> Backend:
    """Open ``path`` with the backend its suffix calls for (or the one named).

    ``interpreters`` sizes the TFLite interpreter pool (see :class:`TFLiteBackend`); an onnxruntime
    session runs concurrent calls by itself and takes only 1. ``kernels`` picks the TFLite kernel set
    (see ``TFLITE_KERNELS``); onnxruntime has one.
    """
    path = Path(path)
    if interpreters < 1:
        raise ConfigError(f"interpreters={interpreters}: expected 1 or more")
    if kernels not in TFLITE_KERNELS:
        raise ConfigError(f"kernels={kernels!r}: expected one of {', '.join(TFLITE_KERNELS)}")
    if backend is not None and backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        if backend in ONNX_PACKAGES:
            raise BackendError(f"{path}: backend {backend!r} cannot run a .tflite model; expected one of {', '.join(TFLITE_PACKAGES)}")
        return TFLiteBackend(path, threads, backend, interpreters, kernels)
    if suffix == ".onnx":
        if backend in TFLITE_PACKAGES:
            raise BackendError(f"{path}: backend {backend!r} cannot run an .onnx model; expected onnxruntime")
        if kernels != "default":
            raise ConfigError(f"{path}: kernels={kernels!r} applies to .tflite models; onnxruntime has one kernel set")
        if interpreters != 1:
            raise ConfigError(f"{path}: interpreters={interpreters} applies to .tflite models; "
                              "an onnxruntime session runs concurrent calls by itself")
        return OnnxBackend(path, threads)
    raise ModelFileError(f"{path}: unsupported model suffix {suffix!r}; expected .tflite or .onnx")
