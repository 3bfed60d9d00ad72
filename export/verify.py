"""Verification: does the artifact make the float SavedModel's decisions, on real labelled images?

Float accuracy says nothing about int8 drift (an offline model once scored AUC 0.95 in float and
output a constant in int8), so every export is run on the validation and test splits and
compared with the SavedModel at every operating point of the model card. The report lists
every failing number, not just the first, so one run tells the user everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.backends import Backend
from runtime.datasets import Split, binary_labels, iter_pixel_batches
from runtime.images import PixelRange
from runtime.metrics import binary_metrics, roc_auc, sigmoid

from .config import DriftLimits

VERIFY_SPLITS = ("val", "test")
SELECTION_SPLIT = "val"  # where choices (the fallback's layers) are made; test stays held out
_BATCH = 32


@dataclass(frozen=True)
class LabelledPixels:
    """One split preprocessed once, shared by the float model and every artifact."""

    name: str
    pixels: np.ndarray  # (N, S, S, 3), 0-255: uint8 when the source is uint8 (4x less memory at 299x299), else float32
    labels01: np.ndarray


def verification_splits(splits: dict[str, Split], positive_label: int, image_size: int,
                        pixel_range: PixelRange | None) -> list[LabelledPixels]:
    out = []
    for name in VERIFY_SPLITS:
        split = splits.get(name)
        if split is None:
            continue
        pixels = np.concatenate(list(iter_pixel_batches(split, np.arange(len(split)), 64, image_size, pixel_range,
                                                        keep_uint8=True)))
        out.append(LabelledPixels(name, pixels, binary_labels(split, positive_label)))
    return out


def saved_model_logits(saved_model_dir: str, data: list[LabelledPixels]) -> dict[str, np.ndarray]:
    """The float reference: the SavedModel's ``serve`` logits for each split."""
    from train.evaluate import saved_model_logits as run

    return run(saved_model_dir, {d.name: _batches(d.pixels) for d in data})


def _batches(pixels: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(pixels), _BATCH):
        yield pixels[start:start + _BATCH]


def compare_split(labels01: np.ndarray, reference: np.ndarray, candidate: np.ndarray,
                  operating_points: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number the drift limits are checked against, for one split."""
    p_ref, p_new = sigmoid(reference), sigmoid(candidate)
    auc_ref, auc_new = roc_auc(labels01, p_ref), roc_auc(labels01, p_new)
    delta_p = np.abs(p_new - p_ref)
    points = {}
    for point in operating_points:
        t = float(point["threshold"])
        m_ref, m_new = binary_metrics(labels01, p_ref, t), binary_metrics(labels01, p_new, t)
        points[point["name"]] = {
            "threshold": t,
            "float": {"sensitivity": m_ref.sensitivity, "specificity": m_ref.specificity, "accuracy": m_ref.accuracy},
            "artifact": {"sensitivity": m_new.sensitivity, "specificity": m_new.specificity, "accuracy": m_new.accuracy},
            "delta_sensitivity": m_new.sensitivity - m_ref.sensitivity,
            "delta_specificity": m_new.specificity - m_ref.specificity,
            "agreement": float(np.mean((p_ref >= t) == (p_new >= t))),
        }
    return {
        "n": int(labels01.size),
        "auc": {"float": auc_ref, "artifact": auc_new},
        "delta_auc": auc_new - auc_ref,
        "max_abs_delta_probability": float(delta_p.max()),
        "mean_abs_delta_probability": float(delta_p.mean()),
        "max_abs_delta_logit": float(np.abs(candidate - reference).max()),
        "operating_points": points,
    }


def drift_failures(splits: dict[str, dict[str, Any]], limits: DriftLimits) -> list[str]:
    """Every number outside ``limits``, as 'split/point metric value vs bound' strings."""
    failures = []
    for name, report in splits.items():
        if abs(report["delta_auc"]) > limits.auc:
            failures.append(f"{name} |delta AUC| {abs(report['delta_auc']):.4f} > {limits.auc}")
        for point, row in report["operating_points"].items():
            for metric, bound in (("sensitivity", limits.sensitivity), ("specificity", limits.specificity)):
                delta = abs(row[f"delta_{metric}"])
                if delta > bound:
                    failures.append(f"{name}/{point} |delta {metric}| {delta:.4f} > {bound}")
            if row["agreement"] < limits.agreement:
                failures.append(f"{name}/{point} agreement {row['agreement']:.4f} < {limits.agreement}")
    return failures


def artifact_logits(backend: Backend, data: list[LabelledPixels]) -> dict[str, np.ndarray]:
    return {d.name: backend.logits(d.pixels) for d in data}


def verify_artifact(outputs: dict[str, np.ndarray], data: list[LabelledPixels], reference: dict[str, np.ndarray],
                    operating_points: list[dict[str, Any]], limits: DriftLimits | None) -> dict[str, Any]:
    """Compare an artifact's logits on every split with the float logits."""
    splits = {d.name: compare_split(d.labels01, reference[d.name], outputs[d.name], operating_points) for d in data}
    failures = drift_failures(splits, limits) if limits is not None else []
    return {"limits": None if limits is None else limits.to_dict(), "splits": splits,
            "passed": not failures, "failures": failures}
