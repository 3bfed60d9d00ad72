"""Turning stored images into the model's input: RGB pixels in [0, 255] at a square size.

The model graph does its own scaling to [-1, 1], so the only work outside it is what a graph
cannot do well for every caller: channel layout, the declared pixel range of float data, and
resizing. Trainer and runtime both call this module, so a deployed model sees exactly the
pixels it was trained on (same resampling filter, same rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import ConfigError, DataError

MIN_IMAGE_SIZE = 75  # InceptionV3's smallest accepted input (its stride-2 stem needs it)
RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking, smooth when enlarging


@dataclass(frozen=True)
class PixelRange:
    """The value range that float images are stored in, declared by the user, never guessed."""

    low: float
    high: float

    @classmethod
    def parse(cls, text: str) -> PixelRange:
        """Parse ``"LOW,HIGH"``, e.g. ``"0,1"`` or ``"-1,1"``."""
        parts = str(text).split(",")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"pixel range {text!r}: expected LOW,HIGH such as 0,1 or 0,255 or -1,1") from None
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise ConfigError(f"pixel range {text!r}: expected finite LOW < HIGH")
        return cls(low, high)

    def __str__(self) -> str:
        return f"{self.low:g},{self.high:g}"


UINT8_RANGE = PixelRange(0.0, 255.0)


def check_pixels(images: np.ndarray, pixel_range: PixelRange | None, source: str) -> None:
    """Raise :class:`DataError` unless ``images`` hold finite pixels in their declared range.

    uint8 images are 0-255 by definition; float images need ``pixel_range``. Works on a
    chunk at a time, so a memory-mapped array is scanned with flat memory.
    """
    if images.ndim >= 3 and 0 in images.shape[1:3]:
        raise DataError(f"{source}: images of shape {tuple(images.shape)} have no pixels; expected at least 1x1 per image")
    if images.dtype == np.uint8:
        if pixel_range is not None and pixel_range != UINT8_RANGE:
            raise ConfigError(f"{source}: images are uint8 (0-255); --pixel-range {pixel_range} applies to float images only")
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{source}: images have dtype {images.dtype}; expected uint8 or float")
    if pixel_range is None:
        raise ConfigError(f"{source}: images are {images.dtype}; declare their value range with --pixel-range LOW,HIGH (e.g. 0,1 or 0,255)")
    step = max(1, (64 << 20) // max(1, images[:1].nbytes))
    for start in range(0, images.shape[0], step):
        chunk = np.asarray(images[start:start + step])
        if not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk).reshape(chunk.shape[0], -1).all(axis=1))[0][0])
            raise DataError(f"{source}: image {bad} contains NaN or inf; expected finite pixels")
        lo, hi = float(chunk.min()), float(chunk.max())
        if lo < pixel_range.low or hi > pixel_range.high:
            raise DataError(f"{source}: pixel values span [{lo:g}, {hi:g}], outside the declared --pixel-range {pixel_range}")


def _as_channels_last(images: np.ndarray, source: str) -> np.ndarray:
    if images.ndim in (3, 4) and 0 in images.shape[1:3]:
        raise DataError(f"{source}: images of shape {tuple(images.shape)} have no pixels; expected at least 1x1 per image")
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return images
    raise DataError(f"{source}: image array has shape {tuple(images.shape)}; expected (N,H,W), (N,H,W,1) or (N,H,W,3)")


def to_model_pixels(images: np.ndarray, image_size: int | None, pixel_range: PixelRange | None,
                    source: str = "images", keep_uint8: bool = False) -> np.ndarray:
    """Convert a batch to float32 RGB pixels in [0, 255] of shape (N, S, S, 3).

    ``image_size=None`` keeps the stored size. uint8 images are resized in uint8 (as a
    uint8-input int8 model will see them); float images are mapped from their declared range
    to [0, 255] and resized in float32. Grayscale is resized once, then replicated to RGB.
    ``keep_uint8`` returns uint8 sources as uint8 (the same values, a quarter of the memory; what
    an integer-input model takes as is).
    """
    batch = _as_channels_last(np.asarray(images), source)
    if batch.dtype != np.uint8:
        if pixel_range is None:
            raise ConfigError(f"{source}: images are {batch.dtype}; declare their value range with --pixel-range LOW,HIGH")
        scale = np.float32(255.0 / (pixel_range.high - pixel_range.low))
        batch = (batch.astype(np.float32) - np.float32(pixel_range.low)) * scale
    _n, h, w, c = batch.shape
    if image_size is not None and (h, w) != (image_size, image_size):
        batch = resize_batch(batch, image_size)
    out = batch if keep_uint8 and batch.dtype == np.uint8 else batch.astype(np.float32, copy=False)
    if c == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def resize_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) to (N, size, size, C) with :data:`RESAMPLE`; uint8 stays uint8, float is resized as float32."""
    n, _, _, c = batch.shape
    out = np.empty((n, size, size, c), dtype=batch.dtype)
    for i in range(n):
        if batch.dtype == np.uint8:
            img = Image.fromarray(np.ascontiguousarray(batch[i, :, :, 0] if c == 1 else batch[i]))  # "L" or "RGB"
            resized = np.asarray(img.resize((size, size), RESAMPLE))
            out[i] = resized[..., None] if c == 1 else resized
        else:
            for ch in range(c):  # PIL resizes float data one channel at a time (mode "F")
                img = Image.fromarray(np.ascontiguousarray(batch[i, :, :, ch], dtype=np.float32))  # mode "F"
                out[i, :, :, ch] = np.asarray(img.resize((size, size), RESAMPLE))
    return out
