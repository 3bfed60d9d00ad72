"""``python -m runtime bench``: what one exported model costs on this device.

It reports what a deployment decision needs: cold start (process start to first answer), load
time, first inference, steady-state latency p50/p90 and images per second, RSS after load and at
peak, and the wrapper's overhead over the bare engine call. Bare and wrapped calls alternate in
one loop, so the overhead is a ratio measured side by side, not two numbers from different
moments of a noisy machine. Optionally, N caller threads share one classifier to measure
concurrent throughput and to check that every answer equals the serial one.

Nothing here asserts a speed: the figures are printed for people and for ``benchmarks/``.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import cpu_threads, import_backend
from .classifier import Classifier
from .errors import ConfigError, InceptionEdgeError
from .timing import Latency, Prepared, time_calls


@dataclass(frozen=True)
class BenchConfig:
    """What to time and how hard."""

    model: str
    runs: int = 50  # timed calls; 50 gives a stable p90 at 299x299 in a few seconds
    warmup: int = 5  # untimed calls first: allocation, caches and thread pools settle
    threads: int | None = None  # engine threads; None = every core, as the classifier defaults
    backend: str | None = None
    interpreters: int = 1  # TFLite interpreter pool size (1 = a lock)
    kernels: str = "default"  # TFLite kernel set (runtime.backends.TFLITE_KERNELS)
    callers: int = 0  # caller threads sharing the classifier; 0 skips the concurrency run
    image: str | None = None  # also time predict() from this file (decode and resize included)
    seed: int = 0  # the synthetic images' seed

    def __post_init__(self) -> None:
        for name, low in (("runs", 1), ("warmup", 0), ("interpreters", 1), ("callers", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected {low} or more")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: expected 1 or more")


@dataclass
class BenchResult:
    model: str
    backend: str
    backend_version: str
    image_size: int
    threads: int
    interpreters: int
    kernels: str
    import_s: float  # importing the backend package
    load_s: float  # metadata, checksums and engine construction
    digest_s: float  # of load_s: checking the content digest embedded in the file (runtime.integrity)
    first_inference_s: float
    cold_start_s: float | None  # process start to the first answer (Linux /proc only)
    bare: Latency  # the engine call alone, input already converted
    predict: Latency  # Classifier.predict on a uint8 array at the model's size
    overhead: float  # predict.p50 / bare.p50 - 1
    images_per_s: float  # one caller, from predict's mean
    rss_after_load_mb: float | None
    peak_rss_mb: float | None
    predict_file: Latency | None = None
    concurrency: dict[str, Any] | None = None
    machine: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``--json``: the fields as named here (a latency as p50/p90/mean/runs/samples_ms, in ms)."""
        return asdict(self)


