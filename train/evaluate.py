"""Evaluation done right: sigmoid probabilities, thresholds chosen on validation, metrics on test.

The notebook rounded logits (a threshold of logit 0.5, i.e. p = 0.62), counted errors as hits
and printed one minus accuracy. Here every number comes from the exported SavedModel's own
outputs, so what the model card says is what the artifact does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from runtime.evaluation import split_summary
from runtime.metrics import OperatingPoint, sensitivity_point, specificity_point, youden_point


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


def split_metrics(y: np.ndarray, logits: np.ndarray, points: list[OperatingPoint],
                  prevalence: float | None = None) -> dict[str, Any]:
    """ROC AUC and every rate at every operating point, each with its 95% interval (:func:`runtime.evaluation.split_summary`,
    the same figures ``python -m runtime eval`` prints for an exported model)."""
    return split_summary(y, logits, {p.name: p.threshold for p in points}, prevalence)
