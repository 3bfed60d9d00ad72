"""Evaluation done right: sigmoid probabilities, thresholds chosen on validation, metrics on test.

The notebook rounded logits (a threshold of logit 0.5, i.e. p = 0.62), counted errors as hits
and printed one minus accuracy. Here every number comes from the exported SavedModel's own
outputs, so what the model card says is what the artifact does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from runtime.metrics import OperatingPoint, binary_metrics, roc_auc, sensitivity_point, sigmoid, specificity_point, youden_point


def saved_model_logits(saved_model_dir: str, splits: dict[str, Iterable[np.ndarray]]) -> dict[str, np.ndarray]:
    """Logits of each split from the SavedModel's ``serve`` endpoint, batch by batch."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    return {name: np.concatenate([np.asarray(loaded.serve(tf.constant(b, dtype=tf.float32))).reshape(-1) for b in batches]
                                 ).astype(np.float64)
            for name, batches in splits.items()}


def choose_operating_points(y_val: np.ndarray, val_logits: np.ndarray, target_sensitivity: float,
                            target_specificity: float) -> list[OperatingPoint]:
    """Youden's J plus a high-sensitivity and a high-specificity point (Gulshan et al., JAMA 2016)."""
    return [
        youden_point(y_val, val_logits),
        sensitivity_point(y_val, val_logits, target_sensitivity),
        specificity_point(y_val, val_logits, target_specificity),
    ]


def split_metrics(y: np.ndarray, logits: np.ndarray, points: list[OperatingPoint]) -> dict[str, Any]:
    """ROC AUC plus the full set of rates at every operating point, on probabilities."""
    prob = sigmoid(logits)
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum()), "auc": roc_auc(y, prob)}
    for point in points:
        out[point.name] = binary_metrics(y, prob, point.threshold).to_dict()
    return out
