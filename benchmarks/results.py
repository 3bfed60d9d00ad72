"""What a benchmark run measured, typed: one :class:`FormatResult` per format, the whole :class:`BenchmarkReport`.

``benchmark.json`` is :meth:`BenchmarkReport.to_dict`; :meth:`BenchmarkReport.from_dict` reads it
back, so the report, the plots and ``pytest benchmarks/`` read figures by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from export.config import DriftLimits
from export.report import SplitComparison
from runtime.evaluation import SplitSummary
from runtime.metrics import OperatingPoint
from runtime.stats import Interval
from runtime.timing import Latency

from .config import BenchmarkConfig

# An int8 file is flagged slower than its float counterpart when the 95% interval of the latency ratio (over fresh
# processes) lies wholly above 1 + this: slower by a tenth or more, shown, not a ratio near 1 that noise can tip.
# With 3 processes a side and the process-to-process spread measured here (docs/benchmarks.md), a file flags itself
# in well under 1 run in 100.
SLOWER_MARGIN = 0.10


@dataclass(frozen=True)
class SpeedComparison:
    """A format's speed against the float model it replaces, both measured in this run."""

    counterpart: str
    threads: int  # of the batch-1 latencies compared: the widest count measured
    # p50 / counterpart's p50 with its 95% interval: over fresh processes (runtime.stats.process_latency_ratio), or
    # over the calls of one process each (latency_ratio) when there is one
    latency_ratio: Interval
    throughput_ratio: float | None = None  # images/s at the throughput batch over the counterpart's (> 1: faster)

    @property
    def verdict(self) -> str:
        """``slower`` (the data show it beyond the margin), ``faster`` (interval below 1) or ``not shown faster``."""
        if self.latency_ratio.low > 1.0 + SLOWER_MARGIN:
            return "slower"
        return "faster" if self.latency_ratio.high < 1.0 else "not shown faster"

    def line(self) -> str:
        r = self.latency_ratio
        text = (f"p50 {r.value:.3f}x {self.counterpart} [{r.low:.3f}, {r.high:.3f}] at {self.threads} thread"
                f"{'s' if self.threads > 1 else ''}: {self.verdict}")
        if self.throughput_ratio is not None:
            text += (f"; batch throughput {self.throughput_ratio:.2f}x"
                     + (" (slower at batch)" if self.throughput_ratio < 1.0 else ""))
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"counterpart": self.counterpart, "threads": self.threads, "latency_ratio": self.latency_ratio.to_dict(),
                "throughput_ratio": self.throughput_ratio, "verdict": self.verdict}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SpeedComparison:
        return cls(str(raw["counterpart"]), int(raw["threads"]), Interval.from_dict(raw["latency_ratio"]),
                   raw.get("throughput_ratio"))


@dataclass
class FormatResult:
    """One row of the benchmark: a format's size, speed, memory and accuracy; ``status`` failed with ``error``
    when it could not be measured (the row is shown, not dropped)."""

    name: str
    description: str
    kind: str
    precision: str
    path: str
    status: str = "failed"
    error: str | None = None
    bytes: int | None = None
    latency: dict[int, Latency] = field(default_factory=dict)  # batch 1, by thread count (the widest: every process)
    process_p50_ms: tuple[float, ...] = ()  # each fresh process's p50 at the widest thread count
    engine: str | None = None
    load_s: float | None = None
    first_inference_s: float | None = None
    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_rss_batch_mb: float | None = None
    throughput_images_per_s: float | None = None
    throughput_batch: int | None = None
    summary: SplitSummary | None = None  # its own figures on the split
    comparison: SplitComparison | None = None  # against the SavedModel, image by image
    drift_failures: list[str] | None = None  # None: not judged (the SavedModel itself, or no limits)
    speed: SpeedComparison | None = None  # against its float counterpart
    roc: dict[str, list[float]] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def widest(self) -> Latency | None:
        """Batch-1 latency at the largest thread count measured."""
        return self.latency[max(self.latency)] if self.latency else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("name", "description", "kind", "precision", "path", "status", "error", "bytes",
                                             "engine", "load_s", "first_inference_s", "rss_after_load_mb", "peak_rss_mb",
                                             "peak_rss_batch_mb", "throughput_images_per_s", "throughput_batch",
                                             "drift_failures", "roc")}
        out["latency"] = {str(t): lat.to_dict() for t, lat in self.latency.items()}
        out["process_p50_ms"] = list(self.process_p50_ms)
        out["summary"] = None if self.summary is None else self.summary.to_dict()
        out["accuracy"] = None if self.comparison is None else self.comparison.to_dict()
        out["speed"] = None if self.speed is None else self.speed.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FormatResult:
        plain = {k: raw.get(k) for k in ("error", "bytes", "engine", "load_s", "first_inference_s", "rss_after_load_mb",
                                         "peak_rss_mb", "peak_rss_batch_mb", "throughput_images_per_s", "throughput_batch",
                                         "drift_failures", "roc")}
        return cls(str(raw["name"]), str(raw["description"]), str(raw["kind"]), str(raw["precision"]), str(raw["path"]),
                   str(raw["status"]), latency={int(t): Latency.from_dict(v) for t, v in (raw.get("latency") or {}).items()},
                   process_p50_ms=tuple(raw.get("process_p50_ms") or ()),
                   summary=None if raw.get("summary") is None else SplitSummary.from_dict(raw["summary"]),
                   comparison=None if raw.get("accuracy") is None else SplitComparison.from_dict(raw["accuracy"]),
                   speed=None if raw.get("speed") is None else SpeedComparison.from_dict(raw["speed"]), **plain)


