"""Binary classification metrics and operating points, in numpy only.

The runtime computes these on the device and the trainer on its host; one implementation
keeps the two in agreement. Conventions: label 1 is the positive class; a sample is called
positive when its score is >= the threshold; scores may be logits or probabilities (every
function here is invariant to a monotone transform of the scores, thresholds aside).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import DataError


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float64."""
    x = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def logit(probability: float) -> float:
    """Inverse of :func:`sigmoid` for one threshold; 0 and 1 map to -inf and +inf."""
    p = float(probability)
    if p <= 0.0:
        return float("-inf")
    if p >= 1.0:
        return float("inf")
    return float(np.log(p) - np.log1p(-p))


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise DataError("no samples to evaluate; expected at least one of each class")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"labels must be 0/1 after mapping the positive class; found {np.unique(y)[:5].tolist()}")
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or inf; expected finite model outputs")
    return y.astype(np.int64), s


@dataclass(frozen=True)
class BinaryMetrics:
    """Counts and rates at one threshold. ``nan`` where a rate has no denominator."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float
    specificity: float
    accuracy: float
    balanced_accuracy: float
    ppv: float
    npv: float

    def to_dict(self) -> dict[str, float | int | None | list[list[int]]]:
        """JSON-ready: an undefined rate (no denominator) becomes ``None``, as JSON has no NaN."""
        out: dict[str, float | int | None | list[list[int]]] = {
            k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(self).items()}
        # rows: true negative / true positive; columns: predicted negative / positive
        out["confusion_matrix"] = [[self.tn, self.fp], [self.fn, self.tp]]
        return out


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


def binary_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> BinaryMetrics:
    """Sensitivity, specificity and friends for the decision ``score >= threshold``."""
    y, s = _check(y_true, y_score)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    sens = _ratio(tp, tp + fn)
    spec = _ratio(tn, tn + fp)
    return BinaryMetrics(
        threshold=float(threshold),
        tp=tp, fp=fp, tn=tn, fn=fn,
        sensitivity=sens,
        specificity=spec,
        accuracy=_ratio(tp + tn, y.size),
        balanced_accuracy=(sens + spec) / 2.0,
        ppv=_ratio(tp, tp + fp),
        npv=_ratio(tn, tn + fn),
    )


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, thresholds descending.

    Point k is the decision ``score >= thresholds[k]``; an extra first point at +inf gives
    (0, 0). Unlike scikit-learn, collinear points are kept: operating points need them all.
    """
    y, s = _check(y_true, y_score)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"ROC needs both classes; got {n_pos} positive and {n_neg} negative samples")
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random negative (ties count half)."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


@dataclass(frozen=True)
class OperatingPoint:
    """A named decision threshold, kept both as a logit and as a probability."""

    name: str
    threshold: float  # probability: positive when p >= threshold
    logit_threshold: float
    rule: str  # how it was chosen, e.g. "youden" or "sensitivity>=0.95"

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> OperatingPoint:
        return cls(name=str(raw["name"]), threshold=float(raw["threshold"]),  # type: ignore[arg-type]
                   logit_threshold=float(raw["logit_threshold"]), rule=str(raw.get("rule", "")))  # type: ignore[arg-type]

    @classmethod
    def from_logit(cls, name: str, logit_threshold: float, rule: str) -> OperatingPoint:
        return cls(name=name, threshold=float(sigmoid(np.array([logit_threshold]))[0]),
                   logit_threshold=float(logit_threshold), rule=rule)


def _margin_threshold(thresholds: np.ndarray, k: int) -> float:
    """Midway between the cut score and the next lower score.

    The decisions on the selection set are those of ``score >= thresholds[k]``, but the boundary
    sits in the gap, so a small perturbation of the scores (int8 quantization) flips as few
    decisions as possible.
    """
    if k == 0:  # nothing called positive: stay above the highest score
        return float(thresholds[1] + 1.0)
    if k + 1 < thresholds.size:
        return float((thresholds[k] + thresholds[k + 1]) / 2.0)
    return float(thresholds[k] - 1.0)


def youden_point(y_true: np.ndarray, logits: np.ndarray, name: str = "youden") -> OperatingPoint:
    """The threshold that maximizes sensitivity + specificity - 1 (Youden's J).

    Ties are broken towards the point whose sensitivity and specificity are closest to each
    other, so that an arbitrary choice among equal J does not favour one class.
    """
    fpr, tpr, thr = roc_curve(y_true, logits)
    j = tpr - fpr
    candidates = np.nonzero(np.isclose(j, j.max(), rtol=0.0, atol=1e-12))[0]
    candidates = candidates[candidates > 0]  # +inf calls nothing positive
    k = int(candidates[np.argmin(np.abs(tpr[candidates] - (1.0 - fpr[candidates])))])
    return OperatingPoint.from_logit(name, _margin_threshold(thr, k), "youden")


def sensitivity_point(y_true: np.ndarray, logits: np.ndarray, target: float, name: str = "high_sensitivity") -> OperatingPoint:
    """The highest threshold whose sensitivity reaches ``target`` (best specificity at that sensitivity)."""
    _fpr, tpr, thr = roc_curve(y_true, logits)
    k = int(np.nonzero(tpr >= target - 1e-12)[0][0])
    return OperatingPoint.from_logit(name, _margin_threshold(thr, k), f"sensitivity>={target:g}")


def specificity_point(y_true: np.ndarray, logits: np.ndarray, target: float, name: str = "high_specificity") -> OperatingPoint:
    """The lowest threshold whose specificity reaches ``target`` (best sensitivity at that specificity)."""
    fpr, _tpr, thr = roc_curve(y_true, logits)
    k = int(np.nonzero(1.0 - fpr >= target - 1e-12)[0][-1])
    return OperatingPoint.from_logit(name, _margin_threshold(thr, k), f"specificity>={target:g}")
