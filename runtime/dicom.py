"""DICOM radiographs as the 8-bit grayscale pixels the model was trained on.

An X-ray unit or a PACS export writes DICOM, whose pixel values mean nothing until the file's own
transforms are applied, in the order the standard fixes (PS3.3 C.11): the modality LUT (Rescale
Slope/Intercept, or a Modality LUT Sequence) turns stored values into modality units; a VOI
transform (a window, or a VOI LUT Sequence) picks the range a reader looks at; MONOCHROME1 files
then invert, since they store bright as low. What comes out is rounded to 0-255, the pixels of
the PNGs and arrays the toolkit trains on, so a DICOM and a PNG of the same pixels give the same
decision.

Patient data never leaves this module: errors name the file and technical attributes only
(photometric interpretation, transfer syntax, bit depth), never pydicom's own messages, which may
quote element values; pydicom's warnings and log records are silenced while a file is read.

pydicom is an optional dependency (``pip install 'inception-edge[dicom]'``), imported here only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendError, ConfigError, DataError

DICOM_SUFFIXES = (".dcm", ".dicom")
WINDOW_CHOICES = ("file", "stored", "minmax")  # or "CENTER,WIDTH"
_PREAMBLE = 128  # a DICOM Part 10 file: 128 bytes, then "DICM"
RADIOGRAPH_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")  # PS3.3 C.11.2.1.3


@dataclass(frozen=True)
class Window:
    """How stored values become 0-255.

    ``file``: the file's first window (Window Center/Width with its VOI LUT Function), else its VOI
    LUT Sequence, else the stored range. ``stored``: every value the stored bits can hold, through the
    modality LUT (the same mapping for every file of that bit depth). ``minmax``: this image's own
    lowest and highest value. ``center``/``width``: a window given by the user (modality units).
    """

    mode: str = "file"
    center: float | None = None
    width: float | None = None

    @classmethod
    def parse(cls, text: str) -> Window:
        text = str(text).strip()
        if text in WINDOW_CHOICES:
            return cls(text)
        parts = text.split(",")
        try:
            center, width = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"--dicom-window {text!r}: expected {', '.join(WINDOW_CHOICES)} or CENTER,WIDTH "
                              "such as 40,400") from None
        if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
            raise ConfigError(f"--dicom-window {text!r}: expected a finite CENTER and a WIDTH of 1 or more")
        return cls("manual", center, width)

    def __str__(self) -> str:
        return f"{self.center:g},{self.width:g}" if self.mode == "manual" else self.mode


def is_dicom(path: str | Path) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the DICOM Part 10 marker (PACS exports often have no suffix)."""
    if os.path.splitext(path)[1].lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(_PREAMBLE)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom warns and logs about odd element values, quoting them: none of that may reach a log."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise BackendError("reading DICOM needs pydicom: pip install 'inception-edge[dicom]' (or pip install pydicom)") from None
    return pydicom


