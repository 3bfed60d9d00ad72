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

from runtime.fileio import atomic_write_json, atomic_write_text, staged_output_dir

from .config import CONFIG_NAME
from .formats import SAVED_MODEL

log = logging.getLogger(__name__)
ONNX_FP32 = "model_fp32.onnx"


@dataclass(frozen=True)
class Goal:
    """One ratio the product promises: ``numerator / denominator <= bound``."""

    kind: str  # "latency" (p50 at the widest thread count) or "size"
    numerator: str
    denominator: str
    ratio: float
    bound: float | None  # None: reported for information (e.g. a preset made for another CPU)
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.bound is None else self.ratio <= self.bound

    def line(self) -> str:
        verdict = "" if self.bound is None else f" (goal <= {self.bound}: {'meets' if self.met else 'MISSES'})"
        note = f" ({self.note})" if self.note else ""
        return f"{self.kind} {self.numerator} / {self.denominator} = {self.ratio:.3f}{verdict}{note}"


def widest_latency(row: dict[str, Any]) -> dict[str, float] | None:
    """Batch-1 latency at the largest thread count measured."""
    latency = row.get("latency") or {}
    return latency[max(latency, key=int)] if latency else None


def goals(formats: dict[str, dict[str, Any]]) -> list[Goal]:
    """The product's performance goals, for whichever formats are present and measured.

    TFLite int8 <= 0.33 x the SavedModel's latency; ONNX int8 <= 0.45 x ONNX fp32's, for the
    preset made for this CPU family; every int8 file <= 26% of the ONNX fp32 file.
    """
    out = []
    ok = {n: r for n, r in formats.items() if r.get("status") == "ok"}
    for name, row in ok.items():
        if row["precision"] != "int8":
            continue
        counterpart = row.get("float_counterpart")
        mine, theirs = widest_latency(row), widest_latency(ok.get(counterpart, {})) if counterpart in ok else None
        if mine and theirs:
            bound: float | None = 0.33 if row["kind"] == "tflite" else 0.45
            note = ""
            if not row.get("suits_this_machine", True):
                bound, note = None, f"the {row['target']} preset is made for the other CPU family; not a goal here"
            out.append(Goal("latency", name, counterpart, mine["p50_ms"] / theirs["p50_ms"], bound, note))
        if ONNX_FP32 in ok:
            out.append(Goal("size", name, ONNX_FP32, row["bytes"] / ok[ONNX_FP32]["bytes"], 0.26))
    return out


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _delta(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine and command, speed and size, goals, accuracy per operating point."""
    machine, ev, card = report["machine"], report["evaluation"], report["model_card"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v != "not installed")
    size = card["image_size"]
    formats = report["formats"]
    threads = sorted({int(t) for r in formats.values() for t in r.get("latency", {})})
    lines = [f"# Benchmark of `{Path(card['path']).parent}`", ""] + ([f"**{report['note']}**", ""] if report.get("note") else []) + [
             f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['machine']} ({machine['system']})",
             f"- Versions: {versions}",
             f"- Command: `{report['command'] or 'run_benchmarks()'}`",
             (f"- Evaluation: the `{ev['split']}` split of `{ev['source']}`, {ev['n']} images ({ev['positives']} positive), "
              f"resized to {size}x{size}; every format against the float SavedModel"),
             (f"- Each format ran in its own process per thread count, after {report['config']['warmup']} warm-up calls; "
              f"latency over {report['config']['runs']} batch-1 calls"), ""]
    head = ["format", "what", "engine", "MB", "load s"] + [f"p50 / p90 ms, {t} thread{'s' if t > 1 else ''}" for t in threads] + \
        [f"img/s, batch {report['config']['throughput_batch']}", "peak RSS MB, batch 1 / batch", "ROC AUC", "delta AUC"]
    lines += ["## Speed and size", "", "| " + " | ".join(head) + " |", "| --- | --- | --- |" + " ---: |" * (len(head) - 3)]
    for name, r in formats.items():
        if r["status"] != "ok":
            lines.append(f"| `{name}` | {r['description']} | **failed**: {r['error']} |" + " |" * (len(head) - 3))
            continue
        lat = [f"{r['latency'][str(t)]['p50_ms']:.2f} / {r['latency'][str(t)]['p90_ms']:.2f}" if str(t) in r["latency"] else "-"
               for t in threads]
        acc = r.get("accuracy", {})
        auc = acc.get("auc", {})
        lines.append("| " + " | ".join([f"`{name}`", r["description"], r.get("engine") or "-", f"{r['bytes'] / 1e6:.1f}",
                                         _f(r.get("load_s"), ".2f"), *lat, _f(r.get("throughput_images_per_s"), ".1f"),
                                         f"{_f(r.get('peak_rss_mb'), '.0f')} / {_f(r.get('peak_rss_batch_mb'), '.0f')}",
                                         _f(auc.get("artifact"), ".4f"),
                                         _delta(acc.get("delta_auc")) if name != SAVED_MODEL else "-"]) + " |")
    goal_lines = [g.line() for g in goals(formats)]
    if goal_lines:
        lines += ["", f"## Goals (ratios within this run, p50 at {threads[-1] if threads else '?'} threads)", ""]
        if size != 299:
            lines += [f"The goals are set for 299x299, the product's input size; at {size}x{size} they are indicative.", ""]
        lines += [f"- {g}" for g in goal_lines]
    limits = ev.get("drift_limits")
    judged = {n: r["drift_failures"] for n, r in formats.items() if "drift_failures" in r}
    if judged and limits:
        bounds = ", ".join(f"{k} {'>=' if k == 'agreement' else '<='} {v}" for k, v in limits.items())
        rule = ("flagged when the 95% interval of a change lies wholly beyond them; showing that it lies within them "
                "is the export's gate, on more images" if ev.get("gate", "noninferiority") == "noninferiority"
                else "the observed changes must lie within them")
        lines += ["", f"## Drift against the float SavedModel ({ev['split']}; limits: {bounds}; {rule})", ""]
        lines += [f"- `{n}`: " + ("within the limits" if not f else "OUTSIDE: " + "; ".join(f)) for n, f in judged.items()]
    notes = []
    if SAVED_MODEL in formats and formats[SAVED_MODEL].get("bytes"):
        notes.append("The SavedModel's size is its whole directory, and Keras 3's `model.export` writes every variable "
                     "twice, so it is about twice the float weights (compare `model_fp32.onnx`).")
    if any(r.get("kind") == "tflite" for r in formats.values()):
        notes.append("TFLite graphs are converted for batch 1, so its batch throughput is sequential single-image calls.")
    if notes:
        lines += ["", *notes]
    points = [p["name"] for p in card["operating_points"]]
    lines += ["", f"## Accuracy at the model card's operating points ({ev['split']}, change against the float SavedModel)", "",
              "Rates with 95% Wilson intervals; changes are paired (artifact minus float, image by image) with 95% Newcombe "
              "intervals and the exact McNemar p of the flipped decisions; agreement with its Wilson interval. "
              + _one_image_line(formats), "",
              "| format | operating point | threshold p | sensitivity | change | specificity | change | PPV / NPV | agreement |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in formats.items():
        rows = (r.get("accuracy") or {}).get("operating_points")
        if not rows:
            continue
        summary = (r.get("accuracy") or {}).get("artifact") or {}
        for point in points:
            p = rows[point]
            art, full = p["artifact"], summary.get(point) or {}
            lines.append(f"| `{name}` | {point} | {p['threshold']:.4f} | {_rate(art['sensitivity'], full, 'sensitivity')} | "
                         f"{_change(p, 'sensitivity')} | {_rate(art['specificity'], full, 'specificity')} | "
                         f"{_change(p, 'specificity')} | {_predictive(full)} | {_agreement(p)} |")
    if report.get("plots"):
        lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in report["plots"])]
    return "\n".join(lines) + "\n"


def _one_image_line(formats: dict[str, Any]) -> str:
    one = next((r["accuracy"].get("one_image") for r in formats.values() if (r.get("accuracy") or {}).get("one_image")), None)
    if not one:
        return ""
    return (f"One image moves sensitivity by {one['sensitivity']:.4f}, specificity by {one['specificity']:.4f} and "
            f"agreement by {one['accuracy']:.4f} on this split.")


def _rate(value: float, full: dict[str, Any], metric: str) -> str:
    iv = (full.get("intervals") or {}).get(metric)
    return f"{value:.4f}" + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")


def _change(p: dict[str, Any], metric: str) -> str:
    c = p.get(f"{metric}_change")
    if not c:
        return _delta(p[f"delta_{metric}"])
    return f"{_delta(c['value'])} [{c['low']:+.3f}, {c['high']:+.3f}] (-{c['lost']}/+{c['gained']}, p={c['mcnemar_p']:.2g})"


def _predictive(full: dict[str, Any]) -> str:
    pv = full.get("at_prevalence")
    if not pv:
        return "-"
    return (f"{pv['ppv']['value']:.3f} [{pv['ppv']['low']:.3f}, {pv['ppv']['high']:.3f}] / "
            f"{pv['npv']['value']:.3f} [{pv['npv']['low']:.3f}, {pv['npv']['high']:.3f}] at {pv['prevalence']:.3g}")


def _agreement(p: dict[str, Any]) -> str:
    iv = p.get("agreement_interval")
    return f"{p['agreement']:.4f}" + (f" [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "")


def plot(report: dict[str, Any], directory: Path) -> list[str]:
    """ROC curves overlaid, latency bars and size bars; [] (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plots (pip install matplotlib, or the [all] extra)")
        return []
    ok = {n: r for n, r in report["formats"].items() if r["status"] == "ok"}
    written = []
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, r in ok.items():
        if "roc" in r:
            ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], label=f"{name} (AUC {r['accuracy']['auc']['artifact']:.4f})",
                    lw=2.5 if name == SAVED_MODEL else 1.2, ls="-" if name == SAVED_MODEL else "--")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, {report['evaluation']['split']} split")
    ax.legend(loc="lower right", fontsize=8)
    written.append(_save(fig, directory / "roc.png"))
    threads = sorted({int(t) for r in ok.values() for t in r["latency"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(threads), 1)
    for i, t in enumerate(threads):
        values = [r["latency"].get(str(t), {}).get("p50_ms", 0.0) for r in ok.values()]
        ax.bar([k + i * width for k in range(len(ok))], values, width, label=f"{t} thread{'s' if t > 1 else ''}")
    ax.set_xticks([k + width * (len(threads) - 1) / 2 for k in range(len(ok))], list(ok), rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="p50 latency, batch 1 (ms)", title="Latency")
    ax.legend()
    written.append(_save(fig, directory / "latency.png"))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(list(ok), [r["bytes"] / 1e6 for r in ok.values()])
    ax.set_xticks(range(len(ok)), list(ok), rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="MB on disk", title="Size")
    written.append(_save(fig, directory / "size.png"))
    plt.close("all")
    return written


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def write_report(report: Any, out: Path, overwrite: bool, plots: bool) -> None:
    """Write everything into a staged directory and publish it whole (a killed run leaves the old report)."""
    with staged_output_dir(out, overwrite) as stage:
        data = report.to_dict()
        if plots:
            report.plots = plot(data, stage)
            data["plots"] = report.plots
        atomic_write_json(stage / CONFIG_NAME, report.config)
        atomic_write_json(stage / "benchmark.json", data)
        atomic_write_text(stage / "benchmark.md", markdown(data))
