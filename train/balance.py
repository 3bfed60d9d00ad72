"""Seeded class balancing and stratified splitting (numpy only).

The notebook "balanced" by keeping the first N rows, which on label-sorted arrays (the shared
ones are) keeps the wrong rows or a single class. Every choice here is random under a seed
and returns sorted row indices, so the same seed selects the same rows on any machine.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import DataError


def class_counts(labels01: np.ndarray) -> dict[str, int]:
    y = np.asarray(labels01)
    return {"negative": int(np.sum(y == 0)), "positive": int(np.sum(y == 1))}


def _allocate(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups proportionally to ``sizes`` (largest remainder, exact sum)."""
    quota = sizes * (total / sizes.sum())
    alloc = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[: total - int(alloc.sum())]] += 1
    return np.minimum(alloc, sizes)


def undersample(labels01: np.ndarray, seed: int, subclasses: np.ndarray | None = None) -> np.ndarray:
    """Indices of a balanced subset: every minority row, an equal random number of majority rows.

    With ``subclasses`` (one id per row), the majority class keeps each subclass in its
    original proportion instead of a plain random draw.
    """
    y = np.asarray(labels01)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    minority, majority = (pos, neg) if pos.size <= neg.size else (neg, pos)
    keep = minority.size
    if subclasses is None:
        chosen = rng.choice(majority, size=keep, replace=False)
    else:
        sub = np.asarray(subclasses)[majority]
        groups, inverse = np.unique(sub, return_inverse=True)
        alloc = _allocate(np.bincount(inverse), keep)
        chosen = np.concatenate([
            rng.choice(majority[inverse == g], size=int(alloc[g]), replace=False) for g in range(groups.size)
        ])
    return np.sort(np.concatenate([minority, chosen]))


def stratified_split(labels01: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices): ``fraction`` of each class goes to validation, at random."""
    y = np.asarray(labels01)
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        n_val = int(round(rows.size * fraction))
        if n_val < 1 or n_val >= rows.size:
            raise DataError(f"class {cls} has {rows.size} training rows, too few to hold out {fraction:.0%} for validation; provide a validation split")
        val_parts.append(rng.choice(rows, size=n_val, replace=False))
    val = np.sort(np.concatenate(val_parts))
    train = np.setdiff1d(np.arange(y.size), val, assume_unique=True)
    return train, val
