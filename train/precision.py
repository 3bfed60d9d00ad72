"""bfloat16 fine-tuning on CPUs that compute it natively, with float32 weights and a float32 model.

At 299x299 the fine-tuning step runs near the CPU's float32 peak, so fewer bits per multiply is what is left to
gain. Keras' ``mixed_bfloat16`` policy computes in bfloat16 and keeps every variable in float32; the fine-tuned
blocks are trained through such a *twin* of the float32 ``top`` view (same layers, same weights), and the trained
weights are copied back. Nothing in bfloat16 reaches the SavedModel, its exports or the model card's metrics, which
are computed by the float32 model as always.

Only the fine-tuning step runs in bfloat16: the feature pass stays float32 so the cached features are the ones the
exported model computes. The logit layer stays float32 so the loss sees float32 logits.

Where bfloat16 pays: CPUs with AVX512-BF16 (Zen 4, Cooper Lake) or AMX (Sapphire Rapids and later), and GPUs. An
AVX2-only CPU has no bfloat16 arithmetic and would emulate it, slower than float32, so the option is refused there.
TensorFlow is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

from .model import OUTPUT_NAME

PRECISIONS = ("float32", "bfloat16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for the two instruction sets
CPUINFO = Path("/proc/cpuinfo")
KEPT_FLOAT32 = (OUTPUT_NAME,)  # the Dense layer whose output the loss reads


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> tuple[str, ...] | None:
    """The bfloat16 instruction sets this CPU announces, or None where the system does not say (no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def check_bf16_supported(has_gpu: bool, cpuinfo: Path = CPUINFO) -> str:
    """Say where bfloat16 will run, or raise :class:`ConfigError` on a CPU that would only emulate it."""
    if has_gpu:
        return "GPU"
    flags = cpu_bf16_flags(cpuinfo)
    if flags is None:
        return f"CPU (unknown: {cpuinfo} unreadable)"
    if not flags:
        raise ConfigError(f"--precision bfloat16: {cpuinfo} lists neither {' nor '.join(BF16_CPU_FLAGS)} and TensorFlow "
                          "sees no GPU, so bfloat16 would be emulated, slower than float32; expected --precision float32 "
                          "on this machine")
    return f"CPU ({', '.join(flags)})"


def bf16_twin(model: Any) -> Any:
    """A copy of ``model`` under the ``mixed_bfloat16`` policy, holding its weights and its layers' trainable flags.

    Create it under the same ``strategy.scope()`` as ``model``. Train it, then :func:`copy_weights` back.
    """
    import keras

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer) and layer.name not in KEPT_FLOAT32:
            config["dtype"] = keras.DTypePolicy("mixed_bfloat16")
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    for layer in twin.layers:
        if not isinstance(layer, keras.layers.InputLayer):  # the clones keep their names; the inputs are renamed
            layer.trainable = model.get_layer(layer.name).trainable
    copy_weights(model, twin)
    return twin


def copy_weights(source: Any, target: Any) -> None:
    """Every variable of ``source`` into ``target`` (float32 both: the mixed policy keeps variables in float32)."""
    target.set_weights(source.get_weights())