def status_mb(key: str) -> float | None:
    """A memory figure from /proc/self/status (Linux, so every Pi); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _process_age_s() -> float | None:
    """Seconds since this process started, from /proc (10 ms resolution); None where there is no /proc."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _concurrency(clf: Classifier, images: np.ndarray, callers: int, per_caller: int) -> dict[str, Any]:
    """``callers`` threads share ``clf``; each answer must equal the serial answer for the same image."""
    serial = [clf.predict(img)[0].logit for img in images]
    n_serial = callers * per_caller
    t0 = time.perf_counter()
    for k in range(n_serial):
        clf.predict(images[k % len(images)])
    serial_s = time.perf_counter() - t0
    mismatches: list[int] = []
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for k in range(per_caller):
                i = (offset + k) % len(images)
                if clf.predict(images[i])[0].logit != serial[i]:
                    mismatches.append(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(callers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parallel_s = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"callers": callers, "predictions": n_serial, "serial_images_per_s": n_serial / serial_s,
            "concurrent_images_per_s": n_serial / parallel_s, "speedup": serial_s / parallel_s,
            "mismatches": len(mismatches), "equal_to_serial": not mismatches}


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Time ``cfg.model`` in this process. Cold start is only meaningful in a fresh process (the CLI)."""
    model = Path(cfg.model)
    t0 = time.perf_counter()
    try:
        import_backend(model, cfg.backend)
    except InceptionEdgeError:
        pass  # the classifier below raises the same typed error, after its checks of the file
    t1 = time.perf_counter()
    clf = Classifier(model, backend=cfg.backend, threads=cfg.threads, interpreters=cfg.interpreters, kernels=cfg.kernels)
    t2 = time.perf_counter()
    rss_after_load = status_mb("VmRSS")
    rng = np.random.default_rng(cfg.seed)
    size = clf.image_size
    images = rng.integers(0, 256, size=(8, size, size, 3), dtype=np.uint8)
    clf.predict(images[0])
    t3 = time.perf_counter()
    cold = _process_age_s()
    if cfg.image:
        clf.predict(cfg.image)  # a bad file fails now, not after the timed runs

    # Bare and wrapped calls take turns on the same image each run, so drift of the machine hits both alike.
    # The bare call's input conversion is its preparation, outside the clock; it lets go of the engine
    # (a TFLite interpreter from the pool) before predict() needs it.
    bare_images, predict_images = itertools.cycle(images), itertools.cycle(images)
    bare_call = Prepared(lambda: clf.engine.bare_call(clf.pixels(next(bare_images))))
    bare_ms, predict_ms = time_calls([bare_call, lambda: clf.predict(next(predict_images))], cfg.runs, cfg.warmup)
    file_latency, image_file = None, cfg.image
    if image_file:  # already warm from the check above
        file_latency = Latency.of(time_calls([lambda: clf.predict(image_file)], cfg.runs)[0])
    concurrency = _concurrency(clf, images, cfg.callers, cfg.runs) if cfg.callers else None
    bare, predict = Latency.of(bare_ms), Latency.of(predict_ms)
    return BenchResult(
        model=str(model), backend=clf.backend, backend_version=_version(clf.backend), image_size=size,
        threads=cpu_threads(cfg.threads), interpreters=cfg.interpreters, kernels=cfg.kernels,
        import_s=t1 - t0, load_s=t2 - t1, digest_s=clf.digest_seconds, first_inference_s=t3 - t2, cold_start_s=cold,
        bare=bare, predict=predict, overhead=predict.p50 / bare.p50 - 1.0, images_per_s=1e3 / predict.mean,
        rss_after_load_mb=rss_after_load, peak_rss_mb=status_mb("VmHWM"), predict_file=file_latency,
        concurrency=concurrency,
        machine={"platform": platform.platform(), "machine": platform.machine(), "python": sys.version.split()[0],
                 "cpus": str(os.cpu_count()), "numpy": np.__version__},
    )


def format_result(r: BenchResult) -> str:
    """A short human-readable report."""
    def ms(x: Latency) -> str:
        return f"p50 {x.p50:8.2f} ms   p90 {x.p90:8.2f} ms"

    def opt(v: float | None, unit: str, scale: float = 1.0) -> str:
        return "n/a" if v is None else f"{v * scale:.1f} {unit}"

    tflite = "" if r.backend == "onnxruntime" else \
        f"{r.kernels} kernels, {r.interpreters} interpreter{'s' if r.interpreters > 1 else ''}, "
    size = f"{r.image_size}x{r.image_size}"
    lines = [f"{r.model}  ({r.backend} {r.backend_version}, {size}, {r.threads} threads, {tflite}{r.machine.get('machine', '')})",
             f"  import backend     {r.import_s * 1e3:9.1f} ms",
             f"  load model         {r.load_s * 1e3:9.1f} ms   (of which {r.digest_s * 1e3:.1f} ms checking its embedded digest)",
             f"  first inference    {r.first_inference_s * 1e3:9.1f} ms",
             f"  cold start         {opt(r.cold_start_s, 'ms', 1e3):>12}   (process start to first answer)",
             f"  bare engine call   {ms(r.bare)}",
             f"  predict (array)    {ms(r.predict)}   overhead {r.overhead * 100:+.1f}% at p50",
             f"  images per second  {r.images_per_s:9.1f}   (one caller)",
             f"  RSS after load     {opt(r.rss_after_load_mb, 'MB'):>12}   peak {opt(r.peak_rss_mb, 'MB')}"]
    if r.predict_file:
        lines.insert(7, f"  predict (file)     {ms(r.predict_file)}   (decode and resize included)")
    if r.concurrency:
        c = r.concurrency
        lines.append(f"  {c['callers']} callers          {c['concurrent_images_per_s']:9.1f} images/s vs serial "
                     f"{c['serial_images_per_s']:.1f} (x{c['speedup']:.2f}); answers equal to serial: "
                     f"{'yes' if c['equal_to_serial'] else 'NO, ' + str(c['mismatches']) + ' differ'}")
    return "\n".join(lines)
