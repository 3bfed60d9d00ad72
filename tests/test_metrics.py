import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve as sk_roc_curve

from runtime.errors import DataError
from runtime.metrics import (binary_metrics, logit, roc_auc, roc_curve, sensitivity_point, sigmoid,
                             specificity_point, youden_point)


def _case(seed: int, n: int = 200, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)
    return y, s


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(seed, ties):
    y, s = _case(seed, ties=ties)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_roc_curve_contains_sklearn_points(seed):
    y, s = _case(seed, ties=True)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert np.all(np.diff(thr) < 0)


@pytest.mark.parametrize("seed", range(8))
def test_binary_metrics_match_confusion_matrix(seed):
    y, s = _case(seed)
    t = float(np.quantile(s, 0.4))
    m = binary_metrics(y, s, t)
    tn, fp, fn, tp = confusion_matrix(y, s >= t, labels=[0, 1]).ravel()
    assert (m.tp, m.fp, m.tn, m.fn) == (tp, fp, tn, fn)
    assert m.sensitivity == pytest.approx(tp / (tp + fn))
    assert m.specificity == pytest.approx(tn / (tn + fp))
    assert m.accuracy == pytest.approx((tp + tn) / y.size)
    assert m.balanced_accuracy == pytest.approx((m.sensitivity + m.specificity) / 2)
    assert m.to_dict()["confusion_matrix"] == [[tn, fp], [fn, tp]]


def test_sigmoid_is_stable_and_inverts_logit():
    x = np.array([-800.0, -30.0, -1.0, 0.0, 2.5, 800.0])
    p = sigmoid(x)
    assert np.isfinite(p).all() and p[0] == 0.0 and p[-1] == 1.0 and p[3] == 0.5
    for v in (-4.0, 0.3, 7.0):
        assert logit(float(sigmoid(np.array([v]))[0])) == pytest.approx(v)


@pytest.mark.parametrize("seed", range(10))
def test_youden_point_maximizes_j_with_margin(seed):
    y, s = _case(seed)
    point = youden_point(y, s)
    m = binary_metrics(y, s, point.logit_threshold)
    fpr, tpr, _ = roc_curve(y, s)
    assert m.sensitivity + m.specificity - 1 == pytest.approx((tpr - fpr).max())
    assert not np.any(s == point.logit_threshold)  # the boundary sits between two scores
    assert point.threshold == pytest.approx(float(sigmoid(np.array([point.logit_threshold]))[0]))


@pytest.mark.parametrize("seed", range(10))
def test_target_points_reach_their_targets_and_are_tightest(seed):
    y, s = _case(seed)
    hs = sensitivity_point(y, s, 0.9)
    m = binary_metrics(y, s, hs.logit_threshold)
    assert m.sensitivity >= 0.9
    # the next higher score as threshold would miss the target
    higher = np.sort(np.unique(s[s > hs.logit_threshold]))
    assert binary_metrics(y, s, higher[0] + 1e-9).sensitivity < 0.9
    sp = specificity_point(y, s, 0.9)
    m = binary_metrics(y, s, sp.logit_threshold)
    assert m.specificity >= 0.9
    lower = np.sort(np.unique(s[s < sp.logit_threshold]))
    assert binary_metrics(y, s, lower[-1]).specificity < 0.9


def test_metric_errors_are_typed():
    with pytest.raises(DataError, match="both classes"):
        roc_auc(np.ones(5, int), np.arange(5.0))
    with pytest.raises(DataError, match="NaN"):
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(DataError, match="0/1"):
        binary_metrics(np.array([0, 2]), np.array([0.1, 0.2]), 0.5)


def test_undefined_rates_serialize_as_null():
    m = binary_metrics(np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]), threshold=0.9)
    d = m.to_dict()
    assert d["ppv"] is None and d["sensitivity"] == 0.0 and d["specificity"] == 1.0
