import numpy as np
import pytest

from runtime.errors import DataError
from train.balance import class_counts, stratified_split, undersample


def _sorted_labels(n_neg=300, n_pos=700):
    return np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]  # sorted by label, like the bundled arrays


def test_undersampling_balances_and_keeps_every_minority_row():
    y = _sorted_labels()
    idx = undersample(y, seed=3)
    assert class_counts(y[idx]) == {"negative": 300, "positive": 300}
    assert set(np.flatnonzero(y == 0)) <= set(idx)
    assert np.all(np.diff(idx) > 0)
    # never "the first N rows": the chosen majority rows spread over the whole class
    chosen_pos = idx[y[idx] == 1]
    assert chosen_pos.min() < 400 and chosen_pos.max() > 900


def test_undersampling_is_deterministic_per_seed():
    y = _sorted_labels()
    np.testing.assert_array_equal(undersample(y, 7), undersample(y, 7))
    assert not np.array_equal(undersample(y, 7), undersample(y, 8))


def test_minority_can_be_the_positive_class():
    y = 1 - _sorted_labels()
    idx = undersample(y, 0)
    assert class_counts(y[idx]) == {"negative": 300, "positive": 300}


def test_subclass_proportional_undersampling_keeps_subclass_shares():
    y = _sorted_labels(300, 700)
    sub = np.zeros(1000, int)
    sub[300:300 + 490] = 1  # bacterial: 70% of the positives
    sub[300 + 490:] = 2  # viral: 30%
    idx = undersample(y, 0, subclasses=sub)
    kept = sub[idx][y[idx] == 1]
    assert kept.size == 300
    assert np.bincount(kept, minlength=3)[1:].tolist() == [210, 90]


def test_stratified_split_holds_out_each_class_proportionally():
    y = _sorted_labels(200, 400)
    train, val = stratified_split(y, 0.1, seed=1)
    assert class_counts(y[val]) == {"negative": 20, "positive": 40}
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == 600
    np.testing.assert_array_equal(val, stratified_split(y, 0.1, seed=1)[1])


def test_stratified_split_refuses_a_class_too_small_to_split():
    with pytest.raises(DataError, match="class 1 has 3 training rows"):
        stratified_split(np.r_[np.zeros(50, int), np.ones(3, int)], 0.1, 0)
