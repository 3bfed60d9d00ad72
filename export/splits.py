"""Which labelled images verify an export, and which of them may choose and which may judge.

Every export is compared with the float model on val, test and the training images the
calibration did not draw (the *pool*: thousands of labelled images the export never fitted
anything to). A plain export chooses nothing on them, so all of them judge it, pooled.

``--fallback auto`` does choose: it keeps adding float layers until its gate passes on the
images it looks at. Judging the result on those same images would let the search stop on a
lucky draw and then count that luck again in the verdict. So under ``--fallback auto`` the
pool is split in two, seeded and stratified by class: the search looks at val and
:data:`CHOOSING_SHARE` of the pool, and a repaired artifact is judged only on test and the
rest of the pool, images the search never saw. An artifact the search left as plain int8 was
shaped by no image and is judged on everything, as a plain export is: the search's look could
only add a reason to refuse it, never one to accept it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.datasets import Split, binary_labels, iter_pixel_batches
from runtime.images import PixelRange

from .report import ImageUse

VERIFY_SPLITS = ("val", "test")  # the dataset's held-out splits
POOL_SPLIT = "train_unused"  # a plain export's pool: every training image the calibration did not draw
CHOOSE_SPLIT, JUDGE_SPLIT = "train_unused_choose", "train_unused_judge"  # the pool's halves under --fallback auto
CHOOSING_SPLITS = ("val", CHOOSE_SPLIT)  # what the fallback search looks at
JUDGING_SPLITS = ("test", JUDGE_SPLIT)  # what judges a repaired artifact
# A quarter of the pool for the search, three quarters (with test) to judge: on the 75x75 hard case the repaired
# artifacts passed on the judging images for 10 of 10 split seeds at a quarter and a third, and at a half with no
# room (worst shortfall -0.0001); the search's observed-change rule saw the repair at every share (docs/statistics.md).
CHOOSING_SHARE = 0.25


@dataclass(frozen=True)
class LabelledPixels:
    """One split preprocessed once, shared by the float model and every artifact."""

    name: str
    pixels: np.ndarray  # (N, S, S, 3), 0-255: uint8 when the source is uint8 (4x less memory at 299x299), else float32
    labels01: np.ndarray
    rows: np.ndarray | None = None  # the training rows of a pool split, for the record


def pool_rows(n_train: int, calibration_rows: np.ndarray | None, size: int | None, seed: int) -> np.ndarray:
    """Training rows not drawn for calibration: all of them (``size`` None) or a seeded draw of ``size``."""
    rows = np.setdiff1d(np.arange(n_train), np.asarray([] if calibration_rows is None else calibration_rows, dtype=np.int64))
    if size is not None and size < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))
    return rows


def split_pool(rows: np.ndarray, labels01: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(choosing rows, judging rows): ``share`` of each class of ``rows`` at random, the rest; both sorted."""
    rng = np.random.default_rng([seed, 1])  # its own stream: the calibration draw used ``seed`` alone
    choose = []
    for cls in (0, 1):
        members = rows[labels01[rows] == cls]
        choose.append(rng.choice(members, round(share * members.size), replace=False))
    chosen = np.sort(np.concatenate(choose)).astype(np.int64)
    return chosen, np.setdiff1d(rows, chosen)


def pools(rows: np.ndarray, train_labels01: np.ndarray, fallback: bool, seed: int) -> dict[str, np.ndarray]:
    """The pool as the export uses it: whole for a plain export, in two for ``--fallback auto``."""
    if not rows.size:
        return {}
    if not fallback:
        return {POOL_SPLIT: rows}
    choose, judge = split_pool(rows, train_labels01, CHOOSING_SHARE, seed)
    return {CHOOSE_SPLIT: choose, JUDGE_SPLIT: judge}


def verification_splits(splits: dict[str, Split], positive_label: int, image_size: int,
                        pixel_range: PixelRange | None, train_pools: dict[str, np.ndarray] | None = None
                        ) -> list[LabelledPixels]:
    """val and test, then each pool (training row indices) under its name."""
    wanted: list[tuple[str, Split | None, np.ndarray | None]] = [(name, splits.get(name), None) for name in VERIFY_SPLITS]
    wanted += [(name, splits.get("train"), rows) for name, rows in (train_pools or {}).items() if rows.size]
    out = []
    for name, split, rows in wanted:
        if split is None:
            continue
        chosen = np.arange(len(split)) if rows is None else rows
        pixels = np.concatenate(list(iter_pixel_batches(split, chosen, 64, image_size, pixel_range, keep_uint8=True)))
        out.append(LabelledPixels(name, pixels, binary_labels(split, positive_label)[chosen], rows))
    return out


def image_use(data: list[LabelledPixels], repaired: bool) -> ImageUse:
    """Which splits shaped the published artifact and which judge it (see the module docstring)."""
    names = tuple(d.name for d in data)
    chose = tuple(n for n in names if n in CHOOSING_SPLITS) if repaired else ()
    judged = tuple(n for n in names if n not in chose)
    return ImageUse(chose, judged, {d.name: int(d.labels01.size) for d in data},
                    {d.name: tuple(int(i) for i in d.rows) for d in data if d.rows is not None})
