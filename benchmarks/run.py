"""``run_benchmarks``: every format of a model directory, measured side by side, compared with the float model.

The parent process checks the inputs (in a second, before anything loads), prepares the
evaluation images once, then starts one worker process per format and thread count
(:mod:`benchmarks.worker`), and finally scores every format's logits against the SavedModel's
with the same comparison the export's verification uses (:func:`export.verify.compare_split`), so a
drift in this table means what it means in the export report.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.config import DriftLimits
from export.report import SplitComparison
from export.source import ModelSource, open_model_dir, open_training_data
from export.verify import compare_split, drift_failures, shown_beyond_failures
from runtime.datasets import (
    Split,
    binary_labels,
    check_split_pixels,
    iter_pixel_batches,
)
from runtime.errors import DataError, ProcessError
from runtime.evaluation import split_summary
from runtime.fileio import atomic_write_text, check_output_dir
from runtime.fresh_process import run_module
from runtime.metrics import roc_curve, sigmoid
from runtime.stats import latency_ratio, process_latency_ratio
from runtime.timing import Latency

from .config import BenchmarkConfig
from .formats import SAVED_MODEL, Format, discover_formats, select_formats
from .results import (
    BenchmarkReport,
    EvaluationRecord,
    FormatResult,
    ModelRecord,
    SpeedComparison,
)
from .worker import Job, Measurement

log = logging.getLogger(__name__)
_VERSION_PACKAGES = ("inception-edge", "tensorflow", "onnxruntime", "ai-edge-litert", "tflite-runtime", "numpy")


@dataclass
class Evaluation:
    """The labelled images every format is scored on, prepared once as the trainer prepared them."""

    split: str
    labels01: np.ndarray
    pixels_path: Path
    source: str


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_record() -> dict[str, Any]:
    from train.card import package_versions

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(), "system": platform.platform(),
            "versions": package_versions(_VERSION_PACKAGES)}


def _check_split(split: Split, source: ModelSource) -> np.ndarray:
    """The split's 0/1 labels, after checking its labels and image size fit the model."""
    card = source.card
    labels01 = binary_labels(split, source.card.positive_label)
    expected = {card.positive_label} | ({card.negative_label} if card.negative_label is not None else set())
    found = {int(v) for v in np.unique(split.labels)}
    if found != expected and len(expected) == 2:
        raise DataError(f"{split.source}: labels {sorted(found)}; the model was trained on labels {sorted(expected)} "
                        f"(positive {card.positive_label})")
    shape = tuple(split.images.shape[1:3])
    trained_on = card.data.image_shape
    if trained_on and tuple(trained_on[:2]) != shape:
        raise DataError(f"{split.source}: images are {shape[0]}x{shape[1]}, the model was trained on "
                        f"{trained_on[0]}x{trained_on[1]} images resized to {source.card.image_size}; expected {trained_on[0]}x{trained_on[1]}")
    if not source.train_config.resize and shape != (source.card.image_size, source.card.image_size):
        raise DataError(f"{split.source}: images are {shape[0]}x{shape[1]}; the model takes {source.card.image_size}x{source.card.image_size} "
                        "without resizing")
    check_split_pixels(split, source.pixel_range)
    return labels01


def prepare_evaluation(cfg: BenchmarkConfig, source: ModelSource, work: Path) -> Evaluation:
    dataset = open_training_data(source, cfg.data)
    split = dataset.split(cfg.split)
    if split is None:
        raise DataError(f"{dataset.path}: no {cfg.split!r} split; expected one of {', '.join(dataset.splits)}")
    labels01 = _check_split(split, source)
    batches = iter_pixel_batches(split, np.arange(len(split)), 64, source.card.image_size, source.pixel_range, keep_uint8=True)
    pixels = np.concatenate(list(batches))
    path = work / "pixels.npy"
    np.save(path, pixels, allow_pickle=False)
    return Evaluation(cfg.split, labels01, path, split.source)


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _run_worker(job: Job, work: Path, timeout_s: float) -> tuple[dict[str, Any] | None, str | None]:
    """Run one worker in a fresh process; (result, None) or (None, the reason it failed).

    A failure is a reason, not an exception: one format that cannot run becomes a failed row
    and the other formats are still measured.
    """
    job_path = work / (Path(job.result).stem + ".job.json")
    atomic_write_text(job_path, job.to_json())
    try:
        result = run_module("benchmarks.worker", [str(job_path)], timeout_s=timeout_s, result_file=job.result,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}, what=f"worker for {job.path}")
    except ProcessError as exc:
        if exc.timed_out:
            return None, f"timed out after {timeout_s:.0f} s"
        return None, f"worker exited with {exc.status}: {exc.reason}"
    return result, None


