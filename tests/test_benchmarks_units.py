"""benchmarks/ without a trained model: discovery of formats, goals, the report, the config and bad input.

The measurements themselves run in ``pytest benchmarks/`` on a real model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_npz

from benchmarks.config import BenchmarkConfig
from benchmarks.formats import SAVED_MODEL, discover_formats, select_formats
from benchmarks.report import goals, markdown
from benchmarks.results import (
    BenchmarkReport,
    EvaluationRecord,
    FormatResult,
    ModelRecord,
)
from benchmarks.run import speed_against
from export.config import DriftLimits
from runtime.errors import ConfigError, ModelCardError
from runtime.metrics import OperatingPoint
from runtime.timing import Latency
from train.card import ModelCard


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_discovery_lists_artifacts_and_rejected_exports_as_failed(fake_model):
    model, _ = fake_model
    (model / "model_int8.onnx").write_bytes(b"garbage")
    (model / ".model_int8.tflite.tmp.123").write_bytes(b"partial")  # a killed export's leftover: never listed
    (model / "model_int8.tflite.rejected.json").write_text(json.dumps(
        _refused_sidecar(["val/youden agreement 0.9700 < 0.98", "test |delta AUC| 0.0200 > 0.01"])))
    (model / "model_int8_fallback.tflite.rejected.json").write_text("{not json")
    formats = discover_formats(model, ModelCard.load(model))
    assert list(formats) == [SAVED_MODEL, "model_int8.onnx", "model_int8.tflite", "model_int8_fallback.tflite"]
    assert formats["model_int8.tflite"].error == ("export rejected: val/youden agreement 0.9700 < 0.98 (+1 more); "
                                                  "see model_int8.tflite.rejected.json")
    assert str(formats["model_int8_fallback.tflite"].error).startswith(
        "export rejected; its report model_int8_fallback.tflite.rejected.json is unreadable")
    assert "model_int8.onnx" in formats["model_int8.onnx"].error
    with pytest.raises(ConfigError, match=r"--formats model_x\.onnx: not in .*expected some of saved_model, model_int8\.onnx"):
        select_formats(formats, ("model_x.onnx",), model)
    assert list(select_formats(formats, ("model_int8.onnx",), model)) == [SAVED_MODEL, "model_int8.onnx"]


def test_a_model_without_exports_is_refused(fake_model):
    model, _ = fake_model
    with pytest.raises(ModelCardError, match="no exported .tflite or .onnx files"):
        discover_formats(model, ModelCard.load(model))


def _refused_sidecar(failures: list[str]) -> dict:
    """A refused export's report as the exporters write it (NAME.rejected.json), with these failures."""
    from dataclasses import replace

    from export.config import TFLiteExportConfig
    from export.report import ImageUse
    from export.sidecar import Sidecar
    from export.splits import LabelledPixels
    from export.verify import verify_artifact
    from runtime.model_metadata import ArtifactInfo, ArtifactMetadata, InputSpec

    y = np.repeat([0, 1], 10)
    logits = np.where(y == 1, 1.0, -1.0)
    data = [LabelledPixels("val", np.zeros(0), y)]
    report = verify_artifact({"val": logits}, data, {"val": logits}, {"youden": 0.5}, DriftLimits(),
                             ImageUse((), ("val",), {"val": 20}))
    meta = ArtifactMetadata(75, ("normal", "pneumonia"), (OperatingPoint("youden", 0.5, 0.0, "youden"),), 1,
                            InputSpec("uint8"), ArtifactInfo("tflite", "int8", mode="int8"))
    return Sidecar("model_int8.tflite", "0" * 64, 1, meta, TFLiteExportConfig(model="m"),
                   replace(report, failures=tuple(failures))).to_dict()


