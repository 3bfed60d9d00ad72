"""A model made hard to quantize on purpose: the test case for ``--fallback auto``.

Per-tensor int8 activations share one scale across all channels of a tensor. When one channel
is a thousand times larger than the rest, that scale is set by it and every other channel
rounds to zero: the classic failure of post-training quantization (Nagel et al., "Data-Free
Quantization", 2019, on ranges that differ between channels).

:func:`make_hard_to_quantize` builds such a model from a trained model directory. In one
Inception branch a 1x1 convolution feeds only a 3x3 convolution through BatchNormalization and
ReLU. One output channel of the 1x1 convolution, chosen because removing it does not move the
logit, becomes a constant far above every other activation, and the 3x3 convolution's weights
for it become zero. In float nothing downstream sees the constant; in int8 it sets the tensor's
scale and the other channels of the branch round to zero. Keeping that tensor in float (the 1x1
convolution and its consumer) repairs it, which is what the fallback must find.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli
from runtime.errors import ConfigError, DataError, OutputError
from runtime.fileio import atomic_write_json, sha256_tree, staged_output_dir
from train.card import CARD_NAME, CONFIG_NAME, SAVED_MODEL_DIR, ModelCard

# mixed8's branch3x3 in Keras' InceptionV3: conv2d_70 (1x1, 768 -> 192) feeds only conv2d_71 (3x3 stride 2,
# 192 -> 320): 320 of mixed8's 1280 channels, which mixed9 and mixed10 both read. (mixed9's branch3x3dbl, conv2d_80, was
# the planted layer until the default recipe began to train mixed8: that model barely needs it, docs/export.md.)
PRODUCER, CONSUMER = "conv2d_70", "conv2d_71"
PRODUCER_BN = "batch_normalization_70"
BN_EPSILON = 1e-3  # keras.applications.inception_v3's BatchNormalization epsilon
# About 1,000x this tensor's largest activation in the 75x75 reference model (0.0052: its int8 scale was 2.04e-5), so
# every other channel of the tensor rounds to zero. At 200x (1.0) they round to 0 or 1 step, and plain int8 drifts
# beyond the limits on test but not on val's 270 images. Far larger values (1e4) break XNNPACK instead (a
# requantization ratio above 256 fails to prepare), which tests nothing useful. A model with larger activations
# (ImageNet weights) needs a larger value: --outlier.
OUTLIER = 5.0
PROBED_CHANNELS = 16  # each probe is one forward pass; among 16 channels of a ReLU layer one is nearly always silent


def _variables(module: Any) -> dict[str, Any]:
    return {v.name.split(":")[0]: v for v in module.variables}


def _set(variable: Any, index: Any, value: float) -> None:
    values = variable.numpy()
    values[index] = value
    variable.assign(values)


def quietest_channel(module: Any, pixels: np.ndarray, candidates: int = PROBED_CHANNELS) -> tuple[int, float]:
    """The channel among the first ``candidates`` of ``PRODUCER``'s output that moves the logit least when removed.

    Returns it and its mean |delta logit| on ``pixels``: 0.0 for a channel ReLU keeps at zero,
    whose replacement then leaves the float model exactly as it was.
    """
    consumer = _variables(module)[f"{CONSUMER}/kernel"]
    original = consumer.numpy()
    before = _logits(module, pixels)
    effects = []
    try:
        for channel in range(min(candidates, original.shape[2])):
            probe = original.copy()
            probe[:, :, channel, :] = 0.0
            consumer.assign(probe)
            effects.append(float(np.abs(_logits(module, pixels) - before).mean()))
    finally:
        consumer.assign(original)
    quietest = int(np.argmin(effects))
    return quietest, effects[quietest]


def plant_outlier(module: Any, channel: int, value: float = OUTLIER) -> dict[str, Any]:
    """Make ``PRODUCER``'s output ``channel`` the constant ``value`` and have ``CONSUMER`` ignore it, in place."""
    v = _variables(module)
    kernel, consumer = v[f"{PRODUCER}/kernel"], v[f"{CONSUMER}/kernel"]
    if kernel.shape[-1] != consumer.shape[2] or not 0 <= channel < kernel.shape[-1]:
        raise ValueError(f"{PRODUCER} -> {CONSUMER}: kernels {kernel.shape} and {consumer.shape} do not chain at channel {channel}")
    last = (Ellipsis, channel)
    _set(kernel, last, 0.0)  # BN((0 - 0) / sqrt(1 - eps + eps)) + value = value, and ReLU keeps it
    _set(v[f"{PRODUCER_BN}/moving_mean"], last, 0.0)
    _set(v[f"{PRODUCER_BN}/moving_variance"], last, 1.0 - BN_EPSILON)
    _set(v[f"{PRODUCER_BN}/beta"], last, value)
    _set(consumer, (slice(None), slice(None), channel, slice(None)), 0.0)
    return {"producer": PRODUCER, "consumer": CONSUMER, "channel": channel, "outlier": value}