def _measure(formats: dict[str, Format], cfg: BenchmarkConfig, size: int, evaluation: Evaluation, work: Path
             ) -> tuple[dict[str, FormatResult], dict[str, np.ndarray]]:
    """Time every format at every thread count, one fresh process each, and at the widest (largest) count in
    ``cfg.rounds`` processes, the formats taking turns so that drift of the machine falls on all alike; the first
    widest process also evaluates. Returns the rows and each measured format's logits on the evaluation images."""
    rows = {name: FormatResult(name, fmt.description, fmt.kind, fmt.precision, str(fmt.path), error=fmt.error)
            for name, fmt in formats.items()}
    logits: dict[str, np.ndarray] = {}
    counts = cfg.thread_counts()
    widest = max(counts)  # --threads 4,1 lists the widest first: the largest count, not the last, is all-cores
    rounds: dict[str, list[Latency]] = {name: [] for name in formats}
    for threads, round_ in [(t, 0) for t in counts if t != widest] + [(widest, r) for r in range(cfg.rounds)]:
        for name, fmt in formats.items():
            row = rows[name]
            if row.error is not None:
                continue
            evaluate = threads == widest and round_ == 0
            stem = f"{name.replace('.', '_')}_t{threads}_r{round_}"
            job = Job(path=str(fmt.path), kind=fmt.kind, image_size=size, threads=threads, runs=cfg.runs, warmup=cfg.warmup,
                      pixels=str(evaluation.pixels_path), result=str(work / f"{stem}.json"),
                      throughput_batch=cfg.throughput_batch if evaluate else 0, throughput_runs=cfg.throughput_runs,
                      logits=str(work / f"{stem}.logits.npy") if evaluate else None)
            log.info("%s: %d thread%s%s", name, threads, "s" if threads > 1 else "",
                     f", process {round_ + 1} of {cfg.rounds}" if threads == widest else "")
            result, error = _run_worker(job, work, cfg.timeout_s)
            if error or result is None:
                row.error = error
                continue
            measured = Measurement.from_dict(result)
            if threads != widest:
                row.latency[threads] = measured.latency
                continue
            rounds[name].append(measured.latency)
            if evaluate:
                row.engine, row.load_s, row.first_inference_s = measured.engine, measured.load_s, measured.first_inference_s
                row.rss_after_load_mb, row.peak_rss_mb = measured.rss_after_load_mb, measured.peak_rss_mb
                row.peak_rss_batch_mb, row.throughput_batch = measured.peak_rss_batch_mb, measured.throughput_batch
                row.throughput_images_per_s = measured.throughput_images_per_s
                logits[name] = np.load(job.logits, allow_pickle=False) if job.logits else None
    for name, row in rows.items():
        if row.error is None:
            row.status = "ok"
            row.latency[widest] = Latency.of([ms for lat in rounds[name] for ms in lat.samples_ms])  # every call pooled
            row.process_p50_ms = tuple(lat.p50 for lat in rounds[name])
            row.latency = dict(sorted(row.latency.items()))
        else:
            logits.pop(name, None)
    return rows, logits


