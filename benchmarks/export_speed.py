"""Latency and size of every export beside the float SavedModel, measured side by side in one run.

``python -m benchmarks.export_speed --model DIR`` times each artifact in its own fresh process
(in-process timings of several runtimes were up to 4x off: thread pools and caches interfere),
at batch 1 with the same thread count, after a warm-up, and prints the ratios the export issue
sets as goals: TFLite int8 <= 0.33 x SavedModel, ONNX int8 (x86 preset) <= 0.45 x ONNX fp32,
each int8 file <= 26% of the ONNX fp32 file. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runtime.cli import Parser

ARTIFACTS = ("saved_model", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx", "model_int8_x86.onnx")
GOALS = (("model_int8.tflite", "saved_model", "latency", 0.33), ("model_int8_x86.onnx", "model_fp32.onnx", "latency", 0.45),
         ("model_int8.tflite", "model_fp32.onnx", "size", 0.26), ("model_int8.onnx", "model_fp32.onnx", "size", 0.26),
         ("model_int8_x86.onnx", "model_fp32.onnx", "size", 0.26))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def time_one(path: Path, image_size: int, threads: int, runs: int, warmup: int) -> dict[str, float]:
    """Load ``path`` and time ``runs`` single-image inferences (called inside the worker process)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, image_size, image_size, 3)).astype(np.uint8)
    start = time.perf_counter()
    if path.is_dir():
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        loaded = tf.saved_model.load(str(path))  # keep the object: its variables die with it
        x = tf.constant(image.astype(np.float32))

        def infer() -> None:
            loaded.serve(x).numpy()
    else:
        from runtime.backends import open_backend

        backend = open_backend(path, threads=threads)

        def infer() -> None:
            backend.logits(image)
    load = time.perf_counter() - start
    for _ in range(warmup):
        infer()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        infer()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"load_s": load, "p50_ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * times[int(0.9 * (len(times) - 1))],
            "mean_ms": 1e3 * statistics.fmean(times)}


def measure(model_dir: Path, threads: int, runs: int, warmup: int) -> dict[str, dict[str, float]]:
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    size = int(card["image_size"])
    results: dict[str, dict[str, float]] = {}
    for name in ARTIFACTS:
        path = model_dir / (card["saved_model"] if name == "saved_model" else name)
        if not path.exists():
            continue
        cmd = [sys.executable, "-m", "benchmarks.export_speed", "--worker", str(path), "--image-size", str(size),
               "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            results[name] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}  # type: ignore[dict-item]
            continue
        results[name] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "bytes": _size(path)}
    return results


def report(results: dict[str, dict[str, float]], threads: int, image_size: int) -> str:
    lines = [f"{image_size}x{image_size}, batch 1, {threads} threads, one process per format",
             "| artifact | MB | load s | p50 ms | p90 ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {name} | {r['bytes'] / 1e6:.1f} | {r['load_s']:.2f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} |")
    lines.append("")
    for new, base, kind, goal in GOALS:
        a, b = results.get(new, {}), results.get(base, {})
        if "p50_ms" not in a or "p50_ms" not in b:
            continue
        ratio = a["p50_ms"] / b["p50_ms"] if kind == "latency" else a["bytes"] / b["bytes"]
        verdict = "meets" if ratio <= goal else "MISSES"
        lines.append(f"{kind} {new} / {base} = {ratio:.3f} (goal <= {goal}: {verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.export_speed", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="model directory holding saved_model/ and the exported artifacts")
    p.add_argument("--threads", type=int, default=2, help="threads per runtime (the Pi has 4 cores; CI has 2)")
    p.add_argument("--runs", type=int, default=50, help="timed single-image inferences per artifact")
    p.add_argument("--warmup", type=int, default=5, help="untimed inferences first (allocation, kernel selection)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--image-size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(time_one(Path(args.worker), args.image_size, args.threads, args.runs, args.warmup)))
        return 0
    if not args.model:
        p.error("--model is required")
    model_dir = Path(args.model)
    if not (model_dir / "model_card.json").is_file():
        p.error(f"{model_dir}: no model_card.json; expected a model directory written by `python -m train`")
    results = measure(model_dir, args.threads, args.runs, args.warmup)
    size = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))["image_size"]
    print(report(results, args.threads, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
