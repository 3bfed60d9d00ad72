"""Occlusion sensitivity: which regions, when hidden, change the model's answer.

A grey patch (the image's mean pixel by default) slides over the image the model sees; each
position costs one inference, and the change in the positive class's probability is spread over
the pixels the patch covered. It needs no gradients, so it runs on the int8 TFLite and ONNX
files on the Pi itself, with the same backend as ``predict``.

What the map shows: how much the model's output depends on each region, under this one kind of
perturbation, at this patch size. What it does not show: where the disease is, why the model
decided, or anything about regions whose evidence is spread out (hiding one patch changes little
when another carries the same signal). Occluded images are outside the training distribution,
so large changes can reflect the patch itself. docs/runtime.md says the same for readers.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .classifier import Classifier, ImageLike
from .errors import ConfigError, DataError
from .fileio import atomic_write_bytes
from .metrics import sigmoid
from .parity import centre_crop
from .reader import read_image

_BATCH = 32
DISPLAY_SIZE = 512  # the overlay's longer side: readable on a screen whatever the model size


@dataclass(frozen=True)
class OcclusionConfig:
    """Patch and stride as fractions of the model input's side; ``fill`` is ``mean`` or a pixel value 0-255."""

    patch: float = 1 / 7  # about 4 of PneumoniaMNIST's 28 pixels: a lung zone, not a single rib
    stride: float = 0.5  # of the patch: every pixel is covered by about four positions
    fill: str = "mean"

    def validate(self) -> OcclusionConfig:
        if not 0.0 < self.patch <= 0.5:
            raise ConfigError(f"--patch {self.patch}: expected a fraction of the image side in (0, 0.5]")
        if not 0.0 < self.stride <= 1.0:
            raise ConfigError(f"--stride {self.stride}: expected a fraction of the patch in (0, 1]")
        if self.fill != "mean":
            try:
                value = float(self.fill)
            except ValueError:
                raise ConfigError(f"--fill {self.fill!r}: expected mean or a pixel value 0-255") from None
            if not 0.0 <= value <= 255.0:
                raise ConfigError(f"--fill {self.fill!r}: expected mean or a pixel value 0-255")
        return self


