"""SavedModel to TFLite: the converter call per mode, exact integer input, and a kernel inventory.

Full-integer int8 follows the TensorFlow post-training guide: a representative dataset,
``TFLITE_BUILTINS_INT8`` only, per-channel weights (the converter's default), integer input and
output. It runs in the converter's two steps, calibration and quantization, so that the
per-layer debugger and the float fallback reuse one calibration (:func:`calibrate`, :func:`quantize`).

The converter derives the input's scale from the calibration images' pixel range, e.g. 0-248
gives scale 0.9725: raw pixels would then need float maths on the device, and pixels above 248
would clip. :func:`pin_input_quantization` rewrites the input to scale 1 (zero point 0 for
uint8, -128 for int8) and requantizes the first layer's bias to match, so the uint8 model takes
raw pixels exactly, as the float model does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from runtime.errors import ExportError

log = logging.getLogger("export")

_INPUT_ZERO_POINT = {"uint8": 0, "int8": -128}
_BIASED_OPS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2}  # op -> index of its bias input
_INTEGER_TYPES = {"INT8", "UINT8", "INT32"}


def _converter(saved_model_dir: str, mode: str) -> Any:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # "dynamic": Optimize.DEFAULT without a representative dataset = int8 weights, float activations
    return converter


def _run(what: str, saved_model_dir: str, call: Any) -> bytes:
    """Converter failures become :class:`ExportError` with their first line."""
    try:
        return bytes(call())
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError, ...
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ExportError(f"{saved_model_dir}: the TFLite {what} failed ({lines[0] if lines else type(exc).__name__})") from exc


def convert(saved_model_dir: str, mode: str) -> bytes:
    """float16 or dynamic-range conversion (int8 goes through :func:`calibrate` and :func:`quantize`)."""
    if mode not in ("float16", "dynamic"):
        raise ValueError(f"convert() makes float16 and dynamic models, not {mode}")
    return _run("converter", saved_model_dir, _converter(saved_model_dir, mode).convert)


def calibrate(saved_model_dir: str, calibration: np.ndarray) -> bytes:
    """The float model with every tensor's calibrated range recorded: the input of every int8 build.

    Calibration (running the representative images) is the slow part of int8 conversion; doing it
    once lets the plain model, the per-layer debug model and each fallback step share the same ranges.
    """
    import tensorflow as tf

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i:i + 1].astype(np.float32)]

    converter = _converter(saved_model_dir, "int8")
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # the QuantizationDebugger recipe: calibrate, quantize later
    return _run("calibration", saved_model_dir, converter.convert)


def quantize(calibrated: bytes, input_type: str, float_nodes: list[str] | None = None, label: str = "model") -> bytes:
    """Full-integer int8 from a calibrated model, as the converter does it, with ``float_nodes`` left in float.

    ``float_nodes`` are output tensor names (TFLite's ``denylisted_nodes``). Input ``input_type``,
    output int8, per-channel weights.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    dtype = tf.uint8 if input_type == "uint8" else tf.int8
    return _run("quantizer", label, lambda: mlir_quantize(calibrated, False, input_data_type=dtype, output_data_type=tf.int8,
                                                           denylisted_nodes=list(float_nodes or []) or None))


def read_model(blob: bytes) -> Any:
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(blob))


def write_model(model: Any) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _op_name(model: Any, op: Any) -> str:
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)


def _type_name(code: int) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    return next((k for k, v in vars(schema.TensorType).items() if v == code and not k.startswith("_")), str(code))


def kernel_inventory(model: Any) -> dict[str, int]:
    """Count of ``OP(input dtype)`` in the main graph, e.g. ``{"CONV_2D(INT8)": 94}``."""
    graph = model.subgraphs[0]
    counts: Counter[str] = Counter()
    for op in graph.operators:
        first = next((i for i in op.inputs if i >= 0), None)
        dtype = _type_name(graph.tensors[first].type) if first is not None else "none"
        counts[f"{_op_name(model, op)}({dtype})"] += 1
    return dict(sorted(counts.items()))


def float_kernels(model: Any) -> list[str]:
    """Ops that read or write a float tensor: what a full-integer model must not contain."""
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        types = {_type_name(graph.tensors[i].type) for i in list(op.inputs) + list(op.outputs) if i >= 0}
        if types - _INTEGER_TYPES:
            found.append(f"{_op_name(model, op)}({','.join(sorted(types))})")
    return found


