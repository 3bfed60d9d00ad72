"""One format, measured in a fresh process: ``python -m benchmarks.worker JOB.json``.

Every format runs in its own process because timings taken in one process interfere (thread
pools, allocator and cache state: measured up to 4x off), and because TensorFlow's thread count
can only be set before it first runs. The parent writes a job file; this process loads the
model, warms it up, times it, and writes its figures (JSON) and, when asked, its logits on the
evaluation images (``.npy``). Peak RSS is read before the evaluation pass, so it is the model's
memory, not the evaluation data's: once after the batch-1 calls, once after the batch run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bench import status_mb
from runtime.errors import InceptionEdgeError, first_line
from runtime.fileio import atomic_write_json

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


def _engine(job: Job) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function from uint8 pixels to logits, and the engine's name with its version."""
    if job.kind == "saved_model":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(job.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        loaded = tf.saved_model.load(job.path)

        def run(pixels: np.ndarray) -> np.ndarray:
            # `loaded` stays referenced here: its variables die with it.
            return np.asarray(loaded.serve(tf.constant(pixels, dtype=tf.float32))).reshape(-1).astype(np.float64)

        return run, f"tensorflow {tf.__version__}"
    from runtime.backends import open_backend

    backend = open_backend(job.path, threads=job.threads)
    from importlib.metadata import PackageNotFoundError, version

    try:
        engine = f"{backend.package} {version(backend.package)}"
    except PackageNotFoundError:
        engine = backend.package
    return backend.logits, engine


def _percentile(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q))


def measure(job: Job) -> dict:
    pixels = np.load(job.pixels, mmap_mode="r", allow_pickle=False)
    timed = np.ascontiguousarray(pixels[:8])
    t0 = time.perf_counter()
    run, engine = _engine(job)
    load_s = time.perf_counter() - t0
    rss_after_load = status_mb("VmRSS")
    t1 = time.perf_counter()
    run(timed[:1])
    first_s = time.perf_counter() - t1
    for k in range(job.warmup):
        run(timed[k % len(timed)][None])
    times = []
    for k in range(job.runs):
        one = timed[k % len(timed)][None]
        s = time.perf_counter()
        run(one)
        times.append((time.perf_counter() - s) * 1e3)
    result = {"engine": engine, "threads": job.threads, "load_s": load_s, "first_inference_s": first_s,
              "p50_ms": _percentile(times, 50), "p90_ms": _percentile(times, 90), "mean_ms": float(np.mean(times)),
              "runs": job.runs, "rss_after_load_mb": rss_after_load,
              "peak_rss_mb": status_mb("VmHWM")}  # load and batch-1 calls: what a device classifying one image needs
    if job.throughput_batch:
        batch = np.ascontiguousarray(np.resize(timed, (job.throughput_batch,) + timed.shape[1:]))
        run(batch)  # a new batch size: let the engine allocate before timing
        s = time.perf_counter()
        for _ in range(job.throughput_runs):
            run(batch)
        result["throughput_images_per_s"] = job.throughput_batch * job.throughput_runs / (time.perf_counter() - s)
        result["throughput_batch"] = job.throughput_batch
        result["peak_rss_batch_mb"] = status_mb("VmHWM")  # a batch's activations on top
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
    atomic_write_json(job.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
