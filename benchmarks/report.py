"""The benchmark report: one Markdown file for people, one JSON file for machines, PNG plots.

Every ratio in the report compares two formats measured in the same run on the same machine,
which is the only comparison a noisy machine supports. The performance goals are printed with
their verdicts; nothing here fails a run because of them (``pytest benchmarks/`` checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.report import PairedChange, PointChanges
from runtime.evaluation import PointSummary, predictive_value_text
from runtime.fileio import atomic_write_json, atomic_write_text, staged_output_dir
from runtime.stats import Interval

from .config import CONFIG_NAME
from .formats import SAVED_MODEL
from .results import SLOWER_MARGIN, BenchmarkReport, EvaluationRecord, FormatResult

log = logging.getLogger(__name__)
ONNX_FP32 = "model_fp32.onnx"


@dataclass(frozen=True)
class Goal:
    """One ratio the product promises: ``numerator / denominator <= bound``; a latency goal carries its interval."""

    kind: str  # "latency" (p50 at the widest thread count) or "size"
    numerator: str
    denominator: str
    ratio: float
    bound: float
    interval: Interval | None = None  # latency: the ratio's 95% interval (runtime.stats.latency_ratio)

    @property
    def met(self) -> bool:
        return self.ratio <= self.bound

    def line(self) -> str:
        iv = "" if self.interval is None else f" [{self.interval.low:.3f}, {self.interval.high:.3f}]"
        return (f"{self.kind} {self.numerator} / {self.denominator} = {self.ratio:.3f}{iv} "
                f"(goal <= {self.bound}: {'meets' if self.met else 'MISSES'})")


LATENCY_GOALS = {"tflite": 0.33, "onnx": 0.45}  # int8 p50 over its float counterpart's, at every core
SIZE_GOAL = 0.26  # every int8 file over the ONNX fp32 file


def goals(formats: dict[str, FormatResult]) -> list[Goal]:
    """The product's performance goals, for whichever formats are present and measured.

    TFLite int8 <= 0.33 x the SavedModel's latency; ONNX int8 <= 0.45 x ONNX fp32's; every int8
    file <= 26% of the ONNX fp32 file.
    """
    out = []
    fp32 = formats.get(ONNX_FP32)
    for name, row in formats.items():
        if not (row.ok and row.int8):
            continue
        if row.speed is not None:
            r = row.speed.latency_ratio
            out.append(Goal("latency", name, row.speed.counterpart, r.value, LATENCY_GOALS[row.kind], r))
        if fp32 is not None and fp32.ok and row.bytes and fp32.bytes:
            out.append(Goal("size", name, ONNX_FP32, row.bytes / fp32.bytes, SIZE_GOAL))
    return out


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _delta(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def markdown(report: BenchmarkReport) -> str:
    """The report as Markdown: machine and command, speed and size, goals, accuracy per operating point."""
    machine, ev, model, cfg = report.machine, report.evaluation, report.model, report.config
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v != "not installed")
    size = model.image_size
    formats = report.formats
    threads = sorted({t for r in formats.values() for t in r.latency})
    lines = [f"# Benchmark of `{Path(model.card_path).parent}`", ""] + ([f"**{report.note}**", ""] if report.note else []) + [
             f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['machine']} ({machine['system']})",
             f"- Versions: {versions}",
             f"- Command: `{report.command or 'run_benchmarks()'}`",
             (f"- Evaluation: the `{ev.split}` split of `{ev.source}`, {ev.n} images ({ev.positives} positive), "
              f"resized to {size}x{size}; every format against the float SavedModel"),
             (f"- Each format ran in its own process per thread count, after {cfg.warmup} warm-up calls; "
              f"latency over {cfg.runs} batch-1 calls"), ""]
    head = ["format", "what", "engine", "MB", "load s"] + [f"p50 / p90 ms, {t} thread{'s' if t > 1 else ''}" for t in threads] + \
        [f"img/s, batch {cfg.throughput_batch}", "peak RSS MB, batch 1 / batch", "ROC AUC", "delta AUC"]
    lines += ["## Speed and size", "", "| " + " | ".join(head) + " |", "| --- | --- | --- |" + " ---: |" * (len(head) - 3)]
    for name, r in formats.items():
        if not r.ok:
            lines.append(f"| `{name}` | {r.description} | **failed**: {r.error} |" + " |" * (len(head) - 3))
            continue
        lat = [f"{r.latency[t].p50:.2f} / {r.latency[t].p90:.2f}" if t in r.latency else "-" for t in threads]
        lines.append("| " + " | ".join([f"`{name}`", r.description, r.engine or "-", _f(None if r.bytes is None else r.bytes / 1e6, ".1f"),
                                         _f(r.load_s, ".2f"), *lat, _f(r.throughput_images_per_s, ".1f"),
                                         f"{_f(r.peak_rss_mb, '.0f')} / {_f(r.peak_rss_batch_mb, '.0f')}",
                                         _f(None if r.summary is None else r.summary.auc, ".4f"),
                                         _delta(None if r.comparison is None else r.comparison.delta_auc)]) + " |")
    lines += _speed_lines(formats, threads, size)
    lines += _drift_lines(formats, ev)
    notes = []
    if SAVED_MODEL in formats and formats[SAVED_MODEL].bytes:
        notes.append("The SavedModel's size is its whole directory, and Keras 3's `model.export` writes every variable "
                     "twice, so it is about twice the float weights (compare `model_fp32.onnx`).")
    if any(r.kind == "tflite" for r in formats.values()):
        notes.append("TFLite graphs are converted for batch 1, so its batch throughput is sequential single-image calls.")
    if notes:
        lines += ["", *notes]
    lines += _accuracy_lines(formats, [p.name for p in model.operating_points], ev.split)
    if report.plots:
        lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report.plots)]
    return "\n".join(lines) + "\n"


def _speed_lines(formats: dict[str, FormatResult], threads: list[int], size: int) -> list[str]:
    """Each cheaper format against the float model it replaces, with the interval, said plainly; then the goals."""
    compared = {name: r.speed for name, r in formats.items() if r.ok and r.speed is not None}
    lines: list[str] = []
    if compared:
        heading = (f"## Speed against the float model each replaces (ratios within this run; 95% bootstrap intervals over "
                   f"the batch-1 calls; flagged slower only when the whole interval is above {1 + SLOWER_MARGIN:.2f})")
        lines += ["", heading, ""]
        lines += [f"- `{name}`: {speed.line()}" for name, speed in compared.items()]
        plain = [name for name, speed in compared.items() if formats[name].int8 and speed.verdict != "faster"]
        if plain:
            lines += ["", "Not shown faster than its float model on this machine: " + ", ".join(f"`{n}`" for n in plain)
                      + ". Keep the float model here, or measure on the device that will run it."]
    goal_lines = [g.line() for g in goals(formats)]
    if goal_lines:
        lines += ["", f"## Goals (ratios within this run, p50 at {threads[-1] if threads else '?'} threads)", ""]
        if size != 299:
            lines += [f"The goals are set for 299x299, the product's input size; at {size}x{size} they are indicative.", ""]
        lines += [f"- {g}" for g in goal_lines]
    return lines


def _drift_lines(formats: dict[str, FormatResult], ev: EvaluationRecord) -> list[str]:
    judged = {n: r.drift_failures for n, r in formats.items() if r.drift_failures is not None}
    if not judged or ev.drift_limits is None:
        return []
    bounds = ", ".join(f"{k} {'>=' if k == 'agreement' else '<='} {v}" for k, v in ev.drift_limits.to_dict().items())
    rule = ("flagged when the 95% interval of a change lies wholly beyond them; showing that it lies within them "
            "is the export's gate, on more images" if ev.flag == "inferiority" else "the observed changes must lie within them")
    return ["", f"## Drift against the float SavedModel ({ev.split}; limits: {bounds}; {rule})", ""] + \
        [f"- `{n}`: " + ("within the limits" if not f else "OUTSIDE: " + "; ".join(f)) for n, f in judged.items()]


def _accuracy_lines(formats: dict[str, FormatResult], points: list[str], split: str) -> list[str]:
    lines = ["", f"## Accuracy at the model card's operating points ({split}, change against the float SavedModel)", "",
             "Rates with 95% Wilson intervals; changes are paired (artifact minus float, image by image) with 95% Newcombe "
             "intervals and the exact McNemar p of the flipped decisions; agreement with its Wilson interval. "
             + _one_image_line(formats), "",
             "| format | operating point | threshold p | sensitivity | change | specificity | change | PPV / NPV | agreement |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in formats.items():
        if r.comparison is None or r.summary is None:
            continue
        for point in points:
            p, own = r.comparison.points[point], r.summary.points[point]
            lines.append(f"| `{name}` | {point} | {p.threshold:.4f} | {_rate(own, 'sensitivity')} | "
                         f"{_change(p.change('sensitivity'))} | {_rate(own, 'specificity')} | "
                         f"{_change(p.change('specificity'))} | {_predictive(own)} | {_agreement(p)} |")
    return lines


def _one_image_line(formats: dict[str, FormatResult]) -> str:
    one = next((r.summary.one_image for r in formats.values() if r.summary is not None), None)
    if one is None:
        return ""
    return (f"One image moves sensitivity by {one.sensitivity:.4f}, specificity by {one.specificity:.4f} and "
            f"agreement by {one.accuracy:.4f} on this split.")


def _rate(row: PointSummary, rate: str) -> str:
    iv = row.interval(rate)
    return f"{getattr(row, rate):.4f} [{iv.low:.3f}, {iv.high:.3f}]"


def _change(c: PairedChange) -> str:
    return f"{_delta(c.value)} [{c.low:+.3f}, {c.high:+.3f}] (-{c.lost}/+{c.gained}, p={c.mcnemar_p:.2g})"


def _predictive(row: PointSummary) -> str:
    pv = row.at_prevalence
    return f"{predictive_value_text(row, 'ppv', 3)} / {predictive_value_text(row, 'npv', 3)} at {pv.prevalence:.3g}"


def _agreement(p: PointChanges) -> str:
    iv = p.agreement_interval
    return f"{p.agreement:.4f} [{iv.low:.4f}, {iv.high:.4f}]"


def plot(report: BenchmarkReport, directory: Path) -> list[str]:
    """ROC curves overlaid, latency bars and size bars; [] (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib, or the [all] extra)")
        return []
    ok = {n: r for n, r in report.formats.items() if r.ok}
    written = []
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, r in ok.items():
        if r.roc is not None and r.summary is not None:
            ax.plot(r.roc["fpr"], r.roc["tpr"], label=f"{name} (AUC {r.summary.auc:.4f})",
                    lw=2.5 if name == SAVED_MODEL else 1.2, ls="-" if name == SAVED_MODEL else "--")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, {report.evaluation.split} split")
    ax.legend(loc="lower right", fontsize=8)
    written.append(_save(fig, directory / "roc.png"))
    threads = sorted({t for r in ok.values() for t in r.latency})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(threads), 1)
    for i, t in enumerate(threads):
        values = [r.latency[t].p50 if t in r.latency else 0.0 for r in ok.values()]
        ax.bar([k + i * width for k in range(len(ok))], values, width, label=f"{t} thread{'s' if t > 1 else ''}")
    ax.set_xticks([k + width * (len(threads) - 1) / 2 for k in range(len(ok))], list(ok), rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="p50 latency, batch 1 (ms)", title="Latency")
    ax.legend()
    written.append(_save(fig, directory / "latency.png"))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(list(ok), [(r.bytes or 0) / 1e6 for r in ok.values()])
    ax.set_xticks(range(len(ok)), list(ok), rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="MB on disk", title="Size")
    written.append(_save(fig, directory / "size.png"))
    plt.close("all")
    return written


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def write_report(report: BenchmarkReport, out: Path, overwrite: bool, plots: bool) -> None:
    """Write everything into a staged directory and publish it whole (a killed run leaves the old report)."""
    with staged_output_dir(out, overwrite) as stage:
        if plots:
            report.plots = plot(report, stage)
        atomic_write_json(stage / CONFIG_NAME, report.config.to_dict())
        atomic_write_json(stage / "benchmark.json", report.to_dict())
        atomic_write_text(stage / "benchmark.md", markdown(report))
