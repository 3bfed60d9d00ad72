"""The benchmark stage's config: what to measure, on which data, how hard, and where to write."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.config_dicts import config_from_dict, read_config_json
from runtime.errors import ConfigError
from runtime.evaluation import check_prevalence

CONFIG_NAME = "benchmark_config.json"
# How a format's drift on the one split is flagged. inferiority: only what the data show beyond a limit (the whole
# 95% interval of a loss beyond it); that it lies within is the export's gate, on more images. point: every observed
# change beyond a limit, as the exporters' --gate point judges; one image can flip it.
FLAGS = ("inferiority", "point")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Every choice behind one benchmark report; saved beside it as ``benchmark_config.json``."""

    model: str  # a model directory: saved_model/, model_card.json and the exported artifacts
    data: str | None = None  # labelled images; None = the data the model card names (sha256-checked; files: data_files.csv)
    split: str = "test"  # held out from every choice made in training and export
    formats: tuple[str, ...] = ()  # file names to measure (the SavedModel always runs); () = all
    out: str | None = None  # report directory; None = MODEL/benchmark
    overwrite: bool = False
    runs: int = 50  # timed batch-1 calls per format and thread count; 50 gives a stable p90 in seconds at 299x299
    warmup: int = 5  # untimed calls first: allocation, kernel selection, thread pools
    threads: tuple[int, ...] = ()  # thread counts to time batch 1 at; () = 1 and every core (the Pi has 4)
    # Fresh processes per format at the widest thread count, the formats taking turns. Each is one measurement of the
    # speed comparison: processes of one file differed by up to 1.79x in p50 (docs/benchmarks.md), so its interval is
    # taken over processes (runtime.stats.process_latency_ratio), which needs at least 2; 1 compares calls alone.
    rounds: int = 3
    throughput_batch: int = 32
    throughput_runs: int = 3  # batches timed for throughput
    max_drift: str = ""  # drift limits the report judges each format by (export.config.DriftLimits.parse); "" = the defaults
    flag: str = "inferiority"  # FLAGS: when a format's drift on the split is flagged
    prevalence: float | None = None  # for PPV and NPV in the report; None = the split's own
    timeout_s: float = 1800.0  # per worker process; a 299x299 SavedModel evaluating 468 images takes about a minute
    plots: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "threads", tuple(self.threads))
        self.validate()

    def validate(self) -> None:
        for name, low in (("runs", 1), ("warmup", 0), ("throughput_batch", 0), ("throughput_runs", 1), ("rounds", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected an integer >= {low}")
        if any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise ConfigError(f"--threads {','.join(map(str, self.threads))}: expected positive integers")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout-s {self.timeout_s}: expected a positive number of seconds")
        self.drift_limits()  # a bad spec fails now, not after the measurements
        if self.flag not in FLAGS:
            raise ConfigError(f"--flag {self.flag!r}: expected one of {', '.join(FLAGS)}")
        check_prevalence(self.prevalence)
        if not self.split:
            raise ConfigError("--split '': expected a split name such as test")

    def drift_limits(self):
        from export.config import DriftLimits

        return DriftLimits.parse(self.max_drift) if self.max_drift else DriftLimits()

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.model) / "benchmark"

    def thread_counts(self) -> tuple[int, ...]:
        """1 and every core unless set: single-threaded latency is what a busy device gets."""
        return tuple(dict.fromkeys(self.threads)) or tuple(sorted({1, os.cpu_count() or 1}))  # each count once

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["formats"], out["threads"] = list(self.formats), list(self.threads)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchmarkConfig:
        return config_from_dict(cls, _renamed(raw), "benchmark")

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkConfig:
        return cls.from_dict(read_config_json(path, "benchmark"))


def _renamed(raw: dict[str, Any]) -> dict[str, Any]:
    """Configs saved before ``flag`` called it ``gate``, with the exporters' word for another rule."""
    if "gate" not in raw:
        return raw
    out = {k: v for k, v in raw.items() if k != "gate"}
    out["flag"] = {"noninferiority": "inferiority"}.get(raw["gate"], raw["gate"])
    return out