def make_hard_to_quantize(model_dir: str | Path, out: str | Path, pixels: np.ndarray, value: float = OUTLIER) -> Path:
    """Write a copy of ``model_dir`` whose SavedModel has one outlier channel (see the module docstring).

    ``pixels`` (N, S, S, 3), real images, choose the channel and prove that the float logits did
    not move (max |delta logit| is recorded in the card), so the card keeps the original's
    operating points and metrics.
    """
    import tensorflow as tf

    source = Path(model_dir)
    # tf.saved_model.save lists hundreds of renamed inputs (absl) and its assets (tensorflow) at INFO
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with staged_output_dir(out, overwrite=True) as stage:
            for name in (CARD_NAME, CONFIG_NAME):
                shutil.copyfile(source / name, stage / name)
            module = tf.saved_model.load(str(source / SAVED_MODEL_DIR))
            before = _logits(module, pixels)
            channel, effect = quietest_channel(module, pixels)
            change = plant_outlier(module, channel, value)
            change.update(removed_channel_mean_abs_logit=effect, checked_images=len(pixels),
                          max_abs_delta_logit=float(np.abs(_logits(module, pixels) - before).max()))
            tf.saved_model.save(module, str(stage / SAVED_MODEL_DIR),
                                signatures={name: module.signatures[name] for name in module.signatures})
            card = ModelCard.load(stage)
            card = replace(card, saved_model_sha256=sha256_tree(stage / SAVED_MODEL_DIR),
                           architecture={**card.architecture, "hard_to_quantize": change})
            atomic_write_json(stage / CARD_NAME, card.to_dict())
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return Path(out)


def _logits(module: Any, pixels: np.ndarray) -> np.ndarray:
    outputs = [np.asarray(module.serve(pixels[i:i + 32].astype(np.float32))) for i in range(0, len(pixels), 32)]
    return np.concatenate(outputs).reshape(-1)


def build_hard_case(model_dir: str | Path, out: str | Path, images: int = 32, value: float = OUTLIER) -> Path:
    """:func:`make_hard_to_quantize` on the first ``images`` validation images of the model's own data."""
    from export.source import open_model_dir, open_training_data
    from export.splits import verification_splits

    source = open_model_dir(model_dir)
    dataset = open_training_data(source, None)
    val = next((d for d in verification_splits(dataset.splits, source.card.positive_label, source.card.image_size, source.pixel_range)
                if d.name == "val"), None)
    if val is None:
        raise DataError(f"{dataset.path}: no val split; expected one to check that the float logits do not move")
    return make_hard_to_quantize(model_dir, out, val.pixels[:images].astype(np.float32), value)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.hard_case",
               description="Copy a trained model directory with one InceptionV3 tensor made hard to quantize (an outlier "
                           "channel in mixed8; the float logits unchanged), to try --fallback auto on.",
               epilog="example: python -m benchmarks.hard_case --model runs/m75 --out runs/m75-hard && "
                      "python -m export.tflite --model runs/m75-hard --fallback auto",
               formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="model directory written by `python -m train` (75x75 or larger)")
    p.add_argument("--out", required=True, help="new model directory (must not exist)")
    p.add_argument("--outlier", type=float, default=OUTLIER,
                   help="the planted channel's constant value: about 1,000x the tensor's largest activation breaks int8 "
                        "without breaking XNNPACK")
    args = p.parse_args(argv)

    def go() -> None:
        if Path(args.out).exists():
            raise OutputError(f"{args.out}: already exists; expected a new directory for the hard-to-quantize copy")
        if not args.outlier > 0:
            raise ConfigError(f"--outlier {args.outlier}: expected a positive number")
        out = build_hard_case(args.model, args.out, value=args.outlier)
        change = ModelCard.load(out).architecture["hard_to_quantize"]
        print(f"{out}: {PRODUCER} channel {change['channel']} is now the constant {change['outlier']:g}; "
              f"float logits moved by at most {change['max_abs_delta_logit']:.3g} on {change['checked_images']} val images")

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
