"""The benchmark stage's config: what to measure, on which data, how hard, and where to write."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.config_dicts import config_from_dict, load_config_json
from runtime.errors import ConfigError
from runtime.evaluation import check_prevalence

CONFIG_NAME = "benchmark_config.json"


@dataclass(frozen=True)
class BenchmarkConfig:
    """Every choice behind one benchmark report; saved beside it as ``benchmark_config.json``."""

    model: str  # a model directory: saved_model/, model_card.json and the exported artifacts
    data: str | None = None  # labelled images; None = the data file the model card names (sha256-checked)
    split: str = "test"  # held out from every choice made in training and export
    formats: tuple[str, ...] = ()  # file names to measure (the SavedModel always runs); () = all
    out: str | None = None  # report directory; None = MODEL/benchmark
    overwrite: bool = False
    runs: int = 50  # timed batch-1 calls per format and thread count; 50 gives a stable p90 in seconds at 299x299
    warmup: int = 5  # untimed calls first: allocation, kernel selection, thread pools
    threads: tuple[int, ...] = ()  # thread counts to time batch 1 at; () = 1 and every core (the Pi has 4)
    throughput_batch: int = 32
    throughput_runs: int = 3  # batches timed for throughput
    max_drift: str = ""  # drift limits the report judges each format by (export.config.DriftLimits.parse); "" = the defaults
    gate: str = "noninferiority"  # how they are checked: the 95% bounds (default) or the observed changes (point)
    prevalence: float | None = None  # for PPV and NPV in the report; None = the split's own
    timeout_s: float = 1800.0  # per worker process; a 299x299 SavedModel evaluating 468 images takes about a minute
    plots: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "threads", tuple(self.threads))
        self.validate()

    def validate(self) -> None:
        for name, low in (("runs", 1), ("warmup", 0), ("throughput_batch", 0), ("throughput_runs", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected an integer >= {low}")
        if any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise ConfigError(f"--threads {','.join(map(str, self.threads))}: expected positive integers")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout-s {self.timeout_s}: expected a positive number of seconds")
        self.drift_limits()  # a bad spec fails now, not after the measurements
        from export.config import GATES

        if self.gate not in GATES:
            raise ConfigError(f"--gate {self.gate!r}: expected one of {', '.join(GATES)}")
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
        return config_from_dict(cls, raw, "benchmark")

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkConfig:
        return load_config_json(cls, path, "benchmark")
