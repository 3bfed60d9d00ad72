"""The steps every export shares: check inputs, draw calibration, compute the float reference,
verify each artifact and publish it.

A format module (``export.tflite``, ``export.onnx``) only converts; this module makes sure that
every format is calibrated on the same sample, judged against the same float logits with the
same limits, and written the same atomic way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import open_backend
from runtime.datasets import Dataset
from runtime.errors import DataError

from .calibration import CalibrationSample, calibration_split, draw_calibration, rows_holding
from .config import ExportConfig
from .publish import check_destination, publish
from .source import ModelSource, open_model_dir, open_training_data
from .verify import (
    SELECTION_SPLITS,
    VERIFY_SPLITS,
    LabelledPixels,
    artifact_logits,
    pool_rows,
    shortfall,
    saved_model_logits,
    verification_splits,
    verify_artifact,
)

log = logging.getLogger("export")


@dataclass(frozen=True)
class ExportResult:
    """One published artifact and the sidecar written beside it."""

    path: Path
    sidecar: dict[str, Any]

    @property
    def verification(self) -> dict[str, Any]:
        return self.sidecar["verification"]


@dataclass
class ExportSession:
    cfg: ExportConfig
    source: ModelSource
    out_dir: Path
    dataset: Dataset
    _calibration: CalibrationSample | None = None
    _verify_data: list[LabelledPixels] | None = None
    _reference: dict[str, np.ndarray] | None = None
    _calibration_reference: np.ndarray | None = None
    _pool: np.ndarray | None = None  # training rows not drawn for calibration, for agreement on more images

    @classmethod
    def open(cls, cfg: ExportConfig, artifact_names: list[str], needs_calibration: bool,
             source: ModelSource | None = None) -> ExportSession:
        """Every check that needs no TensorFlow, so mistakes fail in a second."""
        source = source or open_model_dir(cfg.model)
        out_dir = Path(cfg.out) if cfg.out else source.directory
        check_destination(out_dir, artifact_names, cfg.overwrite)
        session = cls(cfg, source, out_dir, open_training_data(source, cfg.data))
        train = session.dataset.split("train")
        if needs_calibration:  # numpy and PIL only (about a second at 299x299), and it checks the size against the data
            split, labels = calibration_split(train, cfg.calibration_data, source.positive_label)
            session._calibration = draw_calibration(split, labels, cfg.calibration_size, cfg.calibration_seed,
                                                    source.image_size, source.pixel_range)
            log.info("calibration: %d images from %s (seed %d, %s)", cfg.calibration_size, split.source,
                     cfg.calibration_seed, session._calibration.record["class_counts"])
        if train is not None and cfg.agreement_images != 0:
            drawn: np.ndarray | None = None  # training rows the calibration used: never in the agreement pool
            if session._calibration is not None:
                drawn = np.asarray(session._calibration.record["indices"], dtype=np.int64)
                if cfg.calibration_data is not None:  # another array: its rows are found in train by content
                    drawn = rows_holding(train.images, split.images[drawn])
            session._pool = pool_rows(len(train), drawn, cfg.agreement_images, cfg.calibration_seed)
            log.info("agreement pool: %d training images (%d calibration images left out)", session._pool.size,
                     0 if drawn is None else drawn.size)
        return session

    def calibration(self) -> CalibrationSample:
        if self._calibration is None:
            raise RuntimeError("this export was opened without calibration")
        return self._calibration

    def verify_data(self) -> list[LabelledPixels]:
        if self._verify_data is None:
            self._verify_data = verification_splits(self.dataset.splits, self.source.positive_label,
                                                    self.source.image_size, self.source.pixel_range, self._pool)
        return self._verify_data

    def reference(self) -> dict[str, np.ndarray]:
        """Float SavedModel logits on the verification splits, computed once per session."""
        if self._reference is None:
            start = time.perf_counter()
            self._reference = saved_model_logits(str(self.source.saved_model), self.verify_data())
            log.info("float reference: %s images in %.1f s", {k: v.size for k, v in self._reference.items()},
                     time.perf_counter() - start)
        return self._reference

    def calibration_reference(self) -> np.ndarray:
        """Float SavedModel logits on the calibration images (for bias correction), computed once."""
        if self._calibration_reference is None:
            pixels = self.calibration().pixels
            data = [LabelledPixels("calibration", pixels, np.zeros(len(pixels), dtype=np.int64))]
            self._calibration_reference = saved_model_logits(str(self.source.saved_model), data)["calibration"]
        return self._calibration_reference

    def logit_shift(self, path: Path) -> dict[str, float | int]:
        """Mean (artifact - float) logit over the calibration images: the bias int8 rounding adds.

        Measured on the calibration sample only, never on val or test, so the verification that
        follows stays an honest held-out check.
        """
        backend = open_backend(path, threads=self.cfg.threads)
        delta = backend.logits(self.calibration().pixels) - self.calibration_reference()
        return {"images": int(delta.size), "mean_delta_logit": float(delta.mean()), "std_delta_logit": float(delta.std())}

    def artifact_logits(self, path: Path, kernels: str = "default") -> tuple[dict[str, np.ndarray], str]:
        """The artifact's logits on every verification split, and the backend package that ran it."""
        backend = open_backend(path, threads=self.cfg.threads, kernels=kernels)
        return artifact_logits(backend, self.verify_data()), backend.package

    def selection_verdict(self, path: Path, kernel_sets: tuple[str, ...] = ("default",)) -> tuple[list[str], float]:
        """The gate's failures and shortfall (:func:`export.verify.shortfall`) for ``path`` on the selection splits
        (val and the unused training images), worst over ``kernel_sets``: the fallback's rule, the same gate as the
        final verification. The test split is left out so that the final verification still scores it held out."""
        data = [d for d in self.verify_data() if d.name in SELECTION_SPLITS]
        if not any(d.name == "val" for d in data):
            raise DataError(f"{self.dataset.path}: no 'val' split; --fallback auto chooses layers on it")
        if self.cfg.max_drift is None:
            raise DataError("--fallback auto needs --max-drift limits to reach")
        failures, worst = [], float("-inf")
        for kernels in kernel_sets:
            logits = artifact_logits(open_backend(path, threads=self.cfg.threads, kernels=kernels), data)
            report = self.judge(logits, data)
            failures += [f if kernels == "default" else f"{kernels} kernels: {f}" for f in report["failures"]]
            worst = max(worst, shortfall(report, self.cfg.max_drift))
        return failures, worst

    def judge(self, logits: dict[str, np.ndarray], data: list[LabelledPixels] | None = None) -> dict[str, Any]:
        """The verification report of these logits under this export's gate, limits and prevalence."""
        return verify_artifact(logits, data or self.verify_data(), self.reference(), self.source.card["operating_points"],
                               self.cfg.max_drift, self.cfg.gate, self.cfg.prevalence)

    def verify_and_publish(self, staged: Path, destination: Path, metadata: dict[str, Any],
                           extra: dict[str, Any] | None = None,
                           outputs: tuple[dict[str, np.ndarray], str] | None = None,
                           kernel_sets: tuple[str, ...] = ("default",)) -> ExportResult:
        """Verify ``staged`` against the float model, then publish it (or refuse it) with its sidecar.

        ``outputs`` passes logits already computed from these exact bytes, to avoid a second run.
        The report's top level is the default kernels; every other TFLite kernel set in
        ``kernel_sets`` gets its own report under ``kernel_sets``, and its failures count too.
        """
        start = time.perf_counter()
        logits, package = outputs or self.artifact_logits(staged)
        report = self.judge(logits)
        report["backend"], report["kernels"] = package, "default"
        report["kernel_sets"] = {}
        for kernels in (k for k in kernel_sets if k != "default"):
            other_logits, other_package = self.artifact_logits(staged, kernels)
            other = self.judge(other_logits)
            other["backend"] = other_package
            log.info("%s with %s kernels: %s", destination.name, kernels, summary_line(other))
            report["kernel_sets"][kernels] = other
            report["failures"] += [f"{kernels} kernels: {f}" for f in other["failures"]]
        report["passed"] = not report["failures"]
        report["seconds"] = round(time.perf_counter() - start, 2)
        sidecar = {"metadata": metadata, "config": {"kind": self.cfg.kind, **self.cfg.to_dict()},
                   "verification": report, **(extra or {})}
        log.info("%s: %s", destination.name, summary_line(report))
        return ExportResult(destination, publish(staged, destination, sidecar))


