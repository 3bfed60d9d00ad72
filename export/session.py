"""The steps every export shares: check inputs, draw calibration, compute the float reference,
verify each artifact and publish it.

A format module (``export.tflite``, ``export.onnx``) only converts and serializes; this module
makes sure that every format is calibrated on the same sample, judged against the same float
logits on the same images with the same limits, and written the same atomic way
(:meth:`ExportSession.publish`: seal, stage, verify, publish).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import open_backend
from runtime.datasets import Dataset, binary_labels
from runtime.errors import DataError
from runtime.fileio import sha256_file
from runtime.integrity import PLACEHOLDER
from runtime.model_metadata import ArtifactInfo, ArtifactMetadata, InputSpec
from train.card import package_versions

from .calibration import CalibrationSample, calibration_split, draw_calibration, rows_holding
from .config import ExportConfig
from .publish import check_destination, publish, staged_file
from .report import VerificationReport
from .sidecar import Sidecar
from .source import ModelSource, open_model_dir, open_training_data
from .splits import CHOOSING_SPLITS, VERIFY_SPLITS, LabelledPixels, image_use, pool_rows, pools, verification_splits
from .verify import (
    artifact_logits,
    drift_failures,
    observed_excess,
    pooled_comparison,
    saved_model_logits,
    verify_artifact,
)

log = logging.getLogger("export")

_VERSION_PACKAGES = ("inception-edge", "tensorflow", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy")
Logits = dict[str, np.ndarray]
# a check of the staged file's own logits before any verdict (the fp32 ONNX conversion proof): sidecar sections, or raise
StagedCheck = Callable[[Logits], dict[str, Any]]


@dataclass(frozen=True)
class ExportResult:
    """One published artifact and the sidecar written beside it."""

    path: Path
    sidecar: Sidecar

    @property
    def verification(self) -> VerificationReport:
        return self.sidecar.verification


@dataclass
class ExportSession:
    cfg: ExportConfig
    source: ModelSource
    out_dir: Path
    dataset: Dataset
    _calibration: CalibrationSample | None = None
    _pools: dict[str, np.ndarray] | None = None  # training rows not drawn for calibration (export.splits.pools)
    _verify_data: list[LabelledPixels] | None = None
    _reference: Logits | None = None
    _calibration_reference: np.ndarray | None = None

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
            split, labels = calibration_split(train, cfg.calibration_data, source.card.positive_label)
            session._calibration = draw_calibration(split, labels, cfg.calibration_size, cfg.calibration_seed,
                                                    source.card.image_size, source.pixel_range)
            log.info("calibration: %d images from %s (seed %d, %s)", cfg.calibration_size, split.source,
                     cfg.calibration_seed, session._calibration.record["class_counts"])
        if train is not None and cfg.agreement_images != 0:
            drawn: np.ndarray | None = None  # training rows the calibration used: never in the pool
            if session._calibration is not None:
                drawn = session._calibration.indices
                if cfg.calibration_data is not None:  # another array: its rows are found in train by content
                    drawn = rows_holding(train.images, split.images[drawn])
            rows = pool_rows(len(train), drawn, cfg.agreement_images, cfg.calibration_seed)
            session._pools = pools(rows, binary_labels(train, source.card.positive_label), cfg.fallback == "auto",
                                   cfg.calibration_seed)
            log.info("training images in the verification: %s (%d calibration images left out)",
                     {name: r.size for name, r in session._pools.items()}, 0 if drawn is None else drawn.size)
        return session

    def calibration(self) -> CalibrationSample:
        if self._calibration is None:
            raise RuntimeError("this export was opened without calibration")
        return self._calibration

    def verify_data(self) -> list[LabelledPixels]:
        if self._verify_data is None:
            self._verify_data = verification_splits(self.dataset.splits, self.source.card.positive_label,
                                                    self.source.card.image_size, self.source.pixel_range, self._pools)
        return self._verify_data

    def reference(self) -> Logits:
        """Float SavedModel logits on the verification splits, computed once per session."""
        if self._reference is None:
            start = time.perf_counter()
            self._reference = saved_model_logits(str(self.source.saved_model), self.verify_data())
            log.info("float reference: %s images in %.1f s", {k: v.size for k, v in self._reference.items()},
                     time.perf_counter() - start)
        return self._reference

    def logit_shift(self, path: Path) -> dict[str, float | int]:
        """Mean (artifact - float) logit over the calibration images: the bias int8 rounding adds.

        Measured on the calibration sample only, never on the verification images, so the
        verification that follows stays an honest held-out check.
        """
        if self._calibration_reference is None:
            pixels = self.calibration().pixels
            data = [LabelledPixels("calibration", pixels, np.zeros(len(pixels), dtype=np.int64))]
            self._calibration_reference = saved_model_logits(str(self.source.saved_model), data)["calibration"]
        backend = open_backend(path, threads=self.cfg.threads)
        delta = backend.logits(self.calibration().pixels) - self._calibration_reference
        return {"images": int(delta.size), "mean_delta_logit": float(delta.mean()), "std_delta_logit": float(delta.std())}

    def artifact_logits(self, path: Path, kernels: str = "default") -> tuple[Logits, str]:
        """The artifact's logits on every verification split, and the backend package that ran it."""
        backend = open_backend(path, threads=self.cfg.threads, kernels=kernels)
        return artifact_logits(backend, self.verify_data()), backend.package

    def choosing_verdict(self, path: Path, kernel_sets: tuple[str, ...] = ("default",)) -> tuple[list[str], float]:
        """What the fallback search steers by: the observed changes of ``path`` on the images it may look at (val and
        its share of the training pool, pooled: ``export.splits``), against ``--max-drift``, worst over
        ``kernel_sets``; returns the failures and the worst excess (<= 0: every observed change within the limits).

        Observed changes, not the gate's 95% bounds: on a quarter of the pool a bound cannot show a repair that
        the held-out images will (docs/statistics.md). The proof is the verdict, on images this never saw.
        """
        data = [d for d in self.verify_data() if d.name in CHOOSING_SPLITS]
        if not any(d.name == "val" for d in data):
            raise DataError(f"{self.dataset.path}: no 'val' split; --fallback auto chooses layers on it")
        if self.cfg.max_drift is None:
            raise DataError("--fallback auto needs --max-drift limits to reach")
        label = "+".join(d.name for d in data)
        failures, worst = [], float("-inf")
        for kernels in kernel_sets:
            logits = artifact_logits(open_backend(path, threads=self.cfg.threads, kernels=kernels), data)
            pooled = pooled_comparison(data, self.reference(), logits, self.source.card.thresholds, self.cfg.prevalence)
            found = drift_failures({label: pooled}, self.cfg.max_drift)
            failures += [f if kernels == "default" else f"{kernels} kernels: {f}" for f in found]
            worst = max(worst, observed_excess(pooled, self.cfg.max_drift))
        return failures, worst

    def verify(self, logits: Logits, repaired: bool) -> VerificationReport:
        """The verification report of these logits under this export's gate, limits and prevalence."""
        return verify_artifact(logits, self.verify_data(), self.reference(), self.source.card.thresholds,
                               self.cfg.max_drift, image_use(self.verify_data(), repaired), self.cfg.gate,
                               self.cfg.prevalence)

    def metadata(self, artifact: ArtifactInfo, input_dtype: str, input_quantization: dict[str, Any] | None = None,
                 input_name: str | None = None, calibrated: bool = False) -> ArtifactMetadata:
        """The document embedded in an artifact, with its digest field reserved for :meth:`publish` to seal."""
        card = self.source.card
        test = card.metrics.get("test")
        return ArtifactMetadata(
            image_size=card.image_size, class_names=card.class_names, operating_points=card.operating_points,
            positive_label=card.positive_label, negative_label=card.negative_label,
            input=InputSpec(input_dtype, input_quantization, card.data.training_shape, card.input.resize,
                            card.input.source_pixel_range, input_name),
            artifact=artifact, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source={"saved_model_sha256": card.saved_model_sha256, "model_card_created": card.created,
                    "test_metrics": None if test is None else test.to_dict()},
            calibration=self.calibration().record if calibrated else None,
            versions=package_versions(_VERSION_PACKAGES), content_sha256=PLACEHOLDER)

    def publish(self, name: str, serialized: bytes, metadata: ArtifactMetadata, sections: dict[str, Any],
                kernel_sets: tuple[str, ...] = ("default",), repaired: bool = False,
                check: StagedCheck | None = None) -> ExportResult:
        """Seal ``serialized`` (the model with ``metadata`` embedded), stage it beside its destination, verify it
        against the float model on every kernel set, then publish it with its sidecar, or refuse it (exit 3).

        ``repaired``: float layers were chosen on images (``--fallback auto``), so only the images the
        search never saw judge it. ``check`` sees the staged file's logits first and adds its own sections.
        """
        from .metadata import seal_artifact

        data, metadata = seal_artifact(serialized, metadata, name)
        destination = self.out_dir / name
        with staged_file(destination) as staged:
            staged.write_bytes(data)
            log.info("converted %s (%.1f MB)", name, len(data) / 1e6)
            start = time.perf_counter()
            logits, package = self.artifact_logits(staged)
            sections = {**sections, **(check(logits) if check else {})}
            others = {}
            for kernels in (k for k in kernel_sets if k != "default"):
                other_logits, other_package = self.artifact_logits(staged, kernels)
                others[kernels] = _with_engine(self.verify(other_logits, repaired), other_package, kernels)
                log.info("%s with %s kernels: %s", name, kernels, summary_line(others[kernels]))
            report = _with_engine(self.verify(logits, repaired), package, "default", others,
                                  round(time.perf_counter() - start, 2))
            sidecar = Sidecar(name, sha256_file(staged), len(data), metadata, self.cfg, report, sections)
            log.info("%s: %s", name, summary_line(report))
            publish(staged, destination, sidecar.to_dict(), report.failures)
            return ExportResult(destination, sidecar)