def read_dicom(path: str | Path, window: Window | str = Window()) -> np.ndarray:
    """The radiograph in ``path`` as a 2-D uint8 array, transformed as described in the module docstring."""
    path = Path(path)
    window = Window.parse(window) if isinstance(window, str) else window
    pydicom = _pydicom()
    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(path)
        except FileNotFoundError:
            raise DataError(f"{path}: no such DICOM file") from None
        except pydicom.errors.InvalidDicomError:
            raise DataError(f"{path}: not a DICOM file (no 'DICM' marker at byte 128); expected a DICOM Part 10 file") from None
        except Exception as exc:  # pydicom's messages may quote element values: name the kind of failure only
            raise DataError(f"{path}: unreadable DICOM file ({type(exc).__name__})") from None
        photometric = _check_radiograph(path, ds)
        stored = _decode(path, ds, pydicom)
        values = _modality(path, ds, stored, pydicom)
        pixels = _voi(path, ds, values, window, pydicom)
    if photometric == "MONOCHROME1":  # stores bright as low: inverted after the VOI transform (PS3.3 C.7.6.3.1.2)
        pixels = 255.0 - pixels
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _check_radiograph(path: Path, ds: Any) -> str:
    """The photometric interpretation, once the file is known to hold one grayscale frame."""
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file without pixel data (a DICOMDIR or a report?); expected an image")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in RADIOGRAPH_PHOTOMETRIC:
        raise DataError(f"{path}: photometric interpretation {photometric or 'missing'}; expected "
                        f"{' or '.join(RADIOGRAPH_PHOTOMETRIC)} (a grayscale radiograph)")
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1:
        raise DataError(f"{path}: {samples} samples per pixel; expected 1 (a grayscale radiograph)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(f"{path}: {frames} frames; expected a single-frame image (split the series into one file per frame)")
    return photometric


def _decode(path: Path, ds: Any, pydicom: Any) -> np.ndarray:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        arr = ds.pixel_array
    except Exception as exc:
        name = f"{syntax.name} ({syntax})" if syntax is not None else "an unknown transfer syntax"
        if syntax is not None and syntax.is_compressed:
            try:
                decoder = pydicom.pixels.get_decoder(syntax)
            except NotImplementedError:
                raise DataError(f"{path}: pixel data compressed as {name}, which pydicom cannot decode") from None
            if not decoder.is_available:
                options = "; or ".join(decoder.missing_dependencies)
                raise BackendError(f"{path}: pixel data compressed as {name} and no decoder for it is installed; "
                                   f"install one: {options}") from None
        raise DataError(f"{path}: pixel data of {name} could not be decoded ({type(exc).__name__})") from None
    if arr.ndim != 2:
        raise DataError(f"{path}: pixel array of shape {tuple(arr.shape)}; expected one 2-D grayscale frame")
    return arr


def _modality(path: Path, ds: Any, stored: np.ndarray, pydicom: Any) -> np.ndarray:
    """Stored values in modality units: Rescale Slope/Intercept or the Modality LUT Sequence (float64)."""
    try:
        values = pydicom.pixels.apply_modality_lut(stored, ds)
    except Exception as exc:
        raise DataError(f"{path}: invalid modality LUT or rescale ({type(exc).__name__})") from None
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: rescaled pixel values are not finite; expected a finite Rescale Slope and Intercept")
    return values


def stored_range(ds: Any, pydicom: Any | None = None) -> tuple[float, float]:
    """The lowest and highest value the stored bits can hold, through the modality LUT."""
    pydicom = pydicom or _pydicom()
    bits = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    ends = np.asarray(pydicom.pixels.apply_modality_lut(np.array([low, high], dtype=np.int64), ds), dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _voi(path: Path, ds: Any, values: np.ndarray, window: Window, pydicom: Any) -> np.ndarray:
    """Modality values to floats in [0, 255] (before MONOCHROME1 inversion and rounding)."""
    if window.mode == "manual":
        return window_linear(values, window.center, window.width, "LINEAR")  # type: ignore[arg-type]
    if window.mode == "file":
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is not None and width is not None:
            c, w = _first(center), _first(width)
            function = str(ds.get("VOILUTFunction", "LINEAR")).strip() or "LINEAR"
            if function not in VOI_FUNCTIONS:
                raise DataError(f"{path}: VOI LUT function {function}; expected one of {', '.join(VOI_FUNCTIONS)} "
                                "(or choose --dicom-window stored)")
            if not (np.isfinite(c) and np.isfinite(w) and w > 0) or (function == "LINEAR" and w < 1):
                raise DataError(f"{path}: window center {c:g} / width {w:g}; expected a finite center and a positive width "
                                "(or choose --dicom-window stored)")
            return window_linear(values, c, w, function) if function != "SIGMOID" else window_sigmoid(values, c, w)
        if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
            return _voi_lut_sequence(path, ds, values)
    low, high = stored_range(ds, pydicom) if window.mode in ("file", "stored") else (float(values.min()), float(values.max()))
    if high <= low:
        return np.zeros_like(values)
    return (np.clip(values, low, high) - low) * (255.0 / (high - low))


def _first(value: Any) -> float:
    """Window Center/Width may hold several values (alternative windows): the first is the file's default."""
    try:
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return float("nan")


def window_linear(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 to an output range of 0-255. ``LINEAR`` is the standard's legacy
    function (it centres on ``center - 0.5`` and spans ``width - 1``); ``LINEAR_EXACT`` the exact one."""
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0) * 255.0
    if function != "LINEAR":
        raise ConfigError(f"VOI LUT function {function!r}; expected LINEAR, LINEAR_EXACT or SIGMOID")
    if width == 1:
        return np.where(x <= center - 0.5, 0.0, 255.0)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) * 255.0


def window_sigmoid(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.1 (VOI LUT Function SIGMOID) to an output range of 0-255."""
    return 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))


def _voi_lut_sequence(path: Path, ds: Any, values: np.ndarray) -> np.ndarray:
    """The first VOI LUT: stored value minus the first mapped value indexes the table; the table's bit depth is full scale."""
    item = ds.VOILUTSequence[0]
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        data = np.asarray(item.LUTData, dtype=np.float64).reshape(-1)
    except Exception as exc:
        raise DataError(f"{path}: invalid VOI LUT Sequence ({type(exc).__name__})") from None
    entries = entries or 65536  # the standard's encoding of 2^16 entries
    if data.size < entries or not 8 <= bits <= 16:
        raise DataError(f"{path}: VOI LUT of {data.size} values, descriptor says {entries} entries of {bits} bits")
    index = np.clip(np.rint(values) - first, 0, entries - 1).astype(np.int64)
    return data[index] * (255.0 / ((1 << bits) - 1))
