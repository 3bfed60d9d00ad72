"""The accuracy-drift checks: every int8 artifact against the float SavedModel, at the model card's operating points.

A failure names the artifact, the metric, the value and the bound. Limits come from
``--max-drift`` (see ``benchmarks/conftest.py``); the same comparison runs inside every export's
verification, so these checks hold the shipped files to the export's own contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import widest_latency
from export.verify import split_failures

FP32_MAX_DELTA_LOGIT = 1e-3  # the ONNX export's own bound (--max-fp32-delta)


def _row(report: dict, name: str) -> dict:
    row = report["formats"].get(name)
    if row is None:
        pytest.fail(f"{name}: not in the model directory; present: {', '.join(report['formats'])}")
    if row["status"] != "ok":
        pytest.fail(f"{name}: {row['error']}")
    return row


def test_int8_drift_within_limits(int8_artifact, benchmark_report, drift_limits):
    row = _row(benchmark_report, int8_artifact)
    split = benchmark_report["evaluation"]["split"]
    failures = split_failures(benchmark_report["evaluation"].get("gate", "noninferiority"), split, row["accuracy"], drift_limits)
    assert not failures, f"{int8_artifact} against the float SavedModel: " + "; ".join(failures)


def test_int8_passed_its_exports_gate_at_these_limits(int8_artifact, benchmark_report, drift_limits):
    """The export showed, on its pooled images, what the benchmark's one split is too small to show."""
    path = Path(_row(benchmark_report, int8_artifact)["path"])
    verification = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))["verification"]
    assert verification["passed"], f"{int8_artifact}: its export refused it: {verification['failures']}"
    assert verification["gate"]["rule"] == "noninferiority", f"{int8_artifact}: exported under --gate {verification['gate']['rule']}"
    looser = {k: v for k, v in verification["limits"].items()
              if (v < getattr(drift_limits, k) if k == "agreement" else v > getattr(drift_limits, k))}
    assert not looser, f"{int8_artifact}: exported at looser limits {looser} than {drift_limits.to_dict()}"


def test_int8_is_not_slower_than_its_float_counterpart(int8_artifact, benchmark_report):
    row = _row(benchmark_report, int8_artifact)
    counterpart = row["float_counterpart"]
    mine, theirs = widest_latency(row), widest_latency(_row(benchmark_report, counterpart))
    ratio = mine["p50_ms"] / theirs["p50_ms"]
    threads = max(int(t) for t in row["latency"])
    line = (f"{int8_artifact} p50 {mine['p50_ms']:.2f} ms / {counterpart} {theirs['p50_ms']:.2f} ms = {ratio:.3f} "
            f"at {threads} threads")
    print(line)
    if not row["suits_this_machine"]:
        pytest.skip(f"{line}: the {row['target']} preset is made for the other CPU family")
    assert ratio <= 1.0, f"{line}: the int8 artifact is slower than the float model it replaces"


def test_fp32_onnx_makes_the_float_models_decisions(benchmark_report):
    row = benchmark_report["formats"].get("model_fp32.onnx")
    if row is None:
        pytest.skip("no model_fp32.onnx in the model directory")
    row = _row(benchmark_report, "model_fp32.onnx")
    acc = row["accuracy"]
    assert acc["max_abs_delta_logit"] <= FP32_MAX_DELTA_LOGIT, \
        f"model_fp32.onnx max |delta logit| {acc['max_abs_delta_logit']:.2e} > {FP32_MAX_DELTA_LOGIT}"
    assert min(p["agreement"] for p in acc["operating_points"].values()) == 1.0


def test_every_format_was_measured(benchmark_report):
    failed = {n: r["error"] for n, r in benchmark_report["formats"].items() if r["status"] != "ok"}
    assert not failed, "; ".join(f"{n}: {e}" for n, e in failed.items())
