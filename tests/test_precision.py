"""bfloat16 fine-tuning (train.precision): a twin that computes in bfloat16 on the float32 model's weights, refused on
CPUs that would emulate it, and nothing in bfloat16 in what is saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_npz

from runtime.errors import ConfigError
from train.card import CONFIG_NAME
from train.config import TrainConfig
from train.precision import (
    bf16_twin,
    check_bf16_supported,
    copy_weights,
    cpu_bf16_flags,
)

ZEN4_FLAGS = "fpu vme avx2 avx512f avx512_vnni avx512_bf16 sha_ni"
AVX2_FLAGS = "fpu vme avx2 fma sha_ni"
# bfloat16 keeps 8 significant bits (relative step 2**-8 = 0.004): the small model's logits (about -0.7) move by
# 0.0017 at most, 0.01 allows 6x that and is still a twelfth of the 0.12 the eight logits span.
BF16_LOGIT_TOLERANCE = 0.01


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text("".join(f"processor\t: {i}\nflags\t\t: {flags}\n\n" for i in range(2)))
    return path


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    assert cpu_bf16_flags(_cpuinfo(tmp_path, ZEN4_FLAGS)) == ("avx512_bf16",)
    assert cpu_bf16_flags(_cpuinfo(tmp_path, AVX2_FLAGS + " amx_bf16 avx512_bf16")) == ("avx512_bf16", "amx_bf16")
    assert cpu_bf16_flags(_cpuinfo(tmp_path, AVX2_FLAGS)) == ()
    assert cpu_bf16_flags(tmp_path / "absent") is None


def test_a_cpu_without_bf16_is_refused_with_the_file_and_the_fix(tmp_path):
    cpuinfo = _cpuinfo(tmp_path, AVX2_FLAGS)
    with pytest.raises(ConfigError) as info:
        check_bf16_supported(has_gpu=False, cpuinfo=cpuinfo)
    message = str(info.value)
    assert str(cpuinfo) in message and "avx512_bf16" in message and "--precision float32" in message
    assert check_bf16_supported(has_gpu=True, cpuinfo=cpuinfo) == "GPU"
    assert check_bf16_supported(has_gpu=False, cpuinfo=_cpuinfo(tmp_path, ZEN4_FLAGS)) == "CPU (avx512_bf16)"
    assert check_bf16_supported(has_gpu=False, cpuinfo=tmp_path / "absent").startswith("CPU (unknown")


@pytest.mark.parametrize("values, expected", [
    ({"precision": "half"}, "--precision 'half': expected one of float32, bfloat16"),
    ({"precision": "bfloat16", "fine_tune": "none"}, "--precision bfloat16 with nothing to fine-tune (--fine-tune none"),
    ({"precision": "bfloat16", "weights": "imagenet"}, "--precision bfloat16 with nothing to fine-tune (--fine-tune auto"),
    ({"precision": "bfloat16", "fine_tune_epochs": 0}, "--fine-tune-epochs 0"),
])
def test_precision_options_that_cannot_apply_are_refused(values, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig(data="d.npz", out="m", **{"weights": "none", **values})
    assert expected in str(info.value)


def _small_top():
    """A functional model shaped like train.model's ``top`` view: convolutions, a frozen BatchNormalization, a logit."""
    import keras

    keras.utils.set_random_seed(0)
    features = keras.Input((9, 9, 16), name="cached")
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv")(features)
    bn = keras.layers.BatchNormalization(name="bn")
    x = keras.layers.Activation("relu", name="relu")(bn(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(features, keras.layers.Dense(1, name="logit")(x))
    bn.trainable = False
    return model


def test_the_twin_computes_in_bf16_on_float32_copies_of_the_weights():
    model = _small_top()
    twin = bf16_twin(model)
    policies = {layer.name: layer.dtype_policy.name for layer in twin.layers[1:]}
    assert policies == {"conv": "mixed_bfloat16", "bn": "mixed_bfloat16", "relu": "mixed_bfloat16",
                        "pool": "mixed_bfloat16", "logit": "float32"}
    assert {v.dtype for v in twin.variables} == {"float32"}
    assert [layer.trainable for layer in twin.layers] == [layer.trainable for layer in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights(), strict=True))
    x = np.random.default_rng(0).normal(size=(8, 9, 9, 16)).astype(np.float32)
    want, got = np.asarray(model(x)), np.asarray(twin(x))
    assert got.dtype == np.float32
    assert 0 < np.abs(got - want).max() < BF16_LOGIT_TOLERANCE  # above 0: it did compute in bfloat16
    assert np.ptp(want) > 10 * BF16_LOGIT_TOLERANCE  # so the tolerance could not pass a twin that ignored its input


def test_what_the_twin_learns_is_copied_back_exactly():
    import keras
    import tensorflow as tf

    model = _small_top()
    twin = bf16_twin(model)
    before = model.get_weights()
    x = tf.constant(np.random.default_rng(1).normal(size=(8, 9, 9, 16)).astype(np.float32))
    y = tf.constant(np.repeat([[0.0], [1.0]], 4, axis=0))
    optimizer = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)(y, twin(x, training=True))
    optimizer.apply(tape.gradient(loss, twin.trainable_variables), twin.trainable_variables)
    copy_weights(twin, model)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(after, twin.get_weights(), strict=True))
    moved = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert sum(moved) == 4  # conv kernel and bias, logit kernel and bias; the frozen BatchNormalization's 4 stay


def test_a_bf16_run_saves_a_float32_model_or_is_refused_on_this_cpu(tmp_path):
    """End to end on small arrays: on a CPU with AVX512-BF16 or AMX the run trains and saves float32 only; elsewhere
    it stops with the ConfigError before any training."""
    import tensorflow as tf

    from train.pipeline import train

    cfg = TrainConfig(data=str(write_npz(tmp_path / "d.npz")), out=str(tmp_path / "m"), image_size=75, weights="none",
                      epochs=1, fine_tune_epochs=1, precision="bfloat16")
    if not cpu_bf16_flags() and not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ConfigError, match="--precision bfloat16: /proc/cpuinfo lists neither"):
            train(cfg)
        assert not (tmp_path / "m").exists()
        return
    result = train(cfg)
    assert result.card.architecture["fine_tune_precision"] == "bfloat16"
    assert TrainConfig.load(result.out / CONFIG_NAME).precision == "bfloat16"
    loaded = tf.saved_model.load(str(result.out / result.card.saved_model))
    assert {v.dtype for v in loaded.variables} == {tf.float32}
    assert 0.0 <= result.card.metrics["test"].auc <= 1.0 and result.card.metrics["test"].n == 24
