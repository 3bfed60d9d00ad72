"""``run_benchmarks``: every format of a model directory, measured side by side, compared with the float model.

The parent process checks the inputs (in a second, before anything loads), prepares the
evaluation images once, then starts one worker process per format and thread count
(:mod:`benchmarks.worker`), and finally scores every format's logits against the SavedModel's
with the same comparison the export's verification uses (:func:`export.verify.compare_split`), so a
drift in this table means what it means in the export report.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.source import ModelSource, open_model_dir, open_training_data
from export.verify import compare_split, split_failures
from runtime.datasets import (
    Split,
    binary_labels,
    check_split_pixels,
    iter_pixel_batches,
    load_dataset,
)
from runtime.errors import DataError
from runtime.fileio import check_output_dir
from runtime.metrics import roc_curve, sigmoid

from .config import BenchmarkConfig
from .formats import SAVED_MODEL, Format, discover_formats, select_formats
from .worker import Job

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
_VERSION_PACKAGES = ("inception-edge", "tensorflow", "onnxruntime", "ai-edge-litert", "tflite-runtime", "numpy")


@dataclass
class Evaluation:
    """The labelled images every format is scored on, prepared once as the trainer prepared them."""

    split: str
    labels01: np.ndarray
    pixels_path: Path
    source: str


@dataclass
class BenchmarkReport:
    """Everything measured, as written to ``benchmark.json``."""

    config: dict[str, Any]
    model_card: dict[str, Any]
    evaluation: dict[str, Any]
    formats: dict[str, dict[str, Any]]
    machine: dict[str, Any]
    command: str
    seconds: float = 0.0
    plots: list[str] = field(default_factory=list)
    note: str = ""  # shown above every table, e.g. that the data are synthetic

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "model_card": self.model_card, "evaluation": self.evaluation,
                "formats": self.formats, "machine": self.machine, "command": self.command,
                "seconds": round(self.seconds, 1), "plots": self.plots, "note": self.note}


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
    labels01 = binary_labels(split, source.positive_label)
    expected = {int(card["positive_label"])} | ({int(card["negative_label"])} if card.get("negative_label") is not None else set())
    found = {int(v) for v in np.unique(split.labels)}
    if found != expected and len(expected) == 2:
        raise DataError(f"{split.source}: labels {sorted(found)}; the model was trained on labels {sorted(expected)} "
                        f"(positive {card['positive_label']})")
    shape = tuple(split.images.shape[1:3])
    trained_on = card.get("data", {}).get("image_shape")
    if trained_on and tuple(trained_on[:2]) != shape:
        raise DataError(f"{split.source}: images are {shape[0]}x{shape[1]}, the model was trained on "
                        f"{trained_on[0]}x{trained_on[1]} images resized to {source.image_size}; expected {trained_on[0]}x{trained_on[1]}")
    if not source.train_config.resize and shape != (source.image_size, source.image_size):
        raise DataError(f"{split.source}: images are {shape[0]}x{shape[1]}; the model takes {source.image_size}x{source.image_size} "
                        "without resizing")
    check_split_pixels(split, source.pixel_range)
    return labels01


def prepare_evaluation(cfg: BenchmarkConfig, source: ModelSource, work: Path) -> Evaluation:
    dataset = load_dataset(cfg.data) if cfg.data else open_training_data(source, None)
    split = dataset.split(cfg.split)
    if split is None:
        raise DataError(f"{dataset.path}: no {cfg.split!r} split; expected one of {', '.join(dataset.splits)}")
    labels01 = _check_split(split, source)
    batches = iter_pixel_batches(split, np.arange(len(split)), 64, source.image_size, source.pixel_range, keep_uint8=True)
    pixels = np.concatenate(list(batches))
    path = work / "pixels.npy"
    np.save(path, pixels, allow_pickle=False)
    return Evaluation(cfg.split, labels01, path, split.source)


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _run_worker(job: Job, work: Path, timeout_s: float) -> tuple[dict[str, Any] | None, str | None]:
    """Run one worker; (result, None) or (None, the reason it failed)."""
    job_path = work / (Path(job.result).stem + ".job.json")
    job_path.write_text(job.to_json(), encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", str(job_path)], capture_output=True, text=True,
                              env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    if proc.returncode != 0 or not Path(job.result).is_file():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        return None, f"worker exited with {proc.returncode}: {reason.removeprefix('error: ')}"
    return json.loads(Path(job.result).read_text(encoding="utf-8")), None


def _measure(fmt: Format, cfg: BenchmarkConfig, size: int, evaluation: Evaluation, work: Path) -> dict[str, Any]:
    """Time ``fmt`` at every thread count (one process each); the widest (largest) one also evaluates."""
    row: dict[str, Any] = {"description": fmt.description, "kind": fmt.kind, "precision": fmt.precision, "target": fmt.target,
                           "path": str(fmt.path), "status": "failed", "error": fmt.error, "latency": {}}
    if fmt.error:
        return row
    row["bytes"] = _tree_bytes(fmt.path)
    counts = cfg.thread_counts()
    widest_count = max(counts)  # --threads 4,1 lists the widest first: the largest count, not the last, is all-cores
    for threads in counts:
        widest = threads == widest_count
        stem = f"{fmt.name.replace('.', '_')}_t{threads}"
        job = Job(path=str(fmt.path), kind=fmt.kind, image_size=size, threads=threads, runs=cfg.runs, warmup=cfg.warmup,
                  pixels=str(evaluation.pixels_path), result=str(work / f"{stem}.json"),
                  throughput_batch=cfg.throughput_batch if widest else 0, throughput_runs=cfg.throughput_runs,
                  logits=str(work / f"{stem}.logits.npy") if widest else None)
        log.info("%s: %d thread%s", fmt.name, threads, "s" if threads > 1 else "")
        result, error = _run_worker(job, work, cfg.timeout_s)
        if error:
            row["error"] = error
            return row
        row["latency"][str(threads)] = {k: result[k] for k in ("p50_ms", "p90_ms", "mean_ms", "runs")}
        if widest:
            row.update({k: result.get(k) for k in ("engine", "load_s", "first_inference_s", "rss_after_load_mb",
                                                   "peak_rss_mb", "peak_rss_batch_mb", "throughput_images_per_s", "throughput_batch")})
            row["logits"] = np.load(job.logits, allow_pickle=False)
    row["status"] = "ok"
    return row


def _score(rows: dict[str, dict[str, Any]], formats: dict[str, Format], evaluation: Evaluation,
           operating_points: list[dict[str, Any]], limits: Any, gate: str, prevalence: float | None) -> None:
    """Accuracy and drift of every measured format against the SavedModel, in place."""
    reference = rows[SAVED_MODEL].get("logits")
    for name, row in rows.items():
        logits = row.pop("logits", None)
        if logits is None:
            continue
        ref = reference if reference is not None else logits
        comparison = compare_split(evaluation.labels01, ref, logits, operating_points, prevalence)
        row["accuracy"] = comparison if reference is not None else {k: comparison[k] for k in ("n", "auc")}
        row["compared_with"] = SAVED_MODEL if reference is not None else None
        if reference is not None and name != SAVED_MODEL and limits is not None:
            row["drift_failures"] = split_failures(gate, evaluation.split, comparison, limits)
        counterpart = formats[name].float_counterpart(formats)
        row["float_counterpart"] = counterpart if name != SAVED_MODEL else None
        row["suits_this_machine"] = formats[name].suits_this_machine()
        fpr, tpr, _ = roc_curve(evaluation.labels01, sigmoid(logits))
        row["roc"] = {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}


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
                 source.image_size, source.image_size)
        rows = {name: _measure(fmt, cfg, source.image_size, evaluation, work) for name, fmt in formats.items()}
    limits = cfg.drift_limits()
    _score(rows, formats, evaluation, source.card["operating_points"], limits, cfg.gate, cfg.prevalence)
    card = source.card
    report = BenchmarkReport(
        config=cfg.to_dict(),
        model_card={"path": str(source.directory / "model_card.json"), "image_size": source.image_size,
                    "class_names": card["class_names"], "positive_label": card["positive_label"],
                    "operating_points": card["operating_points"], "saved_model_sha256": card.get("saved_model_sha256")},
        evaluation={"split": evaluation.split, "source": evaluation.source, "n": int(evaluation.labels01.size),
                    "positives": int(evaluation.labels01.sum()),
                    "drift_limits": None if limits is None else limits.to_dict(), "gate": cfg.gate,
                    "prevalence": cfg.prevalence},
        formats=rows, machine=machine_record(), command=command, seconds=time.monotonic() - started, note=note)
    write_report(report, cfg.out_dir, cfg.overwrite, cfg.plots)
    return report

