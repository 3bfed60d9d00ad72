"""One model on one labelled split, as a clinic reads it: every rate with its 95% interval.

A rate on 135 images moves by 0.0074 per image, so a bare "sensitivity 0.926" hides how little
it is known; every figure here comes with its interval and with what one image is worth. The
trainer's model card, ``python -m runtime eval`` and the benchmark report all call
:func:`split_summary`, so the three agree to the last digit. Intervals: Wilson for
sensitivity, specificity and accuracy; DeLong for the AUC; Mercaldo-Lau-Zhou logit intervals
for PPV and NPV at a stated prevalence (:mod:`runtime.stats`).

The results are frozen dataclasses read by attribute; ``to_dict``/``from_dict`` are their one
JSON form. A split's operating points sit under their own key (``operating_points``), so no
point name can overwrite a figure of the split; :meth:`SplitSummary.from_dict` still reads the
first schema, which put the points beside ``auc`` and ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .metrics import BinaryMetrics, binary_metrics, sigmoid
from .stats import Interval, auc_interval, one_image, predictive_values, wilson

RATES = ("sensitivity", "specificity", "accuracy")


def check_prevalence(prevalence: float | None, what: str = "--prevalence") -> float | None:
    """``None`` (the split's own) or a number strictly between 0 and 1."""
    if prevalence is None:
        return None
    if not isinstance(prevalence, (int, float)) or not 0.0 < float(prevalence) < 1.0:
        raise ConfigError(f"{what} {prevalence!r}: expected the share of positives where the model is used, strictly "
                        "between 0 and 1 (e.g. 0.05), or nothing for the evaluated split's own")
    return float(prevalence)


def _json_float(value: float) -> float | None:
    """JSON has no NaN: an undefined rate is written as null."""
    return None if math.isnan(value) else float(value)


def _read_float(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class OneImage:
    """How far one image moves each rate on a split: a smaller difference is one decision, not a finding."""

    sensitivity: float
    specificity: float
    accuracy: float

    @classmethod
    def of(cls, n: int, positives: int) -> OneImage:
        return cls(one_image(positives), one_image(n - positives), one_image(n))

    def to_dict(self) -> dict[str, float | None]:
        return {k: _json_float(getattr(self, k)) for k in RATES}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OneImage:
        return cls(*(_read_float(raw[k]) for k in RATES))


@dataclass(frozen=True)
class PredictiveValues:
    """PPV and NPV at a prevalence: ``stated`` by the user, or the split's own."""

    prevalence: float
    stated: bool
    ppv: Interval
    npv: Interval

    def to_dict(self) -> dict[str, Any]:
        return {"prevalence": self.prevalence, "stated": self.stated, "ppv": self.ppv.to_dict(), "npv": self.npv.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PredictiveValues:
        return cls(float(raw["prevalence"]), bool(raw["stated"]), Interval.from_dict(raw["ppv"]), Interval.from_dict(raw["npv"]))


_COUNTS = ("tp", "fp", "tn", "fn")
_POINT_RATES = ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "ppv", "npv")


@dataclass(frozen=True)
class PointSummary(BinaryMetrics):
    """The counts and rates at one threshold (:class:`runtime.metrics.BinaryMetrics`), each rate of :data:`RATES` with
    its Wilson interval, and PPV/NPV at a prevalence. A rate without a denominator (PPV when no image is called
    positive) is NaN, written as null."""

    intervals: dict[str, Interval]  # sensitivity, specificity, accuracy
    at_prevalence: PredictiveValues

    def interval(self, rate: str) -> Interval:
        return self.intervals[rate]

    def rate_text(self, rate: str) -> str:
        """``0.9259 [0.8693, 0.9593]``: a rate with its 95% interval."""
        iv = self.intervals[rate]
        return f"{getattr(self, rate):.4f} [{iv.low:.4f}, {iv.high:.4f}]"

    def to_dict(self) -> dict[str, Any]:
        return {**BinaryMetrics.to_dict(self), "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "at_prevalence": self.at_prevalence.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PointSummary:
        return cls(float(raw["threshold"]), *(int(raw[k]) for k in _COUNTS), *(_read_float(raw[k]) for k in _POINT_RATES),
                   intervals={k: Interval.from_dict(v) for k, v in raw["intervals"].items()},
                   at_prevalence=PredictiveValues.from_dict(raw["at_prevalence"]))


@dataclass(frozen=True)
class SplitSummary:
    """One model's figures on one split: AUC with its DeLong interval and every operating point."""

    n: int
    positives: int
    auc: float
    auc_interval: Interval
    one_image: OneImage
    points: dict[str, PointSummary]  # operating point name -> its figures, in the model card's order

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "positives": self.positives, "auc": _json_float(self.auc),
                "auc_interval": self.auc_interval.to_dict(), "one_image": self.one_image.to_dict(),
                "operating_points": {name: p.to_dict() for name, p in self.points.items()}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SplitSummary:
        """Either schema: points under ``operating_points``, or (the first one) beside the split's own keys."""
        points = raw.get("operating_points")
        if points is None:
            points = {k: v for k, v in raw.items() if isinstance(v, dict) and "threshold" in v}
        return cls(int(raw["n"]), int(raw["positives"]), _read_float(raw["auc"]), Interval.from_dict(raw["auc_interval"]),
                   OneImage.from_dict(raw["one_image"]), {name: PointSummary.from_dict(p) for name, p in points.items()})


def point_summary(y01: np.ndarray, probability: np.ndarray, threshold: float,
                  prevalence: float | None = None) -> PointSummary:
    """Counts and rates at one threshold, with Wilson intervals and PPV/NPV at ``prevalence``."""
    m = binary_metrics(y01, probability, threshold)
    ppv, npv = predictive_values(m.tp, m.fn, m.tn, m.fp, prevalence)
    intervals = {"sensitivity": wilson(m.tp, m.tp + m.fn), "specificity": wilson(m.tn, m.tn + m.fp),
                 "accuracy": wilson(m.tp + m.tn, int(y01.size))}
    at = PredictiveValues(prevalence if prevalence is not None else float(np.mean(y01)), prevalence is not None, ppv, npv)
    return PointSummary(m.threshold, m.tp, m.fp, m.tn, m.fn, m.sensitivity, m.specificity, m.accuracy, m.balanced_accuracy,
                        m.ppv, m.npv, intervals, at)


def split_summary(y01: np.ndarray, logits: np.ndarray, thresholds: dict[str, float],
                  prevalence: float | None = None) -> SplitSummary:
    """AUC with its DeLong interval and every operating point (``name -> probability threshold``)."""
    y = np.asarray(y01).reshape(-1)
    prob = sigmoid(logits)
    positives = int(y.sum())
    auc = auc_interval(y, prob)
    return SplitSummary(int(y.size), positives, auc.value, auc, OneImage.of(int(y.size), positives),
                        {name: point_summary(y, prob, t, prevalence) for name, t in thresholds.items()})


def predictive_value_text(row: PointSummary, which: str, digits: int = 4) -> str:
    """PPV or NPV with its interval, or why it is undefined: no image called positive (PPV) or negative (NPV).

    A model whose output is constant (an int8 export gone wrong) calls every image one way, so
    this must print, not fail.
    """
    value: Interval = getattr(row.at_prevalence, which)
    if row.tp + row.fn == 0 or row.tn + row.fp == 0:
        return f"undefined (the split has no {'positive' if row.tp + row.fn == 0 else 'negative'} images)"
    if math.isnan(value.value):
        return f"undefined (no image called {'positive' if which == 'ppv' else 'negative'})"
    return f"{value.value:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"
