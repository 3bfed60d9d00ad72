"""``python -m benchmarks.soak MODEL``: many predictions in one process, and how much memory grew.

A device in a clinic runs for weeks; a leak of a few kilobytes per image is a crash a month
later. This runs ``--predictions`` single-image predictions (default 10,000) through one
``Classifier``, cycling through real or seeded images, and prints RSS after a warm-up, at the end,
and the growth between them, with latency at the start and at the end. The test suite runs a
shorter version with a bound; here the figure is printed for people.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bench import status_mb
from runtime.classifier import Classifier
from runtime.cli import DefaultsHelpFormatter, Parser, run_cli
from runtime.errors import ConfigError


@dataclass(frozen=True)
class SoakResult:
    model: str
    predictions: int
    rss_start_mb: float  # after the warm-up: allocators and caches have settled
    rss_end_mb: float
    rss_growth_mb: float
    first_ms: float  # mean latency of the first 1% of the timed predictions
    last_ms: float  # and of the last 1%
    seconds: float


def soak(model: str | Path, predictions: int = 10_000, images: np.ndarray | None = None, warmup: int = 500,
         threads: int | None = None) -> SoakResult:
    if predictions < 100:
        raise ConfigError(f"--predictions {predictions}: expected 100 or more (the start and end latencies are 1% each)")
    clf = Classifier(model, threads=threads)
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, size=(16, clf.image_size, clf.image_size, 3), dtype=np.uint8)
    for k in range(warmup):
        clf.predict(images[k % len(images)])
    rss_start = status_mb("VmRSS") or 0.0
    times = np.empty(predictions)
    started = time.perf_counter()
    for k in range(predictions):
        t0 = time.perf_counter()
        clf.predict(images[k % len(images)])
        times[k] = time.perf_counter() - t0
    seconds = time.perf_counter() - started
    rss_end = status_mb("VmRSS") or 0.0
    edge = max(1, predictions // 100)
    return SoakResult(str(model), predictions, rss_start, rss_end, rss_end - rss_start, 1e3 * times[:edge].mean(),
                      1e3 * times[-edge:].mean(), seconds)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
               formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="an exported .tflite or .onnx file")
    p.add_argument("--predictions", type=int, default=10_000, help="timed single-image predictions")
    p.add_argument("--warmup", type=int, default=500, help="untimed predictions before the first RSS reading")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: every core)")
    args = p.parse_args(argv)

    def go() -> None:
        r = soak(args.model, args.predictions, warmup=args.warmup, threads=args.threads)
        print(f"{r.model}: {r.predictions} predictions in {r.seconds:.1f} s; RSS {r.rss_start_mb:.1f} -> {r.rss_end_mb:.1f} MB "
              f"(growth {r.rss_growth_mb:+.2f} MB); latency first 1% {r.first_ms:.2f} ms, last 1% {r.last_ms:.2f} ms")
        print(asdict(r))

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
