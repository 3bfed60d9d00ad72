"""One model on one labelled split, as a clinic reads it: every rate with its 95% interval.

A rate on 135 images moves by 0.0074 per image, so a bare "sensitivity 0.926" hides how little
it is known; every figure here comes with its interval and with what one image is worth. The
trainer's model card, ``python -m runtime eval`` and the benchmark report all call
:func:`split_summary`, so the three agree to the last digit. Intervals: Wilson for
sensitivity, specificity and accuracy; DeLong for the AUC; Mercaldo-Lau-Zhou logit intervals
for PPV and NPV at a stated prevalence (:mod:`runtime.stats`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConfigError
from .metrics import binary_metrics, sigmoid
from .stats import auc_interval, one_image, predictive_values, wilson


def check_prevalence(prevalence: float | None, what: str = "--prevalence") -> float | None:
    """``None`` (the split's own) or a number strictly between 0 and 1."""
    if prevalence is None:
        return None
    if not isinstance(prevalence, (int, float)) or not 0.0 < float(prevalence) < 1.0:
        raise ConfigError(f"{what} {prevalence!r}: expected the share of positives where the model is used, strictly "
                        "between 0 and 1 (e.g. 0.05), or nothing for the evaluated split's own")
    return float(prevalence)


def point_summary(y01: np.ndarray, probability: np.ndarray, threshold: float,
                  prevalence: float | None = None) -> dict[str, Any]:
    """Counts and rates at one threshold, with Wilson intervals and PPV/NPV at ``prevalence``."""
    m = binary_metrics(y01, probability, threshold)
    out: dict[str, Any] = m.to_dict()
    ppv, npv = predictive_values(m.tp, m.fn, m.tn, m.fp, prevalence)
    out["intervals"] = {"sensitivity": wilson(m.tp, m.tp + m.fn).to_dict(),
                        "specificity": wilson(m.tn, m.tn + m.fp).to_dict(),
                        "accuracy": wilson(m.tp + m.tn, int(y01.size)).to_dict()}
    out["at_prevalence"] = {"prevalence": prevalence if prevalence is not None else float(np.mean(y01)),
                            "stated": prevalence is not None, "ppv": ppv.to_dict(), "npv": npv.to_dict()}
    return out


def split_summary(y01: np.ndarray, logits: np.ndarray, thresholds: dict[str, float],
                  prevalence: float | None = None) -> dict[str, Any]:
    """AUC with its DeLong interval and every operating point (``name -> probability threshold``)."""
    y = np.asarray(y01).reshape(-1)
    prob = sigmoid(logits)
    n_pos = int(y.sum())
    auc = auc_interval(y, prob)
    out: dict[str, Any] = {
        "n": int(y.size), "positives": n_pos, "auc": auc.value, "auc_interval": auc.to_dict(),
        # how far one image moves each rate on this split: differences smaller than this are one image
        "one_image": {"sensitivity": one_image(n_pos), "specificity": one_image(int(y.size) - n_pos),
                      "accuracy": one_image(int(y.size))},
    }
    for name, threshold in thresholds.items():
        out[name] = point_summary(y, prob, threshold, prevalence)
    return out


def format_rate(row: dict[str, Any], metric: str) -> str:
    """``0.9259 [0.8693, 0.9593]``: a rate of :func:`point_summary` with its interval."""
    iv = row["intervals"][metric]
    return f"{row[metric]:.4f} [{iv['low']:.4f}, {iv['high']:.4f}]"
