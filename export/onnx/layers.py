"""ONNX per-layer int8 error and the nodes one fallback step keeps in float.

In a QDQ model every quantized activation ``T`` is followed by QuantizeLinear and
DequantizeLinear. Run with graph optimizations off (so nothing is fused away), ``T`` and its
dequantized copy show what the int8 scale of that tensor destroys: onnxruntime's ``qdq_loss_debug``
pairs them the same way. That tool flattens every tensor to one dimension; the channel error needs
the channel axis, so the pairs are collected here, one image at a time (memory stays at one
image's activations, which matters at 299x299).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..layer_errors import LayerError, channel_error
from .convert import SAME_SCALE_OPS

# A QDQ activation written by one of these has its int8 range set before them: onnxruntime drops
# the Q/DQ pair between a Conv and its Relu, so keeping the tensor float means keeping the writer's
# input producer float too.
_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh")


def _graph_maps(model: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    producer = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return producer, readers


def qdq_pairs(model: Any) -> dict[str, str]:
    """Quantized activation -> its DequantizeLinear output (weights, which are initializers, are left out)."""
    initializers = {i.name for i in model.graph.initializer}
    dequantized = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.input[0]: dequantized[n.output[0]] for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in initializers and n.output[0] in dequantized}


def layer_errors(qdq_path: Path, prepared: Any, images: np.ndarray, work_dir: Path) -> list[LayerError]:
    """One row per quantized activation of ``qdq_path``, measured on ``images`` (float32 pixels, 0-255).

    ``prepared`` is the pre-processed fp32 model (an ``onnx.ModelProto``) whose node names the rows carry.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(qdq_path))
    pairs = qdq_pairs(model)
    for name in [*pairs, *pairs.values()]:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    probe = work_dir / "layer_errors.onnx"
    onnx.save(model, str(probe))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    errors: dict[str, list[float]] = {t: [] for t in pairs}
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for i in range(len(images)):
        values = dict(zip(outputs, session.run(None, {input_name: images[i:i + 1].astype(np.float32)})))
        for tensor, dequantized in pairs.items():
            ref, quant = values[tensor], values[dequantized]
            errors[tensor].append(channel_error(ref, quant, channel_axis=1 if ref.ndim == 4 else -1))  # ONNX: NCHW
            signal[tensor] += float(np.sum(np.square(ref, dtype=np.float64)))
            noise[tensor] += float(np.sum(np.square(quant.astype(np.float64) - ref)))
    del session
    probe.unlink()
    producer, _ = _graph_maps(prepared)
    rows = []
    for tensor, values in errors.items():
        node = producer.get(tensor)
        finite = [v for v in values if np.isfinite(v)]
        sqnr = 10 * np.log10(signal[tensor] / noise[tensor]) if noise[tensor] > 0 and signal[tensor] > 0 else float("inf")
        rows.append(LayerError(layer=node.name if node is not None else tensor, op=node.op_type if node is not None else "?",
                               tensor=tensor, channel_error=float(np.mean(finite)) if finite else 0.0,
                               extra={"sqnr_db": round(float(sqnr), 2) if np.isfinite(sqnr) else None}))
    return rows


def fallback_group(prepared: Any, tensor: str) -> list[str]:
    """Node names to exclude so that ``tensor`` stays float: its writer (and the op before an activation), its readers.

    A reader that only moves values (Reshape, Transpose, MaxPool, ...) would carry the tensor's
    range to its own output and quantize it there, so the readers of such ops are followed too.
    """
    producer, readers = _graph_maps(prepared)
    group = []
    node = producer.get(tensor)
    if node is not None:
        group.append(node.name)
        if node.op_type in _ACTIVATIONS and node.input and node.input[0] in producer:
            group.append(producer[node.input[0]].name)
    pending = [tensor]
    while pending:
        for reader in readers.get(pending.pop(), []):
            if reader.name in group:
                continue
            group.append(reader.name)
            if reader.op_type in SAME_SCALE_OPS:
                pending.extend(reader.output)
    return group