def _quant(tensor: Any) -> tuple[float, int]:
    q = tensor.quantization
    return float(q.scale[0]), int(q.zeroPoint[0])


def _set_quant(tensor: Any, scale: float | np.ndarray, zero_point: int | np.ndarray) -> None:
    q = tensor.quantization
    q.scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
    q.zeroPoint = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
    q.min = q.max = None


def pin_input_quantization(model: Any, input_type: str) -> dict[str, Any]:
    """Make the integer input take pixels at scale 1; return what changed (for the report).

    The converter's graph is ``input -> [QUANTIZE ->] CONV_2D``; the pixel-scaling layer is folded
    into that first convolution. Changing the scale of the tensor the convolution reads means
    requantizing its int32 bias (bias scale = input scale x weight scale per channel); every
    other consumer kind is refused, so a graph this code does not understand is left as it was.
    """
    graph = model.subgraphs[0]
    (input_index,) = graph.inputs
    consumers = [op for op in graph.operators if input_index in op.inputs]
    scaled = input_index
    if len(consumers) == 1 and _op_name(model, consumers[0]) == "QUANTIZE":
        scaled = consumers[0].outputs[0]
        consumers = [op for op in graph.operators if scaled in op.inputs]
    old_scale, old_zero = _quant(graph.tensors[scaled])
    if not consumers or any(_op_name(model, op) not in _BIASED_OPS for op in consumers):
        names = sorted({_op_name(model, op) for op in consumers})
        log.warning("input quantization left as calibrated (scale %.6g): first ops %s are not ones this exporter requantizes",
                    old_scale, names)
        return {"pinned": False, "calibrated_scale": old_scale, "calibrated_zero_point": old_zero}
    for op in consumers:
        bias_index = op.inputs[_BIASED_OPS[_op_name(model, op)]]
        if bias_index < 0:
            continue
        bias = graph.tensors[bias_index]
        buffer = model.buffers[bias.buffer]
        values = np.frombuffer(bytes(buffer.data), dtype="<i4").astype(np.float64)
        weight_scales = np.asarray(bias.quantization.scale, dtype=np.float64) / old_scale
        rescaled = np.rint(values * old_scale)  # same real bias, expressed in units of (1.0 x weight scale)
        if np.abs(rescaled).max(initial=0) >= 2**31:
            raise ExportError("requantized first-layer bias overflows int32; cannot pin the input scale")
        buffer.data = np.frombuffer(rescaled.astype("<i4").tobytes(), dtype=np.uint8)
        _set_quant(bias, weight_scales.astype(np.float32), np.zeros_like(weight_scales, dtype=np.int64))
    zero = _INPUT_ZERO_POINT[input_type]
    _set_quant(graph.tensors[input_index], 1.0, zero)
    if scaled != input_index:
        _set_quant(graph.tensors[scaled], 1.0, -128)
    return {"pinned": True, "scale": 1.0, "zero_point": zero, "calibrated_scale": old_scale,
            "calibrated_zero_point": old_zero}


def shift_output_bias(model: Any, shift: float) -> dict[str, Any]:
    """Add ``shift`` to the logit by adjusting the int32 bias of the FULLY_CONNECTED that produces it.

    Keeps the model integer-only (no extra op). Returns what was done, for the metadata.
    """
    graph = model.subgraphs[0]
    (output_index,) = graph.outputs
    producer = next((op for op in graph.operators if output_index in op.outputs), None)
    if producer is None or _op_name(model, producer) != "FULLY_CONNECTED" or len(producer.inputs) < 3 or producer.inputs[2] < 0:
        log.warning("bias correction skipped: the logit is not produced by a FULLY_CONNECTED with a bias")
        return {"applied": False}
    bias = graph.tensors[producer.inputs[2]]
    buffer = model.buffers[bias.buffer]
    (scale,) = np.asarray(bias.quantization.scale, dtype=np.float64)[:1]
    values = np.frombuffer(bytes(buffer.data), dtype="<i4").astype(np.int64)
    steps = int(np.rint(shift / scale))
    buffer.data = np.frombuffer((values + steps).astype("<i4").tobytes(), dtype=np.uint8)
    return {"applied": True, "logit_shift": steps * float(scale)}
