"""Which images choose and which judge (``export.splits``): a repaired artifact is judged only on images its search
never saw; a plain export, which chose nothing, on all of them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.config import DriftLimits, OnnxExportConfig
from export.report import ImageUse, VerificationReport
from export.session import ExportSession
from export.splits import (
    CHOOSE_SPLIT,
    CHOOSING_SHARE,
    JUDGE_SPLIT,
    POOL_SPLIT,
    LabelledPixels,
    image_use,
    pools,
    split_pool,
)
from export.verify import verify_artifact
from runtime.datasets import binary_labels, load_dataset

POINT = {"youden": 0.5}


def test_the_pool_splits_by_class_with_its_own_seeded_stream():
    rows = np.arange(3, 403)  # the rows the calibration left
    labels = np.zeros(500, np.int64)
    labels[200:] = 1  # rows 3-199 negative (197), 200-402 positive (203)
    choose, judge = split_pool(rows, labels, 0.25, seed=0)
    assert np.intersect1d(choose, judge).size == 0 and np.array_equal(np.union1d(choose, judge), rows)
    assert ((labels[choose] == 0).sum(), (labels[choose] == 1).sum()) == (round(0.25 * 197), round(0.25 * 203))
    assert np.array_equal(choose, split_pool(rows, labels, 0.25, seed=0)[0])  # reproducible
    assert not np.array_equal(choose, split_pool(rows, labels, 0.25, seed=1)[0])
    assert np.all(np.diff(choose) > 0) and np.all(np.diff(judge) > 0)
    # a plain export keeps the pool whole; an empty pool (--agreement-images 0) adds no split
    assert list(pools(rows, labels, fallback=False, seed=0)) == [POOL_SPLIT]
    assert list(pools(rows, labels, fallback=True, seed=0)) == [CHOOSE_SPLIT, JUDGE_SPLIT]
    assert pools(rows[:0], labels, fallback=True, seed=0) == {}


def _split(name: str, n_per_class: int, lost: int, seed: int, rows: bool = False):
    """Every float decision right; the artifact loses ``lost`` positives (to the negative side of p = 0.5)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    reference = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.3, 3.0, y.size)
    candidate = reference + rng.normal(0, 0.01, y.size)
    candidate[np.flatnonzero(y == 1)[:lost]] = -0.2
    return LabelledPixels(name, np.zeros((0,)), y, np.arange(y.size) if rows else None), reference, candidate


def _verify(splits, repaired: bool) -> VerificationReport:
    data = [d for d, _, _ in splits]
    return verify_artifact({d.name: c for d, _, c in splits}, data, {d.name: r for d, r, _ in splits}, POINT,
                           DriftLimits(), image_use(data, repaired))


def test_a_repaired_artifact_is_judged_only_on_images_the_search_never_saw():
    # the search's images show a 0.1 sensitivity loss; test and the judging pool show none
    lossy_choosing = [_split("val", 135, 14, 0), _split(CHOOSE_SPLIT, 280, 28, 1, rows=True),
                      _split("test", 234, 0, 2), _split(JUDGE_SPLIT, 835, 0, 3, rows=True)]
    repaired = _verify(lossy_choosing, repaired=True)
    assert repaired.images.chose == ("val", CHOOSE_SPLIT) and repaired.images.judged == ("test", JUDGE_SPLIT)
    assert repaired.gate.splits == ("test", JUDGE_SPLIT) and repaired.gate.n == 2 * (234 + 835)
    assert repaired.passed  # what the search looked at does not count, in either direction
    assert set(repaired.splits) == {"val", CHOOSE_SPLIT, "test", JUDGE_SPLIT}  # every split is still reported
    # the same logits judged as a plain export pool the lossy images in, and are refused
    plain = _verify(lossy_choosing, repaired=False)
    assert plain.images.chose == () and plain.gate.n == 2 * (135 + 280 + 234 + 835) and not plain.passed
    # a loss on the held-out images refuses the repair, however clean the search's images were
    lossy_judging = [_split("val", 135, 0, 0), _split(CHOOSE_SPLIT, 280, 0, 1, rows=True),
                     _split("test", 234, 23, 2), _split(JUDGE_SPLIT, 835, 84, 3, rows=True)]
    refused = _verify(lossy_judging, repaired=True)
    assert not refused.passed and refused.failures[0].startswith(f"test+{JUDGE_SPLIT}/youden sensitivity loss up to")


def test_the_record_names_the_training_rows_of_each_side_and_round_trips():
    splits = [_split("val", 5, 0, 0), _split(CHOOSE_SPLIT, 3, 0, 1, rows=True), _split("test", 5, 0, 2),
              _split(JUDGE_SPLIT, 4, 0, 3, rows=True)]
    use = image_use([d for d, _, _ in splits], repaired=True)
    assert use.sizes == {"val": 10, CHOOSE_SPLIT: 6, "test": 10, JUDGE_SPLIT: 8}
    assert use.train_rows == {CHOOSE_SPLIT: tuple(range(6)), JUDGE_SPLIT: tuple(range(8))}
    assert ImageUse.from_dict(json.loads(json.dumps(use.to_dict()))) == use


@pytest.mark.parametrize("fallback", ["off", "auto"])
def test_the_session_splits_the_pool_only_for_the_fallback(fake_model, fallback):
    model, data = fake_model
    cfg = OnnxExportConfig(model=str(model), calibration_size=6, fallback=fallback)
    session = ExportSession.open(cfg, [cfg.int8_name], needs_calibration=True)
    assert session._pools is not None
    train = load_dataset(data).split("train")
    unused = sorted(set(range(len(train))) - set(session.calibration().record["indices"]))
    if fallback == "off":
        assert list(session._pools) == [POOL_SPLIT] and session._pools[POOL_SPLIT].tolist() == unused
        return
    choose, judge = session._pools[CHOOSE_SPLIT], session._pools[JUDGE_SPLIT]
    assert sorted(choose.tolist() + judge.tolist()) == unused and np.intersect1d(choose, judge).size == 0
    labels = binary_labels(train, 1)
    for cls in (0, 1):
        members = np.isin(unused, np.flatnonzero(labels == cls)).sum()
        assert (labels[choose] == cls).sum() == round(CHOOSING_SHARE * members)
