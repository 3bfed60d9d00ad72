"""The decoded-image store: every file of a folder or CSV source decoded once, at training size, on disk.

Decoding a 2,000 px JPEG or a 16-bit DICOM takes milliseconds to tens of milliseconds; an epoch
reads every training image, and the export's calibration and verification read them again. So a
source is decoded once (in parallel, with memory bounded by the worker count, never by the file
count) into one uint8 ``.npy`` that every later reader memory-maps.

The store is keyed by what decides its pixels: the sha256 of every file's content, the training
size and :data:`TRANSFORM`. The same files give the same key wherever they live and however they
are listed or split, so a second run (the export after training, another seed, a CSV over the same
files) reads the store instead of decoding. Rows are ordered by content hash and an identical file
listed twice is one row. A store is built in a temporary sibling directory and renamed into place,
so a killed run leaves no partial store.

Where: ``$INCEPTION_EDGE_DATA_CACHE``, else ``$XDG_CACHE_HOME/inception-edge/images``, else
``~/.cache/inception-edge/images``. Deleting it is always safe: it is rebuilt from the files.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import DataError, InceptionEdgeError, first_line
from .fileio import DIR_MODE, atomic_write_json, sha256_file
from .parity import file_to_training_pixels
from .reader import read_image

log = logging.getLogger("runtime")

# Bump when the file -> pixels path changes, so no store built by another transform is ever read.
TRANSFORM = "read_image (runtime.reader) -> file_to_training_pixels (runtime.parity): crop, area, bilinear; v1"
IMAGES_NAME, INDEX_NAME = "images.npy", "index.json"
_IN_FLIGHT_PER_WORKER = 4  # decoded images waiting to be written: bounds memory, keeps every worker busy
T = TypeVar("T")


def default_cache_root() -> Path:
    if os.environ.get("INCEPTION_EDGE_DATA_CACHE"):
        return Path(os.environ["INCEPTION_EDGE_DATA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "inception-edge" / "images"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class Progress:
    """A progress line at most once a second: done/total, rate and time left."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.started = self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 1.0 or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d files (%.0f/s, %.0f s left)", self.what, self.done, self.total, rate, eta)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def ordered_map(fn: Callable[[Any], T], items: Iterable[Any], workers: int) -> Iterator[T]:
    """``map(fn, items)`` on ``workers`` threads, in order, with at most a few results waiting at once.

    Threads suffice: PIL's decoders, its resampling and hashlib release the GIL.
    """
    pending: collections.deque[Future[T]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@dataclass(frozen=True)
class Hashed:
    """One file's content hash, or why it could not be read."""

    path: str
    sha256: str | None
    error: str | None


def hash_files(paths: Sequence[str], workers: int) -> list[Hashed]:
    def one(path: str) -> Hashed:
        try:
            if os.path.getsize(path) == 0:
                return Hashed(path, None, f"{path}: file is empty")
            return Hashed(path, sha256_file(path), None)
        except OSError as exc:
            return Hashed(path, None, f"{path}: cannot be read ({exc.strerror or type(exc).__name__})")

    progress = Progress("hashing", len(paths))
    out = []
    for result in ordered_map(one, paths, workers):
        out.append(result)
        progress.step()
    return out


@dataclass(frozen=True)
class ImageStore:
    """A built store: ``images[row]`` for the file whose sha256 is ``hashes[row]``; unreadable rows hold zeros."""

    directory: Path
    images: np.ndarray  # memory-mapped, read-only
    hashes: tuple[str, ...]
    unreadable: dict[str, str]  # sha256 -> why the file could not be decoded
    seconds: float  # decoding time when built by this call, 0.0 when found
    rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", {sha: i for i, sha in enumerate(self.hashes)})


def store_key(hashes: Iterable[str], size: int, channels: int) -> str:
    text = json.dumps({"transform": TRANSFORM, "size": size, "channels": channels, "files": sorted(set(hashes))})
    return hashlib.sha256(text.encode()).hexdigest()


def open_or_build(files: dict[str, str], size: int, channels: int, root: Path | None = None,
                  workers: int | None = None) -> ImageStore:
    """The store for ``files`` (sha256 -> one path holding that content), built unless it exists."""
    root = root or default_cache_root()
    key = store_key(files, size, channels)
    directory = root / key[:32]
    if (directory / INDEX_NAME).is_file():
        found = _open(directory)
        log.info("decoded images: %d files from the store %s (built before)", len(found.hashes), directory)
        return found
    return _build(files, size, channels, directory, workers or default_workers())


def _open(directory: Path) -> ImageStore:
    try:
        index = json.loads((directory / INDEX_NAME).read_text(encoding="utf-8"))
        images = np.load(directory / IMAGES_NAME, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{directory}: a damaged image store ({first_line(exc)}); delete that folder and run again") from None
    return ImageStore(directory, images, tuple(index["hashes"]), dict(index["unreadable"]), 0.0)


def _build(files: dict[str, str], size: int, channels: int, directory: Path, workers: int) -> ImageStore:
    hashes = sorted(files)
    shape = (len(hashes), size, size) + ((3,) if channels == 3 else ())
    directory.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    temp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    unreadable: dict[str, str] = {}
    progress = Progress("decoding", len(hashes))

    def decode(sha: str) -> np.ndarray | str:
        try:
            return _as_channels(file_to_training_pixels(read_image(files[sha]), size), channels)
        except InceptionEdgeError as exc:
            return first_line(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file is listed with the others, not a traceback mid-ingest
            return f"{files[sha]}: unexpected {type(exc).__name__} while decoding"

    try:
        blank = np.zeros(shape[1:], dtype=np.uint8)
        with open(temp / IMAGES_NAME, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
            for sha, result in zip(hashes, ordered_map(decode, hashes, workers)):
                if isinstance(result, str):
                    unreadable[sha] = result
                    result = blank
                handle.write(np.ascontiguousarray(result).tobytes())
                progress.step()
        atomic_write_json(temp / INDEX_NAME, {"transform": TRANSFORM, "size": size, "channels": channels,
                                              "hashes": hashes, "unreadable": unreadable})
        os.chmod(temp, DIR_MODE)
        try:
            os.rename(temp, directory)
        except OSError:  # another run published the same store first: same key, same pixels
            shutil.rmtree(temp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.info("decoded %d files in %.1f s (%.0f/s) into %s", len(hashes), progress.seconds,
             len(hashes) / max(progress.seconds, 1e-9), directory)
    return replace(_open(directory), seconds=progress.seconds)


def _as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grayscale files in a colour store are replicated to RGB, as ``runtime.images.to_model_pixels`` does."""
    if channels == 3 and image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if channels == 1 and image.ndim == 3:  # a header said grayscale, the pixels came out colour: never averaged silently
        raise DataError("decoded as colour though its header says grayscale")
    return image


class StoreRows:
    """Some rows of a store, read like an array: what a :class:`runtime.datasets.Split` holds for a file source.

    Indexing reads only the rows asked for from the memory-mapped store, so a split of 20,000
    full-resolution files costs no memory until a batch is read.
    """

    def __init__(self, store: np.ndarray, rows: np.ndarray) -> None:
        self._store, self._rows = store, np.asarray(rows, dtype=np.int64)
        self.dtype = store.dtype
        self.shape = (int(self._rows.size),) + tuple(store.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):  # rows first, then the rest of the index applies to what they gave
            picked = self[key[0]]
            return picked[key[1:]] if np.ndim(self._rows[key[0]]) == 0 else picked[(slice(None), *key[1:])]
        picked = self._rows[key]
        if np.ndim(picked) == 0:
            return np.asarray(self._store[int(picked)])
        order = np.argsort(picked, kind="stable")  # sorted reads are sequential on disk
        out = np.empty((picked.size,) + self.shape[1:], dtype=self.dtype)
        out[order] = self._store[picked[order]]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), 256):
            yield from self[start:start + 256]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
