"""Reading one image file into uint8 pixels: the single reader of training, export, evaluation and the device.

Training from files and predicting on a Pi must see the same pixels for the same file, so there
is one function, :func:`read_image`, and everything that opens an image file calls it.

- 8-bit PNG, JPEG and the other formats PIL reads: grayscale stays (H, W); colour becomes RGB.
- 16-bit grayscale PNG or TIFF: scaled from the full 16-bit range, ``round(v * 255 / 65535)``.
  The file declares no window (unlike DICOM), so the toolkit does not invent one from each image's
  own minimum and maximum: that would give the same anatomy different pixels in different files.
- DICOM: ``runtime.dicom`` (modality and VOI transforms, MONOCHROME1 inverted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom import Window, is_dicom, read_dicom
from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")  # what PIL reads here
PIL_TO_RGB = {"RGBA", "P", "LA", "CMYK", "YCbCr", "1"}  # 8-bit modes PIL converts to RGB without loss of meaning
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # how PIL opens 16-bit grayscale files
SIXTEEN_BIT_MAX = 65535
FILE_WINDOW = Window()  # a DICOM file's own window (frozen, so one instance serves every call)


def read_image(path: str | Path, window: Window = FILE_WINDOW) -> np.ndarray:
    """An image file as an (H, W) or (H, W, 3) uint8 array (see the module docstring for each format)."""
    path = Path(path)
    if is_dicom(path):
        return read_dicom(path, window)
    with _opened(path) as img:
        img.load()
        if img.mode in PIL_TO_RGB:
            img = img.convert("RGB")
        if img.mode in SIXTEEN_BIT_MODES:
            return _sixteen_bit(path, np.asarray(img))
        if img.mode not in ("L", "RGB"):
            raise DataError(f"{path}: image mode {img.mode} (float or 32-bit); expected an 8- or 16-bit grayscale "
                            "or an RGB image")
        return np.asarray(img)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``path`` opened by PIL; a missing or unreadable file (here or while decoding in the block) is a :class:`DataError`."""
    try:
        with Image.open(path) as img:
            yield img
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:  # ValueError: some truncated files fail in numpy
        raise DataError(f"{path}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _sixteen_bit(path: Path, values: np.ndarray) -> np.ndarray:
    if values.size and (int(values.min()) < 0 or int(values.max()) > SIXTEEN_BIT_MAX):
        raise DataError(f"{path}: 32-bit integer pixels span [{int(values.min())}, {int(values.max())}]; expected a 16-bit "
                        f"image (0..{SIXTEEN_BIT_MAX})")
    return np.rint(values.astype(np.float64) * (255.0 / SIXTEEN_BIT_MAX)).astype(np.uint8)


def header_channels(path: str | Path) -> int:
    """1 or 3: the channels :func:`read_image` will return for ``path``, from its header alone (no decoding)."""
    path = Path(path)
    if is_dicom(path):
        return 1  # runtime.dicom reads monochrome radiographs only, and refuses the rest when decoding
    with _opened(path) as img:
        mode = img.mode
    return 1 if mode == "L" or mode in SIXTEEN_BIT_MODES else 3
