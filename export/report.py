"""The verification report, typed: what an export's sidecar holds under ``verification``.

Every figure the gate judges is a field read by attribute: a change of a rate with its paired
interval (:class:`PairedChange`), one operating point compared (:class:`PointComparison`), one
split compared (:class:`SplitComparison`), the verdict and what it was computed on
(:class:`GateVerdict`), and the whole report (:class:`VerificationReport`). ``to_dict`` writes
the JSON schema the docs describe (docs/statistics.md, "Reading a report"); ``from_dict``
reads it back, also from sidecars written before the split summaries nested their operating
points (:class:`runtime.evaluation.SplitSummary` reads both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.evaluation import RATES, OneImage, SplitSummary
from runtime.stats import Interval

from .config import DriftLimits

CHECKED = ("sensitivity", "specificity")  # the rates whose loss the gate bounds at every operating point


@dataclass(frozen=True)
class PairedChange:
    """Artifact minus float in the share of images decided right, paired image by image: Newcombe's interval,
    the images that changed side, and the exact McNemar p on them."""

    value: float
    low: float
    high: float
    method: str
    images: int
    lost: int  # right under float, wrong under the artifact
    gained: int
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        return {**Interval(self.value, self.low, self.high, self.method).to_dict(), "images": self.images,
                "lost": self.lost, "gained": self.gained, "mcnemar_p": self.mcnemar_p}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PairedChange:
        iv = Interval.from_dict(raw)
        return cls(iv.value, iv.low, iv.high, iv.method, int(raw["images"]), int(raw["lost"]), int(raw["gained"]),
                   float(raw["mcnemar_p"]))


@dataclass(frozen=True)
class AucChange:
    """Artifact minus float AUC on the same images: paired DeLong interval and its p."""

    value: float
    low: float
    high: float
    method: str
    p: float

    def to_dict(self) -> dict[str, Any]:
        return {**Interval(self.value, self.low, self.high, self.method).to_dict(), "p": self.p}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AucChange:
        iv = Interval.from_dict(raw)
        return cls(iv.value, iv.low, iv.high, iv.method, float(raw["p"]))


@dataclass(frozen=True)
class Rates:
    sensitivity: float
    specificity: float
    accuracy: float

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in RATES}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Rates:
        return cls(*(float(raw[k]) for k in RATES))


@dataclass(frozen=True)
class PointChanges:
    """What the gate judges at one operating point: the paired changes of sensitivity and specificity, and how many
    decisions agree (with Wilson's interval) and flipped each way."""

    sensitivity_change: PairedChange
    specificity_change: PairedChange
    agreement: float
    agreement_interval: Interval
    to_positive: int
    to_negative: int

    def change(self, rate: str) -> PairedChange:
        """The paired change of ``sensitivity``, ``specificity`` (or, on a :class:`PointComparison`, ``accuracy``)."""
        return getattr(self, f"{rate}_change")

    def changes(self) -> PointChanges:
        """Just the gate's figures (a :class:`PointComparison` carries more)."""
        return PointChanges(self.sensitivity_change, self.specificity_change, self.agreement, self.agreement_interval,
                            self.to_positive, self.to_negative)

    def to_dict(self) -> dict[str, Any]:
        return {"sensitivity_change": self.sensitivity_change.to_dict(), "specificity_change": self.specificity_change.to_dict(),
                "agreement": self.agreement, "agreement_interval": self.agreement_interval.to_dict(),
                "flipped": {"to_positive": self.to_positive, "to_negative": self.to_negative}}

    @classmethod
    def _fields_from(cls, raw: dict[str, Any]) -> tuple[Any, ...]:
        return (PairedChange.from_dict(raw["sensitivity_change"]), PairedChange.from_dict(raw["specificity_change"]),
                float(raw["agreement"]), Interval.from_dict(raw["agreement_interval"]), int(raw["flipped"]["to_positive"]),
                int(raw["flipped"]["to_negative"]))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PointChanges:
        return cls(*cls._fields_from(raw))


@dataclass(frozen=True)
class PointComparison(PointChanges):
    """One operating point on one split: the gate's figures, each model's rates and the change in accuracy."""

    threshold: float
    float_rates: Rates
    artifact_rates: Rates
    accuracy_change: PairedChange

    def delta(self, rate: str) -> float:
        """The observed change of a rate: artifact minus float."""
        return getattr(self.artifact_rates, rate) - getattr(self.float_rates, rate)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "float": self.float_rates.to_dict(), "artifact": self.artifact_rates.to_dict(),
                "delta_sensitivity": self.delta("sensitivity"), "delta_specificity": self.delta("specificity"),
                "accuracy_change": self.accuracy_change.to_dict(), **super().to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PointComparison:
        return cls(*cls._fields_from(raw), float(raw["threshold"]), Rates.from_dict(raw["float"]),
                   Rates.from_dict(raw["artifact"]), PairedChange.from_dict(raw["accuracy_change"]))


@dataclass(frozen=True)
class Drift:
    """How far the artifact's outputs moved from the float model's, image by image."""

    max_abs_delta_probability: float
    mean_abs_delta_probability: float
    max_abs_delta_logit: float
    mean_abs_delta_logit: float

    def to_dict(self) -> dict[str, float]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Drift:
        return cls(*(float(raw[k]) for k in ("max_abs_delta_probability", "mean_abs_delta_probability",
                                             "max_abs_delta_logit", "mean_abs_delta_logit")))


@dataclass(frozen=True)
class SplitComparison:
    """Every number the gate is checked against on one split (or a pool of splits): each model's figures with their
    intervals, and the paired changes (artifact minus float) with theirs."""

    n: int
    positives: int
    one_image: OneImage
    auc_change: AucChange
    drift: Drift
    points: dict[str, PointComparison]
    float_summary: SplitSummary
    artifact_summary: SplitSummary

    @property
    def delta_auc(self) -> float:
        return self.artifact_summary.auc - self.float_summary.auc

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "positives": self.positives, "one_image": self.one_image.to_dict(),
                "auc": {"float": self.float_summary.auc, "artifact": self.artifact_summary.auc},
                "delta_auc": self.delta_auc, "auc_change": self.auc_change.to_dict(), **self.drift.to_dict(),
                "operating_points": {name: p.to_dict() for name, p in self.points.items()},
                "float": self.float_summary.to_dict(), "artifact": self.artifact_summary.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SplitComparison:
        return cls(int(raw["n"]), int(raw["positives"]), OneImage.from_dict(raw["one_image"]),
                   AucChange.from_dict(raw["auc_change"]), Drift.from_dict(raw),
                   {name: PointComparison.from_dict(p) for name, p in raw["operating_points"].items()},
                   SplitSummary.from_dict(raw["float"]), SplitSummary.from_dict(raw["artifact"]))


@dataclass(frozen=True)
class ImageUse:
    """Which images chose something in the export and which judged the published artifact.

    A plain export chooses nothing: every verification image judges. Under ``--fallback auto`` the
    search chose the float layers on ``chose``; a repaired artifact is judged only on ``judged``,
    images the search never looked at (docs/statistics.md).
    """

    chose: tuple[str, ...]  # splits that shaped the published artifact (the fallback's search); () for a plain export
    judged: tuple[str, ...]  # splits pooled for the verdict
    sizes: dict[str, int]  # images per split
    train_rows: dict[str, tuple[int, ...]] = field(default_factory=dict)  # a training-pool split -> its rows of train

    def to_dict(self) -> dict[str, Any]:
        return {"chose": list(self.chose), "judged": list(self.judged), "sizes": self.sizes,
                "train_rows": {name: list(rows) for name, rows in self.train_rows.items()}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ImageUse:
        return cls(tuple(raw["chose"]), tuple(raw["judged"]), {k: int(v) for k, v in raw["sizes"].items()},
                   {k: tuple(int(i) for i in v) for k, v in (raw.get("train_rows") or {}).items()})


@dataclass(frozen=True)
class GateVerdict:
    """The rule and what it judged. Under ``noninferiority`` the judged splits are pooled and its figures are given
    (``n``, ``one_image``, ``auc_change``, ``points``); ``point`` judges each split alone and has none."""

    rule: str
    splits: tuple[str, ...]
    n: int | None = None
    one_image: OneImage | None = None
    auc_change: AucChange | None = None
    points: dict[str, PointChanges] = field(default_factory=dict)
    confidence: float = 0.95

    @classmethod
    def pooled(cls, splits: tuple[str, ...], comparison: SplitComparison) -> GateVerdict:
        return cls("noninferiority", splits, comparison.n, comparison.one_image, comparison.auc_change,
                   {name: p.changes() for name, p in comparison.points.items()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "splits": list(self.splits)}
        if self.n is not None and self.one_image is not None and self.auc_change is not None:
            out.update({"confidence": self.confidence, "n": self.n, "one_image": self.one_image.to_dict(),
                        "auc_change": self.auc_change.to_dict(),
                        "operating_points": {name: p.to_dict() for name, p in self.points.items()}})
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GateVerdict:
        if "n" not in raw:
            return cls(str(raw["rule"]), tuple(raw["splits"]))
        return cls(str(raw["rule"]), tuple(raw["splits"]), int(raw["n"]), OneImage.from_dict(raw["one_image"]),
                   AucChange.from_dict(raw["auc_change"]),
                   {name: PointChanges.from_dict(p) for name, p in raw["operating_points"].items()},
                   float(raw.get("confidence", 0.95)))


@dataclass(frozen=True)
class VerificationReport:
    """One artifact against the float SavedModel: every split compared, the gate's verdict, every failure."""

    limits: DriftLimits | None  # None: --max-drift none, figures without a verdict
    gate: GateVerdict
    splits: dict[str, SplitComparison]
    failures: tuple[str, ...]
    images: ImageUse
    backend: str | None = None  # the package that ran the artifact
    kernels: str | None = None  # the TFLite kernel set of the top-level figures
    kernel_sets: dict[str, VerificationReport] = field(default_factory=dict)  # every other kernel set checked
    seconds: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def judged(self) -> bool:
        """False under ``--max-drift none``: "passed" would claim a check never made."""
        return self.limits is not None

    def to_dict(self) -> dict[str, Any]:
        return {"limits": None if self.limits is None else self.limits.to_dict(), "gate": self.gate.to_dict(),
                "images": self.images.to_dict(), "splits": {name: s.to_dict() for name, s in self.splits.items()},
                "passed": self.passed, "failures": list(self.failures), "backend": self.backend, "kernels": self.kernels,
                "kernel_sets": {name: r.to_dict() for name, r in self.kernel_sets.items()}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VerificationReport:
        limits = raw.get("limits")
        gate = GateVerdict.from_dict(raw["gate"])
        splits = {name: SplitComparison.from_dict(s) for name, s in raw["splits"].items()}
        # reports from before the image record chose nothing on images: every split judged
        images = ImageUse.from_dict(raw["images"]) if "images" in raw else \
            ImageUse((), gate.splits, {name: s.n for name, s in splits.items()})
        return cls(None if limits is None else DriftLimits(**limits), gate, splits, tuple(raw["failures"]), images,
                   raw.get("backend"), raw.get("kernels"),
                   {name: cls.from_dict(r) for name, r in (raw.get("kernel_sets") or {}).items()}, raw.get("seconds"))