def _score(rows: dict[str, FormatResult], logits: dict[str, np.ndarray], formats: dict[str, Format],
           evaluation: Evaluation, thresholds: dict[str, float], limits: DriftLimits | None, flag: str,
           prevalence: float | None) -> None:
    """Accuracy, drift and speed of every measured format against the float model it replaces, in place."""
    reference = logits.get(SAVED_MODEL)
    for name, row in rows.items():
        own = logits.get(name)
        if own is None:
            continue
        row.summary = split_summary(evaluation.labels01, own, thresholds, prevalence)
        if reference is not None and name != SAVED_MODEL:
            row.comparison = compare_split(evaluation.labels01, reference, own, thresholds, prevalence)
            if limits is not None:
                row.drift_failures = split_failures(flag, evaluation.split, row.comparison, limits)
        fpr, tpr, _ = roc_curve(evaluation.labels01, sigmoid(own))
        row.roc = {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}
        if name != SAVED_MODEL:
            row.speed = speed_against(row, rows.get(formats[name].float_counterpart(formats)))


def speed_against(row: FormatResult, counterpart: FormatResult | None) -> SpeedComparison | None:
    """``row``'s batch-1 latency over ``counterpart``'s at the widest thread count both ran, with its interval, and
    the ratio of their batch throughputs; None when the counterpart did not run."""
    if counterpart is None or not counterpart.ok or not row.latency or not counterpart.latency:
        return None
    threads = max(set(row.latency) & set(counterpart.latency), default=None)
    if threads is None:
        return None
    widest = max(row.latency)
    if threads == widest and len(row.process_p50_ms) >= 2 and len(counterpart.process_p50_ms) >= 2:
        ratio = process_latency_ratio(row.process_p50_ms, counterpart.process_p50_ms)
    else:  # one process each: calls are all there is to compare, and the interval is too narrow for processes
        ratio = latency_ratio(row.latency[threads].samples_ms, counterpart.latency[threads].samples_ms)
    throughput = None
    if row.throughput_images_per_s and counterpart.throughput_images_per_s:
        throughput = row.throughput_images_per_s / counterpart.throughput_images_per_s
    return SpeedComparison(counterpart.name, threads, ratio, throughput)


def split_failures(flag: str, name: str, comparison: SplitComparison, limits: DriftLimits) -> list[str]:
    """One split's comparison as the benchmark flags it (``BenchmarkConfig.flag``): every observed change beyond a
    limit (``point``), or only what the split shows beyond one at 95% confidence (``inferiority``)."""
    if flag == "point":
        return drift_failures({name: comparison}, limits)
    return shown_beyond_failures(name, comparison, limits)


def run_benchmarks(cfg: BenchmarkConfig, command: str = "", note: str = "") -> BenchmarkReport:
    """Measure every selected format of ``cfg.model``; write the report (see :mod:`benchmarks.report`).

    ``command`` is recorded as what produced the report; ``note`` is printed above its tables.
    """
    from .report import write_report

    started = time.monotonic()
    source = open_model_dir(cfg.model)
    formats = select_formats(discover_formats(source.directory, source.card), cfg.formats or None, source.directory)
    check_output_dir(cfg.out_dir, cfg.overwrite)
    with tempfile.TemporaryDirectory(prefix="inception-edge-bench-") as tmp:
        work = Path(tmp)
        evaluation = prepare_evaluation(cfg, source, work)
        log.info("%d formats; %s split: %d images at %dx%d", len(formats), evaluation.split, evaluation.labels01.size,
                 source.card.image_size, source.card.image_size)
        rows, logits = _measure(formats, cfg, source.card.image_size, evaluation, work)
    limits = cfg.drift_limits()
    card = source.card
    _score(rows, logits, formats, evaluation, card.thresholds, limits, cfg.flag, cfg.prevalence)
    report = BenchmarkReport(
        config=cfg,
        model=ModelRecord(str(source.directory / "model_card.json"), card.image_size, card.class_names,
                          card.positive_label, card.operating_points, card.saved_model_sha256),
        evaluation=EvaluationRecord(evaluation.split, evaluation.source, int(evaluation.labels01.size),
                                    int(evaluation.labels01.sum()), limits, cfg.flag, cfg.prevalence),
        formats=rows, machine=machine_record(), command=command, seconds=time.monotonic() - started, note=note)
    write_report(report, cfg.out_dir, cfg.overwrite, cfg.plots)
    return report