@dataclass(frozen=True)
class Explanation:
    """The occlusion map (model input resolution) and what it was computed from."""

    probability: float
    positive: bool
    label: str
    operating_point: str
    threshold: float
    delta: np.ndarray  # (S, S): mean drop in probability when a patch covering the pixel is hidden
    patch_px: int
    stride_px: int
    evaluations: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"probability": self.probability, "positive": self.positive, "label": self.label,
                "operating_point": self.operating_point, "threshold": self.threshold, "patch_px": self.patch_px,
                "stride_px": self.stride_px, "evaluations": self.evaluations, "seconds": round(self.seconds, 3),
                "max_drop": float(self.delta.max()), "max_rise": float(-self.delta.min())}


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Patch origins along one axis, the last one flush with the edge so no border goes unexamined."""
    last = size - patch
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion_map(clf: Classifier, image: ImageLike, config: OcclusionConfig = OcclusionConfig()) -> Explanation:
    """Hide each patch in turn and record how the positive probability changes."""
    config.validate()
    started = time.perf_counter()
    pixels = clf.pixels(image)
    if len(pixels) != 1:
        raise DataError(f"explain takes one image; got a batch of {len(pixels)}")
    base = pixels[0]
    size = base.shape[0]
    patch = max(1, round(config.patch * size))
    stride = max(1, round(config.stride * patch))
    fill = float(base.mean()) if config.fill == "mean" else float(config.fill)
    fill_value = np.asarray(round(fill) if base.dtype == np.uint8 else fill, dtype=base.dtype)
    spots = [(y, x) for y in _positions(size, patch, stride) for x in _positions(size, patch, stride)]
    p0 = float(sigmoid(clf.logits(pixels))[0])
    drops = np.empty(len(spots))
    for start in range(0, len(spots), _BATCH):
        chunk = spots[start:start + _BATCH]
        batch = np.repeat(pixels, len(chunk), axis=0)
        for i, (y, x) in enumerate(chunk):
            batch[i, y:y + patch, x:x + patch] = fill_value
        drops[start:start + len(chunk)] = p0 - sigmoid(clf.logits(batch))
    total = np.zeros((size, size))
    count = np.zeros((size, size))
    for (y, x), d in zip(spots, drops):
        total[y:y + patch, x:x + patch] += d
        count[y:y + patch, x:x + patch] += 1
    positive = p0 >= clf.threshold
    return Explanation(p0, positive, clf.class_names[int(positive)], clf.operating_point, clf.threshold,
                       total / np.maximum(count, 1), patch, stride, len(spots) + 1, time.perf_counter() - started)


def display_image(clf: Classifier, image: ImageLike) -> np.ndarray:
    """The region the model looked at, at its own resolution (uint8 grayscale or RGB), for the overlay."""
    if isinstance(image, (str, Path)):
        array = read_image(Path(image), clf.dicom_window)
    elif isinstance(image, Image.Image):
        array = np.asarray(image.convert("L") if image.mode not in ("L", "RGB") else image)
    else:
        array = np.asarray(image)
    if array.dtype != np.uint8:  # float input: the classifier's declared pixel range maps it to 0-255
        array = clf.pixels(array)[0][..., 0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if clf.parity == "crop" and clf.training_shape is not None:
        array = centre_crop(array, clf.training_shape[0] / clf.training_shape[1])
    return array


def _diverging(values: np.ndarray) -> np.ndarray:
    """-1..1 to RGB: blue where hiding the region raises the probability, red where it lowers it."""
    v = np.clip(values, -1.0, 1.0)[..., None]
    red, blue = np.array([220.0, 40.0, 30.0]), np.array([30.0, 90.0, 220.0])
    return np.where(v >= 0, red, blue) * np.ones_like(v)


def render_overlay(background: np.ndarray, explanation: Explanation, title: str, alpha: float = 0.6) -> Image.Image:
    """The image with the map blended in (opacity by strength), a title band and a colour key."""
    gray = background if background.ndim == 2 else np.asarray(Image.fromarray(background).convert("L"))
    h, w = gray.shape
    scale = DISPLAY_SIZE / max(h, w)
    dh, dw = max(1, round(h * scale)), max(1, round(w * scale))
    shown = np.asarray(Image.fromarray(gray).resize((dw, dh), Image.Resampling.BILINEAR), dtype=np.float64)
    delta = np.asarray(Image.fromarray(explanation.delta.astype(np.float32)).resize((dw, dh), Image.Resampling.BILINEAR))
    peak = float(np.abs(explanation.delta).max())
    strength = delta / peak if peak > 0 else np.zeros_like(delta)
    a = (alpha * np.abs(strength))[..., None]
    rgb = shown[..., None] * (1 - a) + _diverging(strength) * a
    font = ImageFont.load_default()
    band = 58
    canvas = Image.new("RGB", (dw, dh + band), "white")
    canvas.paste(Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)), (0, band))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), title, fill="black", font=font)
    key = (f"red: hiding it lowers p (up to {max(0.0, explanation.delta.max()):.3f}); blue: raises p "
           f"(up to {max(0.0, -explanation.delta.min()):.3f}); patch {explanation.patch_px} px of "
           f"{explanation.delta.shape[0]}")
    draw.text((6, 22), key, fill="black", font=font)
    ramp = np.linspace(-1, 1, max(2, dw - 12))
    bar = (255 * (1 - 0.6 * np.abs(ramp))[:, None] + _diverging(ramp) * 0.6 * np.abs(ramp)[:, None]).astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(bar[None], 10, axis=0)), (6, 40))
    return canvas


def check_png_path(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: expected a .png file name")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; expected a .png file name")
    return out


def explain_to_png(clf: Classifier, image: ImageLike, out: str | Path, config: OcclusionConfig = OcclusionConfig()) -> Explanation:
    """Compute the map for ``image`` and write the overlay PNG to ``out`` (atomically)."""
    out = check_png_path(out)
    name = Path(image).name if isinstance(image, (str, Path)) else "image"
    if isinstance(image, (str, Path)):  # decoded once for the map and the picture (a DICOM costs ~150 ms to read)
        image = read_image(Path(image), clf.dicom_window)
    explanation = occlusion_map(clf, image, config)
    title = (f"{name}: p({clf.class_names[1]}) = {explanation.probability:.3f} -> {explanation.label} "
             f"({explanation.operating_point}, p >= {explanation.threshold:.3f})")
    canvas = render_overlay(display_image(clf, image), explanation, title)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
    return explanation


def evaluations_for(size: int, config: OcclusionConfig = OcclusionConfig()) -> int:
    """Inferences one map costs at a model size (the positions per axis squared, plus the unoccluded one)."""
    patch = max(1, round(config.patch * size))
    stride = max(1, round(config.stride * patch))
    return len(_positions(size, patch, stride)) ** 2 + 1