@dataclass(frozen=True)
class ModelRecord:
    """The model the formats came from, as its card describes it."""

    card_path: str
    image_size: int
    class_names: tuple[str, str]
    positive_label: int
    operating_points: tuple[OperatingPoint, ...]
    saved_model_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.card_path, "image_size": self.image_size, "class_names": list(self.class_names),
                "positive_label": self.positive_label, "operating_points": [p.to_dict() for p in self.operating_points],
                "saved_model_sha256": self.saved_model_sha256}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelRecord:
        return cls(str(raw["path"]), int(raw["image_size"]), tuple(raw["class_names"]), int(raw["positive_label"]),  # type: ignore[arg-type]
                   tuple(OperatingPoint.from_dict(p) for p in raw["operating_points"]), raw.get("saved_model_sha256"))


@dataclass(frozen=True)
class EvaluationRecord:
    """The labelled split every format was scored on, and how drift was flagged on it."""

    split: str
    source: str
    n: int
    positives: int
    drift_limits: DriftLimits | None
    flag: str  # BenchmarkConfig.flag
    prevalence: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "source": self.source, "n": self.n, "positives": self.positives,
                "drift_limits": None if self.drift_limits is None else self.drift_limits.to_dict(), "flag": self.flag,
                "prevalence": self.prevalence}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvaluationRecord:
        limits = raw.get("drift_limits")
        return cls(str(raw["split"]), str(raw["source"]), int(raw["n"]), int(raw["positives"]),
                   None if limits is None else DriftLimits(**limits), str(raw.get("flag", "inferiority")),
                   raw.get("prevalence"))


@dataclass
class BenchmarkReport:
    """Everything measured, as written to ``benchmark.json``."""

    config: BenchmarkConfig
    model: ModelRecord
    evaluation: EvaluationRecord
    formats: dict[str, FormatResult]
    machine: dict[str, Any]  # CPU, cores, platform, versions: a record for people
    command: str
    seconds: float = 0.0
    plots: list[str] = field(default_factory=list)
    note: str = ""  # shown above every table, e.g. that the data are synthetic

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "model_card": self.model.to_dict(), "evaluation": self.evaluation.to_dict(),
                "formats": {name: f.to_dict() for name, f in self.formats.items()}, "machine": self.machine,
                "command": self.command, "seconds": round(self.seconds, 1), "plots": self.plots, "note": self.note}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchmarkReport:
        return cls(BenchmarkConfig.from_dict(raw["config"]), ModelRecord.from_dict(raw["model_card"]),
                   EvaluationRecord.from_dict(raw["evaluation"]),
                   {name: FormatResult.from_dict(f) for name, f in raw["formats"].items()}, dict(raw["machine"]),
                   str(raw["command"]), float(raw.get("seconds", 0.0)), list(raw.get("plots") or []), str(raw.get("note", "")))
