"""The calibration sample: which training images set the int8 ranges, drawn once for every format.

Quantization ranges come from the activations these images produce, so they must look like
what the model will see: a seeded, class-balanced random draw from the training split (the
model was trained balanced), passed through exactly the model's preprocessing. The bundled
arrays are sorted by label, so "the first N" would calibrate on one class only; that is why
the draw is random and stratified, and why its indices and a hash are recorded with the export.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.datasets import (
    Split,
    binary_labels,
    iter_pixel_batches,
    load_dataset,
    load_npy,
)
from runtime.errors import ConfigError, DataError
from runtime.images import PixelRange

_BATCH = 64


@dataclass(frozen=True)
class CalibrationSample:
    """Calibration pixels, float32 (N, S, S, 3) in [0, 255], the rows they were drawn from, and the record of the draw
    that travels inside every int8 artifact."""

    pixels: np.ndarray
    indices: np.ndarray  # rows of the split drawn from
    record: dict[str, Any]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def balanced_draw(labels01: np.ndarray | None, n_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices: ``size`` rows split as evenly as the classes allow, or uniform without labels."""
    rng = np.random.default_rng(seed)
    if labels01 is None:
        return np.sort(rng.choice(n_rows, size, replace=False))
    pools = [np.flatnonzero(labels01 == c) for c in (0, 1)]
    small = int(np.argmin([p.size for p in pools]))
    take = [0, 0]
    take[small] = min(pools[small].size, size // 2 + (size % 2 if small == 1 else 0))
    take[1 - small] = size - take[small]
    return np.sort(np.concatenate([rng.choice(pool, k, replace=False) for pool, k in zip(pools, take)]))


def _images_only(path: Path) -> Split:
    images = load_npy(path)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)) or images.shape[0] == 0:
        raise DataError(f"{path}: calibration images have shape {tuple(images.shape)}; expected (N,H,W), (N,H,W,1) or (N,H,W,3) with N >= 1")
    return Split("calibration", images, np.zeros(images.shape[0], dtype=np.int64), str(path))


def calibration_split(train: Split | None, calibration_data: str | None, positive_label: int) -> tuple[Split, np.ndarray | None]:
    """The split to draw from and its 0/1 labels (None when the images carry no labels)."""
    if calibration_data is None:
        if train is None:
            raise DataError("no training split to calibrate on; pass --calibration-data PATH")
        return train, binary_labels(train, positive_label)
    path = Path(calibration_data)
    if path.suffix == ".npy":
        if not path.is_file():
            raise DataError(f"{path}: no such file; expected a .npy of calibration images")
        return _images_only(path), None
    split = load_dataset(path).splits["train"]
    return split, binary_labels(split, positive_label)


def rows_holding(images: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows of ``images`` byte-identical to some row of ``among``.

    ``--calibration-data`` may name the training data itself, or a file cut from it: its draw
    indexes another array, so the training rows it calibrated on are found by content. Shape or
    dtype differences mean no shared row.
    """
    if images.shape[1:] != among.shape[1:] or images.dtype != among.dtype or not len(among):
        return np.zeros(0, dtype=np.int64)

    def digest(row: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()

    seen = {digest(row) for row in among}
    return np.asarray([i for i, row in enumerate(images) if digest(row) in seen], dtype=np.int64)


def draw_calibration(split: Split, labels01: np.ndarray | None, size: int, seed: int, image_size: int,
                     pixel_range: PixelRange | None) -> CalibrationSample:
    """Draw ``size`` images and preprocess them as the model expects."""
    if size > len(split):
        raise ConfigError(f"--calibration-size {size}: larger than the {len(split)} images in {split.source}")
    indices = balanced_draw(labels01, len(split), size, seed)
    pixels = np.concatenate(list(iter_pixel_batches(split, indices, _BATCH, image_size, pixel_range)))
    counts = None if labels01 is None else {"negative": int((labels01[indices] == 0).sum()), "positive": int((labels01[indices] == 1).sum())}
    record = {
        "source": split.source,
        "size": int(size),
        "seed": int(seed),
        "method": "seeded random draw, balanced across classes" if counts else "seeded random draw (unlabelled images)",
        "class_counts": counts,
        "indices": indices.tolist(),
        "indices_sha256": hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest(),
        "pixels_sha256": hashlib.sha256(np.ascontiguousarray(pixels, dtype="<f4").tobytes()).hexdigest(),
        "preprocessing": f"runtime.images.to_model_pixels(image_size={image_size}, pixel_range={pixel_range})",
    }
    return CalibrationSample(pixels, indices, record)