def _comparison(delta: int = 0, seed: int = 0):
    """A SplitComparison of 100 images where the artifact loses ``delta`` positives, and the artifact's own summary."""
    from export.verify import compare_split

    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 50)
    reference = np.where(y == 1, 1.0, -1.0) + rng.uniform(-0.9, 0.9, 100)
    candidate = reference.copy()
    candidate[50:50 + delta] = -5.0
    comparison = compare_split(y, reference, candidate, {"youden": 0.5}, prevalence=0.1)
    return comparison, comparison.artifact_summary


def _row(name, kind, precision, p50, mb, delta=0) -> FormatResult:
    """A measured row: 30 batch-1 calls of exactly ``p50`` ms at 2 threads (twice that at 1 thread)."""
    comparison, summary = _comparison(delta)
    return FormatResult(name, f"{kind} {precision}", kind, precision, f"/m/{name}", status="ok", bytes=int(mb * 1e6),
                        latency={1: Latency.of([2 * p50] * 30), 2: Latency.of([p50] * 30)}, engine="x 1.0",
                        load_s=0.1, peak_rss_mb=100.0, throughput_images_per_s=1000 / p50, throughput_batch=32,
                        summary=summary, comparison=None if kind == "saved_model" else comparison)


def _report(**rows: FormatResult) -> BenchmarkReport:
    float_row = rows.get(SAVED_MODEL)
    for name, row in rows.items():  # each format against its float counterpart, as run_benchmarks scores it
        if name != SAVED_MODEL and row.ok:
            counterpart = rows.get("model_fp32.onnx") if row.kind == "onnx" and name != "model_fp32.onnx" else float_row
            row.speed = speed_against(row, counterpart)
    return BenchmarkReport(
        BenchmarkConfig(model="/m", warmup=5, runs=50, throughput_batch=32),
        ModelRecord("/m/model_card.json", 299, ("normal", "pneumonia"), 1, (OperatingPoint("youden", 0.5, 0.0, "youden"),), None),
        EvaluationRecord("test", "data.npz[test]", 100, 50, None, "inferiority", 0.1),
        dict(rows), {"cpu": "Test CPU", "cores": 2, "machine": "x86_64", "system": "Linux", "versions": {"numpy": "2.0"}},
        "python -m benchmarks --model /m")


def test_goals_compare_each_int8_file_with_the_float_model_it_replaces_with_the_ratios_interval():
    report = _report(saved_model=_row(SAVED_MODEL, "saved_model", "float32", 90.0, 177.0),
                     **{"model_int8.tflite": _row("model_int8.tflite", "tflite", "int8", 27.0, 22.2),
                        "model_fp32.onnx": _row("model_fp32.onnx", "onnx", "float32", 42.0, 87.1),
                        "model_int8.onnx": _row("model_int8.onnx", "onnx", "int8", 21.0, 22.1)})
    lines = [g.line() for g in goals(report.formats)]
    assert lines == [  # constant samples: every bootstrap resample has the same median, so the interval is the point
        "latency model_int8.tflite / saved_model = 0.300 [0.300, 0.300] (goal <= 0.33: meets)",
        "size model_int8.tflite / model_fp32.onnx = 0.255 (goal <= 0.26: meets)",
        "latency model_int8.onnx / model_fp32.onnx = 0.500 [0.500, 0.500] (goal <= 0.45: MISSES)",
        "size model_int8.onnx / model_fp32.onnx = 0.254 (goal <= 0.26: meets)",
    ]


