"""Timing calls: the one loop behind ``runtime bench``, ``benchmarks.worker`` and ``export.latency``.

Why one loop: three hand-written loops drifted apart (one timed its input slicing, one did not
warm up the batch it timed), and their figures were compared with each other. Here the rules
are written once:

- warm-up calls come first and are never timed (allocation, caches and thread pools settle);
- several calls take turns run by run (a, b, a, b, ...), so slow drift of the machine (heat,
  frequency scaling, a background job) falls on all of them alike and their ratio stays fair;
- only the call itself is timed: per-run preparation that is not part of the cost (say, the
  engine's input conversion for a bare engine call) goes into a :class:`Prepared` call.

Only numpy and the standard library: this runs on the device.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

Call = Callable[[], object]


@dataclass(frozen=True)
class Prepared:
    """A call with untimed per-run preparation: ``open()`` is entered, only the callable it yields is timed.

    For a bare engine call, which must convert its input and hold an interpreter first, and
    must let go of the interpreter before the next call of the run needs it.
    """

    open: Callable[[], AbstractContextManager[Call]]


Timed = Call | Prepared  # what time_calls takes: a plain call, timed whole, or a prepared one


def _once(call: Timed) -> int:
    """Run ``call`` once; nanoseconds of the call alone (a Prepared call's preparation is outside the clock)."""
    if isinstance(call, Prepared):
        with call.open() as bare:
            start = perf_counter_ns()
            bare()
            return perf_counter_ns() - start
    start = perf_counter_ns()
    call()
    return perf_counter_ns() - start


def _whole(name: str, value: object, low: int) -> int:
    """An integer >= ``low`` (numpy integers too; bools and floats are refused, a count is never 2.5)."""
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        v = None
    if v is None or isinstance(value, bool) or v < low:
        raise ConfigError(f"{name} {value!r}: expected an integer of {low} or more")
    return v


def time_calls(calls: Sequence[Timed], runs: int, warmup: int = 0) -> list[np.ndarray]:
    """Milliseconds of each call over ``runs`` timed runs, the calls taking turns within each run.

    ``warmup`` untimed runs (also in turns) come first. Returns one float64 array of length
    ``runs`` per call, in the order given. One call is the common case; a call that needs a
    different input each run cycles through its inputs itself (``itertools.cycle``).
    """
    if not calls:
        raise ConfigError("time_calls: no calls given; expected at least one")
    runs, warmup = _whole("runs", runs, 1), _whole("warmup", warmup, 0)
    for _ in range(warmup):
        for call in calls:
            _once(call)  # untimed: the duration is dropped
    ns = np.empty((len(calls), runs), dtype=np.float64)
    for k in range(runs):
        for i, call in enumerate(calls):
            ns[i, k] = _once(call)
    return list(ns / 1e6)


@dataclass(frozen=True)
class Latency:
    """Milliseconds over timed calls: p50, p90 and mean, with the samples they came from.

    The samples travel with the summary so that two artifacts can later be compared by more
    than their medians (:func:`runtime.stats.latency_ratio`).
    """

    p50: float
    p90: float
    mean: float
    runs: int
    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, samples_ms: Sequence[float] | np.ndarray) -> Latency:
        """The summary of ``samples_ms``: numpy's (linear) 50th and 90th percentiles and the mean."""
        ms = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
        if ms.size == 0:
            raise DataError("latency samples: none given; expected at least one timed call")
        if not np.isfinite(ms).all():
            raise DataError("latency samples contain NaN or inf; expected finite milliseconds")
        p50, p90 = np.percentile(ms, [50, 90])
        return cls(float(p50), float(p90), float(ms.mean()), int(ms.size), tuple(float(v) for v in ms))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the unit in every key (as ``benchmarks.worker`` writes it)."""
        return {"p50_ms": self.p50, "p90_ms": self.p90, "mean_ms": self.mean, "runs": self.runs,
                "samples_ms": list(self.samples_ms)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Latency:
        """The inverse of :meth:`to_dict`; keys beyond those five are ignored."""
        missing = [k for k in ("p50_ms", "p90_ms", "mean_ms", "runs", "samples_ms") if k not in raw]
        if missing:
            raise DataError(f"latency record: missing {', '.join(missing)}; expected the keys Latency.to_dict writes")
        try:
            samples = tuple(float(v) for v in raw["samples_ms"])
            p50, p90, mean, runs = float(raw["p50_ms"]), float(raw["p90_ms"]), float(raw["mean_ms"]), int(raw["runs"])
        except (TypeError, ValueError):
            raise DataError("latency record: p50_ms, p90_ms, mean_ms must be numbers, runs an integer and "
                            "samples_ms a list of numbers") from None
        if runs != len(samples) or not all(math.isfinite(v) for v in (p50, p90, mean, *samples)):
            raise DataError(f"latency record: runs {runs} with {len(samples)} samples_ms, or a non-finite value; "
                            "expected runs == len(samples_ms) and finite milliseconds")
        return cls(p50, p90, mean, runs, samples)
