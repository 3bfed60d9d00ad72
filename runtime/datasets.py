"""Loading labelled images: a MedMNIST-style ``.npz``, a directory of ``.npy`` files, or image files.

Image files (a folder per class, or a CSV manifest) go through ``runtime.file_sources``, which
decodes them once into a memory-mapped store; from then on every stage reads them as arrays.

numpy only, shared by every stage (training, export calibration, on-device evaluation).
``.npy`` files are memory-mapped, so only the rows a batch needs are ever read; ``.npz``
members are compressed zip entries that numpy cannot map, so they load whole (fine for the
MedMNIST-sized data they usually hold; use a directory of ``.npy`` for data larger than RAM).
Nothing here unpickles: ``allow_pickle=False`` always, so an object array is refused.
A bundled dataset's name (``runtime.bundled``, e.g. ``"pneumoniamnist"``) stands for its shipped file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundled import BUNDLED, bundled_path, is_bundled_name
from .errors import ConfigError, DataError, first_line
from .file_sources import (
    SPLITS,
    FileSourceOptions,
    FileSourceReport,
    is_file_source,
    read_file_source,
)
from .images import PixelRange, check_pixels, to_model_pixels

_NPY_NAMES = {"train": ("Xtrain.npy", "Ytrain.npy"), "val": ("Xval.npy", "Yval.npy"), "test": ("Xtest.npy", "Ytest.npy")}
_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)


@dataclass(frozen=True)
class Split:
    """One split as stored: raw images (possibly memory-mapped) and 1-D raw labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    source: str  # where it came from, for error messages and the model card

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    path: Path
    splits: dict[str, Split]
    files: tuple[Path, ...] = field(default=())
    bundled: str | None = None  # the bundled dataset's name, so a model card can name data that exists on any install
    from_files: FileSourceReport | None = None  # a folder or CSV source: its classes, files and splits

    def split(self, name: str) -> Split | None:
        return self.splits.get(name)