def test_an_int8_file_is_flagged_slower_only_when_its_interval_lies_above_the_margin():
    """On a Xeon with AMX the 75x75 ONNX int8 file ran as fast as fp32 (p50 3.87 vs 3.87 ms): that is "not shown
    faster", reported plainly, not a failure at the noise floor; a real slowdown beyond the margin is flagged."""
    rng = np.random.default_rng(0)
    fp32 = _row("model_fp32.onnx", "onnx", "float32", 3.87, 87.1)
    fp32.latency[2] = Latency.of(rng.lognormal(np.log(3.87), 0.05, 30))
    same = _row("model_int8.onnx", "onnx", "int8", 3.87, 22.1)
    same.latency[2] = Latency.of(rng.lognormal(np.log(3.87), 0.05, 30))
    same.throughput_images_per_s, fp32.throughput_images_per_s = 399.0, 512.0  # at batch 32 int8 was slower there
    speed = speed_against(same, fp32)
    assert speed is not None and speed.latency_ratio.low < 1.0 < speed.latency_ratio.high
    assert speed.verdict == "not shown faster" and speed.throughput_ratio == pytest.approx(399 / 512)
    assert speed.line().endswith("not shown faster; batch throughput 0.78x (slower at batch)")
    text = markdown(_report(**{"model_fp32.onnx": fp32, "model_int8.onnx": same}))
    assert "Not shown faster than its float model on this machine: `model_int8.onnx`" in text
    slow = _row("model_int8.onnx", "onnx", "int8", 3.87, 22.1)
    slow.latency[2] = Latency.of(rng.lognormal(np.log(3.87 * 1.3), 0.05, 30))  # 30% slower
    slower = speed_against(slow, fp32)
    assert slower is not None and slower.verdict == "slower"
    fast = _row("model_int8.onnx", "onnx", "int8", 3.87, 22.1)
    fast.latency[2] = Latency.of(rng.lognormal(np.log(3.87 * 0.6), 0.05, 30))
    faster = speed_against(fast, fp32)
    assert faster is not None and faster.verdict == "faster"
    assert speed_against(fast, None) is None
    # with fresh processes on both sides the interval is taken over processes, which differ more than calls do
    same.process_p50_ms, fp32.process_p50_ms = (3.87, 3.30, 3.34), (4.15, 3.44, 3.94)
    by_process = speed_against(same, fp32)
    assert by_process is not None and by_process.latency_ratio.method.startswith("Welch t on log p50 per process")
    assert by_process.verdict == "not shown faster" and by_process.latency_ratio.high > 1.0
    slow.process_p50_ms = (5.0, 5.2, 5.1)  # 1.33x: with three processes a side, not yet shown beyond the margin
    assert speed_against(slow, fp32).verdict == "not shown faster"
    slow.process_p50_ms = (7.0, 7.3, 7.1)  # 1.86x, interval [1.48, 2.34]
    assert speed_against(slow, fp32).verdict == "slower"


def test_markdown_shows_every_figure_and_failed_rows():
    failed = FormatResult("model_int8.onnx", "onnx int8", "onnx", "int8", "/m/model_int8.onnx",
                          error="export rejected: test agreement 0.9 < 0.98")
    tflite = _row("model_int8.tflite", "tflite", "int8", 27.0, 22.2, delta=2)
    report = _report(saved_model=_row(SAVED_MODEL, "saved_model", "float32", 90.0, 177.0),
                     **{"model_int8.tflite": tflite, "model_int8.onnx": failed})
    text = markdown(report)
    assert "- Machine: Test CPU, 2 cores, x86_64 (Linux)" in text
    assert "- Command: `python -m benchmarks --model /m`" in text
    assert tflite.summary is not None and tflite.comparison is not None
    assert (f"| `model_int8.tflite` | tflite int8 | x 1.0 | 22.2 | 0.10 | 54.00 / 54.00 | 27.00 / 27.00 | 37.0 | 100 / - | "
            f"{tflite.summary.auc:.4f} | {tflite.comparison.delta_auc:+.4f} |") in text
    assert "| `model_int8.onnx` | onnx int8 | **failed**: export rejected: test agreement 0.9 < 0.98 |" in text
    assert "- latency model_int8.tflite / saved_model = 0.300 [0.300, 0.300] (goal <= 0.33: meets)" in text
    assert "- `model_int8.tflite`: p50 0.300x saved_model [0.300, 0.300] at 2 threads: faster" in text
    assert "writes every variable twice" in text
    # and the JSON form reads back to the same report
    assert BenchmarkReport.from_dict(json.loads(json.dumps(report.to_dict()))).to_dict() == report.to_dict()


