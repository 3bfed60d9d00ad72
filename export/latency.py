"""Batch-1 latency of one artifact, timed in a fresh process: what the fallback reports as each layer's cost.

Two runtimes (or two interpreters of one) in the same process disturb each other's timings:
thread pools keep spinning after a call and caches are shared. Measured at 299x299 on the hard test
model, the fallback's float layers cost +4.5 ms when the steps took turns in one process and
+0.3 ms in separate processes (``python -m benchmarks``). So each step runs in its own process,
alone on the machine, and the steps take turns over ``rounds``, so that slow drift of the machine
falls on all of them alike.

``python -m export.latency MODEL IMAGE.npy`` prints the timings as JSON; only numpy and the
artifact's runtime are imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from runtime.cli import Parser, run_cli
from runtime.errors import ConfigError
from runtime.fresh_process import run_module
from runtime.timing import Latency, time_calls

CALLS, WARMUP, ROUNDS = 20, 5, 2  # 40 timed batch-1 calls per artifact, in 2 processes
TIMEOUT_S = 600.0  # per process: a guard against a hung child, far above what loading and 25 calls should take


def engine_ms(model: Path, image: np.ndarray, threads: int | None, calls: int = CALLS, warmup: int = WARMUP) -> list[float]:
    """Milliseconds of ``calls`` bare engine calls on ``image`` (1, S, S, 3), after ``warmup`` untimed ones."""
    from runtime.backends import open_backend

    with open_backend(model, threads=threads).bare_call(image) as call:
        return time_calls([call], calls, warmup)[0].tolist()


def p50_ms(models: list[Path], image_file: Path, threads: int | None, rounds: int = ROUNDS,
           timeout_s: float = TIMEOUT_S) -> list[float]:
    """The p50 of each model over ``rounds`` fresh processes, the models taking turns.

    A failed or hung run raises :class:`runtime.errors.ProcessError` naming the model.
    """
    samples: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            args = [str(model), str(image_file)] + ([] if threads is None else ["--threads", str(threads)])
            out = run_module("export.latency", args, timeout_s=timeout_s, what=f"{model.name}: the latency run")
            samples[i] += out["ms"]
    return [Latency.of(s).p50 for s in samples]


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m export.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a .tflite or .onnx file")
    p.add_argument("image", type=Path, help="a .npy of one preprocessed image, shape (1, S, S, 3)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: every core)")
    p.add_argument("--calls", type=int, default=CALLS, help="timed calls")
    args = p.parse_args(argv)

    def go() -> None:
        if args.calls < 1:
            raise ConfigError(f"--calls {args.calls}: expected 1 or more")
        image = np.load(args.image, allow_pickle=False)
        print(json.dumps({"model": str(args.model), "ms": engine_ms(args.model, image, args.threads, args.calls)}))

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