def load_npy(path: Path) -> np.ndarray:
    """Memory-map one numeric .npy file; anything else (empty, corrupt, pickled) is a :class:`DataError`."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a .npy array")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except _LOAD_ERRORS as exc:
        raise DataError(f"{path}: not a readable numeric .npy array ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    if "pickle" in text or "Object arrays" in text or "Python objects" in text:
        return "it holds Python objects, which are never unpickled; expected a numeric array"
    return text


def _from_npz(path: Path) -> dict[str, Split]:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected a .npz archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_reason(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array; expected a .npz archive with train_images and train_labels")
    with archive:
        keys = set(archive.files)
        splits: dict[str, Split] = {}
        for name in SPLITS:
            ik, lk = f"{name}_images", f"{name}_labels"
            if ik not in keys and lk not in keys:
                continue
            if ik not in keys or lk not in keys:
                missing = ik if ik not in keys else lk
                raise DataError(f"{path}: has {lk if missing == ik else ik} but no {missing}; expected both")
            try:
                images, labels = archive[ik], archive[lk]
            except _LOAD_ERRORS as exc:
                raise DataError(f"{path}: cannot read {ik}/{lk} ({_reason(exc)})") from None
            splits[name] = _make_split(name, images, labels, f"{path}:{name}")
    if "train" not in splits:
        raise DataError(f"{path}: no train_images/train_labels; found keys {sorted(keys)}")
    return splits


def _from_dir(path: Path) -> tuple[dict[str, Split], tuple[Path, ...]]:
    splits: dict[str, Split] = {}
    files: list[Path] = []
    for name, (xn, yn) in _NPY_NAMES.items():
        xp, yp = path / xn, path / yn
        if not xp.exists() and not yp.exists():
            continue
        if not xp.exists() or not yp.exists():
            raise DataError(f"{path}: has {yn if not xp.exists() else xn} but no {xn if not xp.exists() else yn}; expected both")
        splits[name] = _make_split(name, load_npy(xp), load_npy(yp), f"{xp}")
        files += [xp, yp]
    if "train" not in splits:
        raise DataError(f"{path}: no Xtrain.npy/Ytrain.npy; expected a .npz file or a directory with Xtrain.npy and Ytrain.npy")
    return splits, tuple(files)


def _make_split(name: str, images: np.ndarray, labels: np.ndarray, source: str) -> Split:
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(f"{source}: images have shape {tuple(images.shape)}; expected (N,H,W), (N,H,W,1) or (N,H,W,3)")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{source}: images have dtype {images.dtype}; expected uint8 or float")
    if images.shape[0] == 0:
        raise DataError(f"{source}: no images (empty array); expected at least one")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{source}: labels have shape {tuple(labels.shape)}; expected (N,) or (N,1)")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating) or labels.dtype == np.bool_):
        raise DataError(f"{source}: labels have dtype {labels.dtype}; expected integers")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{source}: {images.shape[0]} images but {labels.shape[0]} labels; expected equal lengths")
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating) and (
            not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels))):
            raise DataError(f"{source}: labels are not whole numbers; expected integer class labels")
    return Split(name, images, labels.astype(np.int64), source)


def load_dataset(spec: str | Path, files: FileSourceOptions | None = None) -> Dataset:
    """Open a dataset (a path, or a bundled dataset's name) and check its structure.

    A folder of class folders or a CSV manifest needs ``files``: the training size and the classes
    (the trainer's options, or a trained model's). Pixels are checked by :func:`check_split_pixels`.
    """
    if is_bundled_name(spec):
        path = bundled_path(str(spec))
        return Dataset(path, _from_npz(path), (path,), bundled=str(spec))
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; expected a .npz file, a directory with Xtrain.npy and "
                        f"Ytrain.npy, a folder of image files, a .csv manifest, or a bundled dataset name "
                        f"({', '.join(sorted(BUNDLED))})")
    try:
        if is_file_source(path):
            return _from_files(path, files)
        if path.is_dir():
            splits, found = _from_dir(path)
            return Dataset(path, splits, found)
        if path.suffix != ".npz":
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected a .npz file, a directory of .npy files, a "
                            "folder of image files or a .csv manifest")
        return Dataset(path, _from_npz(path), (path,))
    except PermissionError as exc:
        raise DataError(f"{exc.filename or path}: cannot be read (permission denied)") from None


def _from_files(path: Path, files: FileSourceOptions | None) -> Dataset:
    if files is None:
        raise ConfigError(f"{path}: a folder or CSV of image files; this command reads arrays only (.npz, or a directory "
                          "with Xtrain.npy and Ytrain.npy)")
    splits, report = read_file_source(path, files)
    return Dataset(path, {name: Split(name, images, labels, f"{path}:{name}")  # type: ignore[arg-type]
                          for name, (images, labels) in splits.items()}, from_files=report)


def check_split_pixels(split: Split, pixel_range: PixelRange | None) -> None:
    check_pixels(split.images, pixel_range, split.source)


def binary_labels(split: Split, positive_label: int) -> np.ndarray:
    """Map the user's labels to 0/1 with ``positive_label`` as 1; refuse anything not binary."""
    values = np.unique(split.labels)
    if values.size > 2:
        raise DataError(f"{split.source}: labels take {values.size} values {values[:8].tolist()}; expected a binary task (two labels)")
    if positive_label not in values and values.size == 2:
        raise DataError(f"{split.source}: positive label {positive_label} not among the labels {values.tolist()}")
    if values.size < 2:
        raise DataError(f"{split.source}: only one class present (label {values.tolist()[0]}); expected both classes")
    return (split.labels == positive_label).astype(np.int64)


def negative_label(split: Split, positive_label: int) -> int:
    values = np.unique(split.labels)
    return int(values[values != positive_label][0])


def iter_pixel_batches(split: Split, indices: Sequence[int] | np.ndarray, batch_size: int,
                       image_size: int | None, pixel_range: PixelRange | None, keep_uint8: bool = False) -> Iterator[np.ndarray]:
    """Yield float32 (B, S, S, 3) batches of ``split.images[indices]``, in the given order.

    Each batch reads only its own rows from a memory-mapped array, so memory stays flat.
    """
    idx = np.asarray(indices, dtype=np.int64)
    for start in range(0, idx.size, batch_size):
        rows = idx[start:start + batch_size]
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on disk
        raw = np.empty((rows.size,) + split.images.shape[1:], dtype=split.images.dtype)
        raw[order] = split.images[rows[order]]
        yield to_model_pixels(raw, image_size, pixel_range, split.source, keep_uint8)