def test_markdown_gives_intervals_flips_and_predictive_values_from_the_comparison():
    row = _row("model_int8.tflite", "tflite", "int8", 27.0, 22.2, delta=2)  # two positives the artifact loses
    text = markdown(_report(saved_model=_row(SAVED_MODEL, "saved_model", "float32", 90.0, 177.0), **{"model_int8.tflite": row}))
    line = next(x for x in text.splitlines() if x.startswith("| `model_int8.tflite` | youden"))
    assert row.comparison is not None
    point = row.comparison.points["youden"]
    change = point.sensitivity_change
    assert (change.lost, change.gained, change.value) == (2, 0, -0.04)
    assert change.mcnemar_p == 0.5  # two discordant pairs, both one way: 2 * 0.5**2
    assert f"-0.0400 [{change.low:+.3f}, {change.high:+.3f}] (-2/+0, p=0.5)" in line
    assert "at 0.1 |" in line and f"{point.agreement:.4f} [" in line
    assert "One image moves sensitivity by 0.0200, specificity by 0.0200 and agreement by 0.0100 on this split." in text


def test_config_round_trips_and_refuses_bad_values(tmp_path):
    cfg = BenchmarkConfig(model="m", formats=("model_int8.tflite",), threads=(1, 4), runs=7)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert BenchmarkConfig.load(path) == cfg
    assert cfg.thread_counts() == (1, 4) and cfg.out_dir.as_posix() == "m/benchmark"
    for kwargs, match in (({"runs": 0}, "--runs 0"), ({"threads": (0,)}, "--threads 0"), ({"timeout_s": 0}, "--timeout-s")):
        with pytest.raises(ConfigError, match=match):
            BenchmarkConfig(model="m", **kwargs)


@pytest.mark.parametrize("case", ["missing model", "no exports", "unknown format", "wrong image size", "wrong labels",
                                  "missing split", "bad runs", "bad threads", "out not empty"])
def test_cli_bad_input_is_one_line_and_exit_2(fake_model, tmp_path, case):
    model, data = fake_model
    if case != "no exports":
        (model / "model_int8.onnx").write_bytes(b"garbage")
    small = write_npz(tmp_path / "small.npz", size=32)
    odd = write_npz(tmp_path / "odd.npz", labels=(0, 2))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    args, expected = {
        "missing model": (["--model", str(tmp_path / "nope")], "no such model directory"),
        "no exports": (["--model", str(model)], "no exported .tflite or .onnx files"),
        "unknown format": (["--model", str(model), "--formats", "model_int4.onnx"], "--formats model_int4.onnx: not in"),
        "wrong image size": (["--model", str(model), "--data", str(small)], "images are 32x32, the model was trained on 28x28"),
        "wrong labels": (["--model", str(model), "--data", str(odd)], "positive label 1 not among the labels [0, 2]"),
        "missing split": (["--model", str(model), "--data", str(data), "--split", "holdout"], "no 'holdout' split"),
        "bad runs": (["--model", str(model), "--runs", "0"], "--runs 0: expected an integer >= 1"),
        "bad threads": (["--model", str(model), "--threads", "1,x"], "--threads '1,x'"),
        "out not empty": (["--model", str(model), "--out", str(tmp_path / "full")], "exists and is not empty"),
    }[case]
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr
    assert not (model / "benchmark").exists()


