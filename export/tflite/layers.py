"""TFLite per-layer int8 error and the nodes one fallback step keeps in float.

The error comes from TFLite's debug-mode quantization (what QuantizationDebugger runs): the int8
model is built with a NumericVerify op after every quantized op, and the op runs both in int8 and
in float on the same dequantized inputs. Each row is therefore the error that op adds itself,
weights and output rounding together, not error carried in from earlier layers.

The debug model is run here rather than through ``tf.lite.experimental.QuantizationDebugger``,
whose interpreter applies XNNPACK: XNNPACK refuses to prepare some broken models (a requantization
ratio above 256), and a broken model is exactly what this report is for. The reference kernels
run everything.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..layer_errors import LayerError, channel_error

_NUMERIC_VERIFY = "NumericVerify"
log = logging.getLogger("export")


def layer_errors(calibrated: bytes, images: np.ndarray) -> list[LayerError]:
    """One row per quantized op output, measured on ``images`` (float32 pixels, 0-255), averaged over images."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    debug_model = mlir_quantize(calibrated, False, enable_numeric_verify=True)  # float input and output
    with warnings.catch_warnings():  # tf.lite.Interpreter warns of its deprecation; NumericVerify exists only there
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(
            model_content=debug_model, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # the debugger's own route to the NumericVerify ops
    writer = {t: op["op_name"] for op in ops for t in op["outputs"]}
    checks = []
    for op in ops:
        if op["op_name"] == _NUMERIC_VERIFY:
            quantized, reference = op["inputs"][:2]
            q = interpreter._get_tensor_details(quantized, 0)["quantization_parameters"]
            # the float copy carries the tensor's name in the plain model (the int8 copy gets a suffix): the name
            # denylisting needs
            name = interpreter._get_tensor_details(reference, 0)["name"]
            checks.append((name, writer.get(quantized, "?"), quantized, reference, float(q["scales"][0]),
                           int(q["zero_points"][0])))
    (input_detail,) = interpreter.get_input_details()
    per_image: dict[str, list[tuple[float, float, float]]] = {c[0]: [] for c in checks}
    for i in range(len(images)):
        interpreter.set_tensor(input_detail["index"], images[i:i + 1].astype(np.float32))
        interpreter.invoke()
        for name, _, quantized, reference, scale, zero_point in checks:
            float_values = interpreter.get_tensor(reference)
            dequantized = (interpreter.get_tensor(quantized).astype(np.float32) - zero_point) * scale
            diff = dequantized - float_values
            per_image[name].append((channel_error(float_values, dequantized, channel_axis=-1),  # TFLite is NHWC
                                    float(np.sqrt(np.mean(np.square(diff, dtype=np.float64)))), float(np.abs(diff).max())))
    rows = []
    for name, op_name, _, _, scale, _ in checks:
        values = np.array(per_image[name], dtype=np.float64)
        errors = values[:, 0][np.isfinite(values[:, 0])]
        rmse = float(values[:, 1].mean())
        rows.append(LayerError(layer=name, op=op_name, tensor=name,
                               channel_error=float(errors.mean()) if errors.size else 0.0,
                               extra={"rmse": rmse, "scale": scale, "rmse_over_scale": rmse / scale if scale else 0.0,
                                      "max_abs_error": float(values[:, 2].max())}))
    return rows


def fallback_group(model: Any, tensor_name: str) -> list[str]:
    """``tensor_name`` and the outputs of every op that reads it: denylisting all of them keeps that tensor float."""
    graph = model.subgraphs[0]
    names = [_text(t.name) for t in graph.tensors]
    if tensor_name not in names:
        log.warning("fallback: no tensor %r in the int8 model; layer skipped", tensor_name)
        return []
    index = names.index(tensor_name)
    readers = [names[op.outputs[0]] for op in graph.operators if index in op.inputs and len(op.outputs)]
    return [tensor_name] + [n for n in readers if n != tensor_name]


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)
