"""The accuracy-drift checks: every int8 artifact against the float SavedModel, at the model card's operating points.

A failure names the artifact, the metric, the value and the bound. Limits come from
``--max-drift`` (see ``benchmarks/conftest.py``); the same comparison runs inside every export's
verification, so these checks hold the shipped files to the export's own contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.checks import export_gate_problems, speed_problems
from benchmarks.results import BenchmarkReport, FormatResult
from benchmarks.run import split_failures
from export.sidecar import Sidecar

FP32_MAX_DELTA_LOGIT = 1e-3  # the ONNX export's own bound (--max-fp32-delta)


def _row(report: BenchmarkReport, name: str) -> FormatResult:
    row = report.formats.get(name)
    if row is None:
        pytest.fail(f"{name}: not in the model directory; present: {', '.join(report.formats)}")
    if not row.ok:
        pytest.fail(f"{name}: {row.error}")
    return row


def test_int8_drift_within_limits(int8_artifact, benchmark_report, drift_limits):
    row = _row(benchmark_report, int8_artifact)
    if row.comparison is None:
        pytest.fail(f"{int8_artifact}: not compared with the SavedModel (it did not run)")
    failures = split_failures(benchmark_report.evaluation.flag, benchmark_report.evaluation.split, row.comparison, drift_limits)
    assert not failures, f"{int8_artifact} against the float SavedModel: " + "; ".join(failures)


def test_int8_passed_its_exports_gate_at_these_limits(int8_artifact, benchmark_report, drift_limits):
    """The export showed, on its pooled images, what the benchmark's one split is too small to show."""
    path = Path(_row(benchmark_report, int8_artifact).path)
    verification = Sidecar.load(path.with_name(path.name + ".json")).verification
    problems = export_gate_problems(int8_artifact, verification, drift_limits)
    assert not problems, "; ".join(problems)


def test_int8_is_not_shown_slower_than_its_float_counterpart(int8_artifact, benchmark_report):
    """Flagged only when the data show it: the whole 95% interval of the p50 ratio above 1 + SLOWER_MARGIN. A ratio
    near 1 is reported with its interval (and in the report as "not shown faster"), not failed on the noise floor."""
    row = _row(benchmark_report, int8_artifact)
    if row.speed is not None:
        print(f"{int8_artifact}: {row.speed.line()}")
    problems = speed_problems(row)
    assert not problems, "; ".join(problems)


def test_fp32_onnx_makes_the_float_models_decisions(benchmark_report):
    row = benchmark_report.formats.get("model_fp32.onnx")
    if row is None:
        pytest.skip("no model_fp32.onnx in the model directory")
    comparison = _row(benchmark_report, "model_fp32.onnx").comparison
    assert comparison is not None, "model_fp32.onnx: not compared with the SavedModel"
    assert comparison.drift.max_abs_delta_logit <= FP32_MAX_DELTA_LOGIT, \
        f"model_fp32.onnx max |delta logit| {comparison.drift.max_abs_delta_logit:.2e} > {FP32_MAX_DELTA_LOGIT}"
    assert min(p.agreement for p in comparison.points.values()) == 1.0


def test_every_format_was_measured(benchmark_report):
    failed = {n: r.error for n, r in benchmark_report.formats.items() if not r.ok}
    assert not failed, "; ".join(f"{n}: {e}" for n, e in failed.items())