def test_a_format_that_cannot_run_is_a_failed_row_not_a_stopped_run(fake_model, tmp_path):
    from benchmarks.run import run_benchmarks

    model, data = fake_model
    (model / "model_int8.onnx").write_bytes(b"garbage")
    report = run_benchmarks(BenchmarkConfig(model=str(model), data=str(data), out=str(tmp_path / "r"), runs=1, warmup=0,
                                            plots=False))
    rows = report.formats
    assert not rows["model_int8.onnx"].ok and "model_int8.onnx" in str(rows["model_int8.onnx"].error)
    assert not rows[SAVED_MODEL].ok and str(rows[SAVED_MODEL].error).startswith("worker exited with 1")
    text = (tmp_path / "r" / "benchmark.md").read_text()
    assert text.count("**failed**") == 2
    assert BenchmarkConfig.load(tmp_path / "r" / "benchmark_config.json").model == str(model)


def test_the_largest_thread_count_runs_in_rounds_that_take_turns_and_its_first_process_evaluates(monkeypatch, tmp_path):
    """``--threads 4,1 --rounds 3``: 1 thread once per format, then 4 threads in three rounds, the formats taking turns;
    throughput, the logits and the load figures come from the first 4-thread process, whatever the order given."""
    from benchmarks import run as bench_run
    from benchmarks.formats import Format
    from benchmarks.run import Evaluation, _measure

    jobs = []

    def fake_worker(job, work, timeout_s):
        jobs.append(job)
        if job.logits:
            np.save(job.logits, np.zeros(4, np.float32), allow_pickle=False)
        timed = {"throughput_batch": job.throughput_batch, "throughput_batch_s": [job.throughput_batch / (100.0 * job.threads)]}
        p50 = 10.0 / job.threads + len(jobs)  # each process a little slower than the one before
        return {"p50_ms": p50, "p90_ms": p50, "mean_ms": p50, "runs": 1, "samples_ms": [p50],
                "engine": "fake 1.0", "threads": job.threads, "load_s": 0.1, "first_inference_s": 0.2,
                **(timed if job.throughput_batch else {})}, None

    monkeypatch.setattr(bench_run, "_run_worker", fake_worker)
    formats = {}
    for name in ("model_int8.tflite", "model_int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
        formats[name] = Format(name, tmp_path / name, Path(name).suffix[1:], "int8")
    evaluation = Evaluation("test", np.zeros(4, np.int64), tmp_path / "pixels.npy", "data.npz[test]")
    cfg = BenchmarkConfig(model=str(tmp_path), threads=(4, 1, 4), throughput_batch=8, rounds=3)
    rows, logits = _measure(formats, cfg, 75, evaluation, tmp_path)
    assert [(Path(j.path).name, j.threads, j.throughput_batch, j.logits is not None) for j in jobs] == [
        ("model_int8.tflite", 1, 0, False), ("model_int8.onnx", 1, 0, False),
        ("model_int8.tflite", 4, 8, True), ("model_int8.onnx", 4, 8, True),
        ("model_int8.tflite", 4, 0, False), ("model_int8.onnx", 4, 0, False),
        ("model_int8.tflite", 4, 0, False), ("model_int8.onnx", 4, 0, False)]
    row = rows["model_int8.tflite"]
    assert row.ok and list(row.latency) == [1, 4] and set(logits) == set(formats)
    assert row.process_p50_ms == (2.5 + 3, 2.5 + 5, 2.5 + 7) and row.latency[4].runs == 3  # every process's calls pooled
    assert row.throughput_images_per_s == 400.0 and row.throughput_batch == 8 and row.widest == row.latency[4]


def test_markdown_judges_drift_against_the_recorded_limits():
    from dataclasses import replace

    tflite = _row("model_int8.tflite", "tflite", "int8", 27.0, 22.2)
    tflite.drift_failures = []
    outside = _row("model_int8.onnx", "onnx", "int8", 21.0, 22.1)
    outside.drift_failures = ["test/youden agreement 0.9786 < 0.98"]
    report = _report(saved_model=_row(SAVED_MODEL, "saved_model", "float32", 90.0, 177.0),
                     **{"model_int8.tflite": tflite, "model_int8.onnx": outside})
    report.evaluation = replace(report.evaluation, drift_limits=DriftLimits(agreement=0.98))
    text = markdown(report)
    assert ("limits: sensitivity <= 0.02, specificity <= 0.02, auc <= 0.01, agreement >= 0.98; flagged when the 95% "
            "interval of a change lies wholly beyond them") in text
    assert "- `model_int8.tflite`: within the limits" in text
    assert "- `model_int8.onnx`: OUTSIDE: test/youden agreement 0.9786 < 0.98" in text


def test_the_benchmark_flag_is_not_the_exporters_gate_and_old_configs_still_read():
    """``--flag inferiority`` flags only what a split shows beyond a limit; ``--gate noninferiority`` (the exporters)
    demands the data show it within. One word each; a config saved as gate=noninferiority reads as flag=inferiority."""
    assert BenchmarkConfig.from_dict({"model": "m", "gate": "noninferiority"}).flag == "inferiority"
    assert BenchmarkConfig.from_dict({"model": "m", "gate": "point"}).flag == "point"
    with pytest.raises(ConfigError, match="--flag 'noninferiority': expected one of inferiority, point"):
        BenchmarkConfig(model="m", flag="noninferiority")
    proc = _cli("--model", "m", "--gate", "point")
    assert proc.returncode == 2 and "unrecognized arguments: --gate point" in proc.stderr


def test_synthetic_fallback_data_is_balanced_reproducible_and_learnable(tmp_path):
    from benchmarks.reference import synthetic_dataset
    from runtime.datasets import load_dataset
    from runtime.metrics import roc_auc

    a = load_dataset(synthetic_dataset(tmp_path / "a.npz", seed=3))
    b = load_dataset(synthetic_dataset(tmp_path / "b.npz", seed=3))
    for name, n in (("train", 800), ("val", 600), ("test", 600)):
        split = a.splits[name]
        assert split.images.shape == (n, 28, 28) and split.images.dtype == np.uint8
        assert np.bincount(split.labels).tolist() == [n // 2, n // 2]
        assert np.array_equal(split.images, b.splits[name].images)
    # The signal is there for a model to find, but not in brightness alone (exposure varies): the mean pixel is a
    # weak cue, the brightest pixel above the image's median a fair one.
    flat = a.splits["test"].images.reshape(600, -1).astype(float)
    labels = a.splits["test"].labels
    assert roc_auc(labels, flat.mean(axis=1)) < 0.7
    assert roc_auc(labels, flat.max(axis=1) - np.median(flat, axis=1)) > 0.75


def test_the_export_gate_check_names_an_export_that_judged_nothing():
    """``pytest benchmarks/`` on a model exported with --max-drift none: one clear line, not an AttributeError."""
    from dataclasses import replace

    from benchmarks.checks import export_gate_problems
    from export.sidecar import Sidecar

    judged = Sidecar.from_dict(_refused_sidecar([]), "s.json").verification
    assert export_gate_problems("model_int8.tflite", judged, DriftLimits()) == []
    unjudged = replace(judged, limits=None)
    expected = ("model_int8.tflite: exported with --max-drift none, so its export judged nothing; export it with limits "
                "(at most sensitivity=0.02,specificity=0.02,auc=0.01,agreement=0.97) for these checks to hold it to them")
    assert export_gate_problems("model_int8.tflite", unjudged, DriftLimits()) == [expected]
    looser = replace(judged, limits=DriftLimits(sensitivity=0.05))
    expected = ("m: exported at looser limits {'sensitivity': 0.05} than "
                "{'sensitivity': 0.02, 'specificity': 0.02, 'auc': 0.01, 'agreement': 0.97}")
    assert export_gate_problems("m", looser, DriftLimits()) == [expected]
    refused = replace(judged, failures=("val/youden agreement 0.9 < 0.97",))
    assert export_gate_problems("m", refused, DriftLimits()) == ["m: its export refused it: val/youden agreement 0.9 < 0.97"]
