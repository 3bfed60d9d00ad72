"""Evaluation done right: sigmoid probabilities, thresholds chosen on validation, metrics on test.

The notebook rounded logits (a threshold of logit 0.5, i.e. p = 0.62), counted errors as hits
and printed one minus accuracy. Here every number comes from the exported SavedModel's own
outputs, so what the model card says is what the artifact does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from runtime.evaluation import SplitSummary, split_summary
from runtime.metrics import OperatingPoint, sensitivity_point, specificity_point, youden_point


def load_saved_model(saved_model_dir: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The SavedModel's ``serve`` endpoint as a function from 0-255 pixels (N, S, S, 3) to float64 logits (N,).

    ``threads`` sets TensorFlow's intra-op pool, which only works before TensorFlow first runs:
    the benchmark's fresh worker processes pass it, a training process does not.
    """
    import tensorflow as tf

    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    loaded = tf.saved_model.load(saved_model_dir)

    def logits(pixels: np.ndarray) -> np.ndarray:
        # `loaded` stays referenced here: its variables die with it.
        return np.asarray(loaded.serve(tf.constant(pixels, dtype=tf.float32))).reshape(-1).astype(np.float64)

    return logits


def saved_model_logits(saved_model_dir: str, splits: dict[str, Iterable[np.ndarray]]) -> dict[str, np.ndarray]:
    """Logits of each split from the SavedModel's ``serve`` endpoint, batch by batch."""
    run = load_saved_model(saved_model_dir)
    return {name: np.concatenate([run(b) for b in batches]) for name, batches in splits.items()}


def choose_operating_points(y_val: np.ndarray, val_logits: np.ndarray, target_sensitivity: float,
                            target_specificity: float) -> list[OperatingPoint]:
    """Youden's J plus a high-sensitivity and a high-specificity point (Gulshan et al., JAMA 2016)."""
    return [
        youden_point(y_val, val_logits),
        sensitivity_point(y_val, val_logits, target_sensitivity),
        specificity_point(y_val, val_logits, target_specificity),
    ]


def split_metrics(y: np.ndarray, logits: np.ndarray, points: list[OperatingPoint],
                  prevalence: float | None = None) -> SplitSummary:
    """ROC AUC and every rate at every operating point, each with its 95% interval (:func:`runtime.evaluation.split_summary`,
    the same figures ``python -m runtime eval`` prints for an exported model)."""
    return split_summary(y, logits, {p.name: p.threshold for p in points}, prevalence)