def _with_engine(report: VerificationReport, package: str, kernels: str,
                 others: dict[str, VerificationReport] | None = None, seconds: float | None = None) -> VerificationReport:
    """The report with the engine that ran it, and every other kernel set's report and failures folded in."""
    others = others or {}
    failures = report.failures + tuple(f"{k} kernels: {f}" for k, r in others.items() for f in r.failures)
    return replace(report, backend=package, kernels=kernels, kernel_sets=others, failures=failures, seconds=seconds)


def summary_line(report: VerificationReport) -> str:
    """One line per artifact: the worst observed change on the held-out splits, then the gate's 95% bounds."""
    rows = [s for name, s in report.splits.items() if name in VERIFY_SPLITS] or list(report.splits.values())
    points = [p for s in rows for p in s.points.values()]
    worst_auc = max(abs(s.delta_auc) for s in rows)
    worst_sens = max(abs(p.delta("sensitivity")) for p in points)
    worst_spec = max(abs(p.delta("specificity")) for p in points)
    worst_agree = min(p.agreement for p in points)
    max_logit = max(s.drift.max_abs_delta_logit for s in rows)
    gate, bounds = report.gate, ""
    if gate.rule == "noninferiority" and gate.n is not None and gate.one_image and gate.auc_change:
        g = gate.points.values()
        bounds = (f"; 95% bounds on {gate.n} {'held-out ' if report.images.chose else ''}images (one moves sensitivity by "
                  f"{gate.one_image.sensitivity:.4f}): sensitivity loss <= {max(-p.sensitivity_change.low for p in g):.4f}, "
                  f"specificity loss <= {max(-p.specificity_change.low for p in g):.4f}, "
                  f"agreement >= {min(p.agreement_interval.low for p in g):.4f}, AUC loss <= {-gate.auc_change.low:.4f}")
    if not report.judged:  # --max-drift none: figures only; "within limits" would claim a check never made
        verdict = "not judged (--max-drift none)"
    else:
        verdict = "within limits" if report.passed else f"FAILED ({len(report.failures)} beyond limits)"
    also = "".join(f" ({name} kernels too)" for name in report.kernel_sets)
    return (f"observed worst |dAUC| {worst_auc:.4f}, |dsens| {worst_sens:.4f}, |dspec| {worst_spec:.4f}, "
            f"agreement {worst_agree:.4f}, max |dlogit| {max_logit:.4g}{bounds}: {verdict}{also}")
