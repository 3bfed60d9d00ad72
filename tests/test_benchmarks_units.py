"""benchmarks/ without a trained model: discovery of formats, goals, the report, the config and bad input.

The measurements themselves run in ``pytest benchmarks/`` on a real model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import POINTS, ROOT, write_npz

from benchmarks.config import BenchmarkConfig
from benchmarks.formats import SAVED_MODEL, discover_formats, select_formats
from benchmarks.report import goals, markdown
from runtime.errors import ConfigError, ModelCardError

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_discovery_lists_artifacts_and_rejected_exports_as_failed(fake_model):
    model, _ = fake_model
    (model / "model_int8.onnx").write_bytes(b"garbage")
    (model / ".model_int8.tflite.tmp.123").write_bytes(b"partial")  # a killed export's leftover: never listed
    (model / "model_int8.tflite.rejected.json").write_text(json.dumps(
        {"verification": {"failures": ["val/youden agreement 0.9700 < 0.98", "test |delta AUC| 0.0200 > 0.01"]}}))
    formats = discover_formats(model, json.loads((model / "model_card.json").read_text()))
    assert list(formats) == [SAVED_MODEL, "model_int8.onnx", "model_int8.tflite"]
    assert formats["model_int8.tflite"].error == ("export rejected: val/youden agreement 0.9700 < 0.98 (+1 more); "
                                                  "see model_int8.tflite.rejected.json")
    assert "model_int8.onnx" in formats["model_int8.onnx"].error
    with pytest.raises(ConfigError, match=r"--formats model_x\.onnx: not in .*expected some of saved_model, model_int8\.onnx"):
        select_formats(formats, ("model_x.onnx",), model)
    assert list(select_formats(formats, ("model_int8.onnx",), model)) == [SAVED_MODEL, "model_int8.onnx"]


def test_a_model_without_exports_is_refused(fake_model):
    model, _ = fake_model
    with pytest.raises(ModelCardError, match="no exported .tflite or .onnx files"):
        discover_formats(model, json.loads((model / "model_card.json").read_text()))


def _row(kind, precision, p50, mb, target=None, counterpart=None, suits=True, auc=0.9, delta_auc=0.0):
    point = {"threshold": 0.5, "float": {"sensitivity": 0.9, "specificity": 0.8, "accuracy": 0.85},
             "artifact": {"sensitivity": 0.9 + delta_auc, "specificity": 0.8, "accuracy": 0.85},
             "delta_sensitivity": delta_auc, "delta_specificity": 0.0, "agreement": 0.99}
    return {"description": f"{kind} {precision}", "kind": kind, "precision": precision, "target": target, "status": "ok",
            "error": None, "bytes": mb * 1e6, "engine": "x 1.0", "load_s": 0.1, "peak_rss_mb": 100.0,
            "latency": {"1": {"p50_ms": 2 * p50, "p90_ms": 2 * p50 + 1}, "2": {"p50_ms": p50, "p90_ms": p50 + 1}},
            "throughput_images_per_s": 1000 / p50, "float_counterpart": counterpart, "suits_this_machine": suits,
            "accuracy": {"auc": {"artifact": auc, "float": 0.9}, "delta_auc": delta_auc, "operating_points": {"youden": point}}}


def _report(**formats):
    return {"machine": {"cpu": "Test CPU", "cores": 2, "machine": "x86_64", "system": "Linux", "versions": {"numpy": "2.0"}},
            "evaluation": {"split": "test", "source": "data.npz[test]", "n": 10, "positives": 5},
            "model_card": {"path": "/m/model_card.json", "image_size": 299, "operating_points": POINTS},
            "config": {"warmup": 5, "runs": 50, "throughput_batch": 32}, "command": "python -m benchmarks --model /m",
            "formats": formats, "plots": []}


def test_goals_use_the_counterpart_and_skip_presets_for_the_other_cpu():
    formats = {SAVED_MODEL: _row("saved_model", "float32", 90.0, 177.0),
               "model_int8.tflite": _row("tflite", "int8", 27.0, 22.2, counterpart=SAVED_MODEL),
               "model_fp32.onnx": _row("onnx", "float32", 42.0, 87.1, counterpart=SAVED_MODEL),
               "model_int8.onnx": _row("onnx", "int8", 44.1, 22.1, target="pi", counterpart="model_fp32.onnx", suits=False),
               "model_int8_x86.onnx": _row("onnx", "int8", 21.0, 22.1, target="x86", counterpart="model_fp32.onnx")}
    lines = [g.line() for g in goals(formats)]
    assert lines == [
        "latency model_int8.tflite / saved_model = 0.300 (goal <= 0.33: meets)",
        "size model_int8.tflite / model_fp32.onnx = 0.255 (goal <= 0.26: meets)",
        "latency model_int8.onnx / model_fp32.onnx = 1.050 (the pi preset is made for the other CPU family; not a goal here)",
        "size model_int8.onnx / model_fp32.onnx = 0.254 (goal <= 0.26: meets)",
        "latency model_int8_x86.onnx / model_fp32.onnx = 0.500 (goal <= 0.45: MISSES)",
        "size model_int8_x86.onnx / model_fp32.onnx = 0.254 (goal <= 0.26: meets)",
    ]


def test_markdown_shows_every_figure_and_failed_rows():
    failed = {**_row("onnx", "int8", 1, 1), "status": "failed", "error": "export rejected: test agreement 0.9 < 0.98"}
    text = markdown(_report(saved_model=_row("saved_model", "float32", 90.0, 177.0),
                            **{"model_int8.tflite": _row("tflite", "int8", 27.0, 22.2, counterpart=SAVED_MODEL,
                                                         auc=0.8912, delta_auc=-0.0088),
                               "model_int8.onnx": failed}))
    assert "- Machine: Test CPU, 2 cores, x86_64 (Linux)" in text
    assert "- Command: `python -m benchmarks --model /m`" in text
    assert ("| `model_int8.tflite` | tflite int8 | x 1.0 | 22.2 | 0.10 | 54.00 / 55.00 | 27.00 / 28.00 | 37.0 | 100 / - | "
            "0.8912 | -0.0088 |") in text
    assert "| `model_int8.onnx` | onnx int8 | **failed**: export rejected: test agreement 0.9 < 0.98 |" in text
    assert "- latency model_int8.tflite / saved_model = 0.300 (goal <= 0.33: meets)" in text
    assert "| `model_int8.tflite` | youden | 0.5000 | 0.8912 | -0.0088 | 0.8000 | +0.0000 | - | 0.9900 |" in text
    assert "writes every variable twice" in text


def test_markdown_gives_intervals_flips_and_predictive_values_from_the_comparison():
    from export.verify import compare_split

    y = np.repeat([0, 1], 50)
    reference = np.where(y == 1, 1.0, -1.0) + np.linspace(-1.5, 1.5, 100)
    candidate = reference.copy()
    candidate[[60, 61]] = -5.0  # two positives the artifact loses
    accuracy = compare_split(y, reference, candidate, POINTS, prevalence=0.1)
    row = {**_row("tflite", "int8", 27.0, 22.2, counterpart=SAVED_MODEL), "accuracy": accuracy}
    text = markdown(_report(saved_model=_row("saved_model", "float32", 90.0, 177.0), **{"model_int8.tflite": row}))
    line = next(x for x in text.splitlines() if x.startswith("| `model_int8.tflite` | youden"))
    point = accuracy["operating_points"]["youden"]
    change = point["sensitivity_change"]
    assert (change["lost"], change["gained"], change["value"]) == (2, 0, -0.04)
    assert change["mcnemar_p"] == 0.5  # two discordant pairs, both one way: 2 * 0.5**2
    assert f"-0.0400 [{change['low']:+.3f}, {change['high']:+.3f}] (-2/+0, p=0.5)" in line
    assert "at 0.1 |" in line and f"{point['agreement']:.4f} [" in line
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
    assert rows["model_int8.onnx"]["status"] == "failed" and "model_int8.onnx" in rows["model_int8.onnx"]["error"]
    assert rows[SAVED_MODEL]["status"] == "failed" and rows[SAVED_MODEL]["error"].startswith("worker exited with 1")
    text = (tmp_path / "r" / "benchmark.md").read_text()
    assert text.count("**failed**") == 2
    assert BenchmarkConfig.load(tmp_path / "r" / "benchmark_config.json").model == str(model)


def test_the_largest_thread_count_evaluates_and_measures_throughput_whatever_its_position(monkeypatch, tmp_path):
    """``--threads 4,1``: throughput, the logits and the load figures come from the 4-thread run, not the last one."""
    from benchmarks import run as bench_run
    from benchmarks.formats import Format
    from benchmarks.run import Evaluation, _measure

    jobs = []

    def fake_worker(job, work, timeout_s):
        jobs.append(job)
        if job.logits:
            np.save(job.logits, np.zeros(4, np.float32), allow_pickle=False)
        return {"p50_ms": 10.0 / job.threads, "p90_ms": 11.0, "mean_ms": 10.0, "runs": 1, "engine": "fake 1.0",
                "load_s": 0.1, "throughput_images_per_s": 100.0 * job.threads, "throughput_batch": job.throughput_batch}, None

    monkeypatch.setattr(bench_run, "_run_worker", fake_worker)
    artifact = tmp_path / "model_int8.tflite"
    artifact.write_bytes(b"x")
    fmt = Format("model_int8.tflite", artifact, "tflite", "int8")
    evaluation = Evaluation("test", np.zeros(4, np.int64), tmp_path / "pixels.npy", "data.npz[test]")
    cfg = BenchmarkConfig(model=str(tmp_path), threads=(4, 1, 4), throughput_batch=8)
    row = _measure(fmt, cfg, 75, evaluation, tmp_path)
    assert row["status"] == "ok" and list(row["latency"]) == ["4", "1"]  # each count measured once
    assert [(j.threads, j.throughput_batch, j.logits is not None) for j in jobs] == [(4, 8, True), (1, 0, False)]
    assert row["throughput_images_per_s"] == 400.0 and row["throughput_batch"] == 8


def test_markdown_judges_drift_against_the_recorded_limits():
    outside = {**_row("onnx", "int8", 21.0, 22.1, target="x86", counterpart="model_fp32.onnx"),
               "drift_failures": ["test/youden agreement 0.9786 < 0.98"]}
    report = _report(saved_model=_row("saved_model", "float32", 90.0, 177.0),
                     **{"model_int8.tflite": {**_row("tflite", "int8", 27.0, 22.2, counterpart=SAVED_MODEL), "drift_failures": []},
                        "model_int8_x86.onnx": outside})
    report["evaluation"]["drift_limits"] = {"sensitivity": 0.02, "specificity": 0.02, "auc": 0.01, "agreement": 0.98}
    text = markdown(report)
    assert ("limits: sensitivity <= 0.02, specificity <= 0.02, auc <= 0.01, agreement >= 0.98; flagged when the 95% "
            "interval of a change lies wholly beyond them") in text
    assert "- `model_int8.tflite`: within the limits" in text
    assert "- `model_int8_x86.onnx`: OUTSIDE: test/youden agreement 0.9786 < 0.98" in text


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
