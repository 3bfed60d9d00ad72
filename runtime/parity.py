"""Train/serve parity: an image goes to the model through the path the training images took.

PneumoniaMNIST's X-rays were centre-cropped to a square and downsampled to 28x28 before the
toolkit ever saw them; the trainer then enlarges those 28x28 pixels to the model size. A
full-resolution X-ray resized straight to 75 or 299 px carries detail the model never saw.
So, by default, an image whose size differs from the training images' recorded size is first
brought to that size, then enlarged exactly as in training (``runtime.images.to_model_pixels``).

The downsampling is an area average (PIL's BOX filter): each output pixel is the mean of the
input pixels it covers, the standard anti-aliased reduction (OpenCV's INTER_AREA). It undoes a
sharp (nearest-neighbour) enlargement exactly and a smooth (bicubic) one to within 1.3 grey
levels on average (Lanczos 1.1, bilinear 2.3: ``python -m benchmarks.parity``); unlike nearest
neighbour it cannot alias the fine detail a real full-resolution image has. The dataset does not
record the filter MedMNIST used.

``crop`` (the default) first centre-crops to the training images' aspect ratio, as MedMNIST did;
``stretch`` downsamples the whole image; ``off`` sends every image straight to the model size,
for models trained at full resolution. Images smaller than the training size in either direction
are not touched (there is no detail to remove).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import ConfigError
from .images import resize_batch

PARITY_CHOICES = ("crop", "stretch", "off")
DOWNSAMPLE = Image.Resampling.BOX


def check_parity(parity: str) -> str:
    if parity not in PARITY_CHOICES:
        raise ConfigError(f"--parity {parity!r}: expected one of {', '.join(PARITY_CHOICES)}")
    return parity


def centre_crop(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred region of ``image`` (H, W[, C]) whose height / width is ``aspect``."""
    h, w = image.shape[:2]
    if h > round(w * aspect):
        keep = max(1, round(w * aspect))
        top = (h - keep) // 2
        return image[top:top + keep]
    keep = max(1, round(h / aspect))
    if keep < w:
        left = (w - keep) // 2
        return image[:, left:left + keep]
    return image


def to_training_size(image: np.ndarray, training_shape: tuple[int, int] | None, parity: str) -> np.ndarray:
    """One image (H, W) or (H, W, C), uint8 or float32, at the training images' size when parity applies."""
    if parity == "off" or training_shape is None:
        return image
    th, tw = training_shape
    h, w = image.shape[:2]
    if (h, w) == (th, tw) or h < th or w < tw:
        return image  # checked before the crop: a small image has no detail to remove, and cropping would only lose some
    if parity == "crop":
        image = centre_crop(image, th / tw)  # trims one side to the training aspect: both stay >= the training size
    return image if image.shape[:2] == (th, tw) else area_resize(image, th, tw)


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average ``image`` to ``height`` x ``width``; uint8 is averaged in float and rounded once, as a
    dataset stored in uint8 is (PIL's own uint8 path rounds after each of its two passes)."""
    planes = image[..., None] if image.ndim == 2 else image
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32)).resize((width, height), DOWNSAMPLE))
                    for c in range(planes.shape[2])], axis=-1)
    out = out[..., 0] if image.ndim == 2 else out
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if image.dtype == np.uint8 else out


def file_to_training_pixels(image: np.ndarray, size: int) -> np.ndarray:
    """A decoded image file (H, W) or (H, W, 3) uint8 as a ``size`` x ``size`` training image.

    The training store of a folder or CSV source holds exactly what the runtime feeds the model for
    the same file at the default ``crop`` parity, when the model's training size is ``size``:
    :func:`to_training_size` (centre crop to square, area downsampling), then, for an image smaller
    than ``size`` in either direction, the bilinear resize of ``runtime.images.to_model_pixels``.
    """
    image = to_training_size(image, (size, size), "crop")
    if image.shape[:2] == (size, size):
        return image
    if image.ndim == 2:
        return resize_batch(image[None, :, :, None], size)[0, :, :, 0]
    return resize_batch(image[None], size)[0]