def summary_line(report: dict[str, Any]) -> str:
    """One line per artifact: the worst observed change on the held-out splits, then the gate's 95% bounds."""
    rows = [r for name, r in report["splits"].items() if name in VERIFY_SPLITS] or list(report["splits"].values())
    worst_auc = max(abs(r["delta_auc"]) for r in rows)
    points = [p for r in rows for p in r["operating_points"].values()]
    worst_sens = max(abs(p["delta_sensitivity"]) for p in points)
    worst_spec = max(abs(p["delta_specificity"]) for p in points)
    worst_agree = min(p["agreement"] for p in points)
    max_logit = max(r["max_abs_delta_logit"] for r in rows)
    gate = report.get("gate") or {}
    bounds = ""
    if gate.get("rule") == "noninferiority" and "operating_points" in gate:
        g = gate["operating_points"].values()
        bounds = (f"; 95% bounds on {gate['n']} images (one moves sensitivity by {gate['one_image']['sensitivity']:.4f}): "
                  f"sensitivity loss <= {max(-p['sensitivity_change']['low'] for p in g):.4f}, "
                  f"specificity loss <= {max(-p['specificity_change']['low'] for p in g):.4f}, "
                  f"agreement >= {min(p['agreement_interval']['low'] for p in g):.4f}, "
                  f"AUC loss <= {-gate['auc_change']['low']:.4f}")
    if report.get("limits") is None:  # --max-drift none: figures only; "within limits" would claim a check never made
        verdict = "not judged (--max-drift none)"
    else:
        verdict = "within limits" if report["passed"] else f"FAILED ({len(report['failures'])} beyond limits)"
    also = "".join(f" ({name} kernels too)" for name in report.get("kernel_sets", {}))
    return (f"observed worst |dAUC| {worst_auc:.4f}, |dsens| {worst_sens:.4f}, |dspec| {worst_spec:.4f}, "
            f"agreement {worst_agree:.4f}, max |dlogit| {max_logit:.4g}{bounds}: {verdict}{also}")
