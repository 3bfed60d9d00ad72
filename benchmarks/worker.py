"""One format, measured in a fresh process: ``python -m benchmarks.worker JOB.json``.

Every format runs in its own process because timings taken in one process interfere (thread
pools, allocator and cache state: measured up to 4x off), and because TensorFlow's thread count
can only be set before it first runs. The parent writes a job file; this process loads the
model, warms it up, times it, and writes its figures (JSON) and, when asked, its logits on the
evaluation images (``.npy``). Peak RSS is read before the evaluation pass, so it is the model's
memory, not the evaluation data's: once after the batch-1 calls, once after the batch run.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.bench import status_mb
from runtime.errors import InceptionEdgeError, first_line
from runtime.fileio import atomic_write_json
from runtime.timing import Latency, time_calls

EVAL_BATCH = 32


@dataclass(frozen=True)
class Job:
    """What the parent asks of one worker process."""

    path: str
    kind: str  # "saved_model", "tflite" or "onnx"
    image_size: int
    threads: int
    runs: int  # timed batch-1 calls
    warmup: int
    pixels: str  # .npy of uint8 (N, S, S, 3) images: the first ones are timed, all are evaluated
    result: str  # where to write the figures (JSON)
    throughput_batch: int = 0  # 0: no throughput run
    throughput_runs: int = 3
    logits: str | None = None  # where to write the logits on every image of ``pixels``; None: no evaluation

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class Measurement:
    """What one worker measured: its JSON result file, read back by the parent (:meth:`from_dict`)."""

    engine: str
    threads: int
    load_s: float
    first_inference_s: float
    latency: Latency  # batch 1, every timed call kept (runtime.stats.latency_ratio compares two formats by them)
    rss_after_load_mb: float | None
    peak_rss_mb: float | None  # load and batch-1 calls: what a device classifying one image needs
    throughput_batch: int | None = None
    throughput_batch_s: tuple[float, ...] = ()  # seconds of each timed batch
    peak_rss_batch_mb: float | None = None  # a batch's activations on top

    @property
    def throughput_images_per_s(self) -> float | None:
        if not self.throughput_batch or not self.throughput_batch_s:
            return None
        return self.throughput_batch * len(self.throughput_batch_s) / sum(self.throughput_batch_s)

    def to_dict(self) -> dict[str, Any]:
        out = {"engine": self.engine, "threads": self.threads, "load_s": self.load_s,
               "first_inference_s": self.first_inference_s, **self.latency.to_dict(),
               "rss_after_load_mb": self.rss_after_load_mb, "peak_rss_mb": self.peak_rss_mb}
        if self.throughput_batch:
            out.update(throughput_images_per_s=self.throughput_images_per_s, throughput_batch_s=list(self.throughput_batch_s),
                       throughput_batch=self.throughput_batch, peak_rss_batch_mb=self.peak_rss_batch_mb)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Measurement:
        return cls(str(raw["engine"]), int(raw["threads"]), float(raw["load_s"]), float(raw["first_inference_s"]),
                   Latency.from_dict(raw), raw.get("rss_after_load_mb"), raw.get("peak_rss_mb"), raw.get("throughput_batch"),
                   tuple(raw.get("throughput_batch_s") or ()), raw.get("peak_rss_batch_mb"))


def _engine(job: Job) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function from uint8 pixels to logits, and the engine's name with its version."""
    from importlib.metadata import PackageNotFoundError, version

    if job.kind == "saved_model":
        from train.evaluate import (
            load_saved_model,  # the trainer's and the export's own SavedModel call
        )

        return load_saved_model(job.path, threads=job.threads), f"tensorflow {version('tensorflow')}"
    from runtime.backends import open_backend

    backend = open_backend(job.path, threads=job.threads)
    try:
        engine = f"{backend.package} {version(backend.package)}"
    except PackageNotFoundError:
        engine = backend.package
    return backend.logits, engine


def measure(job: Job) -> Measurement:
    """Load, time and (when asked) evaluate ``job``'s model."""
    pixels = np.load(job.pixels, mmap_mode="r", allow_pickle=False)
    timed = np.ascontiguousarray(pixels[:8])
    t0 = time.perf_counter()
    run, engine = _engine(job)
    load_s = time.perf_counter() - t0
    rss_after_load = status_mb("VmRSS")
    t1 = time.perf_counter()
    run(timed[:1])
    first_s = time.perf_counter() - t1
    # Batch-1 inputs are sliced before the clock starts; the calls cycle through the 8 images.
    ones = itertools.cycle([timed[k:k + 1] for k in range(len(timed))])
    batch1 = Latency.of(time_calls([lambda: run(next(ones))], job.runs, job.warmup)[0])
    result = Measurement(engine, job.threads, load_s, first_s, batch1, rss_after_load, status_mb("VmHWM"))
    if job.throughput_batch:
        batch = np.ascontiguousarray(np.resize(timed, (job.throughput_batch,) + timed.shape[1:]))
        # One untimed call first: a new batch size makes the engine allocate.
        batch_s = time_calls([lambda: run(batch)], job.throughput_runs, warmup=1)[0] / 1e3
        result = replace(result, throughput_batch=job.throughput_batch, throughput_batch_s=tuple(batch_s.tolist()),
                         peak_rss_batch_mb=status_mb("VmHWM"))
    if job.logits:
        out = np.concatenate([run(np.ascontiguousarray(pixels[s:s + EVAL_BATCH])) for s in range(0, len(pixels), EVAL_BATCH)])
        np.save(job.logits, out.astype(np.float64), allow_pickle=False)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks.worker JOB.json (written by python -m benchmarks)", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    job = Job(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    try:
        result = measure(job)
    except InceptionEdgeError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    atomic_write_json(job.result, result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
