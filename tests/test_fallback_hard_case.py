"""The hard case of ``--fallback auto``: plain int8 breaks the limits, the fallback meets them, for TFLite and ONNX.

The model is the reference model with one mixed8 tensor given an outlier channel
(``benchmarks.hard_case``); the float logits are unchanged. Limits and gate are the exports' defaults,
which the unmodified model's int8 exports meet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.reference import hard_case_export_configs
from export.config import DriftLimits
from export.sidecar import Sidecar
from export.splits import CHOOSE_SPLIT, JUDGE_SPLIT
from export.verify import shown_beyond_failures
from train.card import ModelCard

PLANTED = "activation_70"  # the ReLU output of conv2d_70 that benchmarks.hard_case breaks


def _sidecar(path: Path) -> Sidecar:
    return Sidecar.load(path.with_name(path.name + ".json"))


def _pairs(model: Path) -> list[tuple[str, Path, Path]]:
    """(format, plain int8, fallback) as the configs that built the hard case name them."""
    tflite_plain, tflite_fallback, onnx_plain, onnx_fallback = hard_case_export_configs(model)
    return [("tflite", model / tflite_plain.artifact_name, model / tflite_fallback.artifact_name),
            ("onnx", model / onnx_plain.int8_name, model / onnx_fallback.int8_name)]


def test_the_float_model_is_unchanged(hard75):
    change = ModelCard.load(hard75).architecture["hard_to_quantize"]
    assert change["max_abs_delta_logit"] < 1e-4 and change["checked_images"] == 32
    assert change["removed_channel_mean_abs_logit"] == 0.0  # the replaced channel was silent on the check images


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_plain_int8_breaks_the_limits(hard75, fmt):
    (_, plain, _), = [p for p in _pairs(hard75) if p[0] == fmt]
    report = _sidecar(plain).verification
    # not merely unproven: every split, even val's 270 images, shows drift beyond the default limits at 95% confidence
    shown = {split: shown_beyond_failures(split, row, DriftLimits()) for split, row in report.splits.items()}
    assert set(shown) == {"val", "test", "train_unused"} and all(shown.values()), shown
    assert len(shown["train_unused"]) >= 3, shown
    worst = max(abs(p.delta(rate)) for r in report.splits.values() for p in r.points.values()
                for rate in ("sensitivity", "specificity"))
    assert worst > 0.06  # not a near miss: three times the default 0.02 limit somewhere


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_the_layer_report_ranks_the_planted_layer_first(hard75, fmt):
    (_, plain, _), = [p for p in _pairs(hard75) if p[0] == fmt]
    layers = _sidecar(plain).sections["layer_errors"]
    worst = layers["worst"]
    assert PLANTED in worst[0]["layer"], worst[0]
    assert worst[0]["channel_error"] > 0.9  # its other channels are lost
    assert worst[1]["channel_error"] < worst[0]["channel_error"] - 0.2  # and nothing else comes close
    assert len(worst) == 20 and layers["layers_measured"] > 100


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_fallback_meets_the_limits_and_names_the_float_layers(hard75, fmt):
    (_, _, fallback), = [p for p in _pairs(hard75) if p[0] == fmt]
    sidecar = _sidecar(fallback)
    verification = sidecar.verification
    assert verification.passed and verification.limits == DriftLimits()
    # judged at 95% confidence only on images the search never saw, and the record says which chose and which judged
    assert verification.gate.rule == "noninferiority" and verification.gate.splits == ("test", JUDGE_SPLIT)
    images = verification.images
    assert images.chose == ("val", CHOOSE_SPLIT) and images.judged == ("test", JUDGE_SPLIT)
    assert not set(images.train_rows[CHOOSE_SPLIT]) & set(images.train_rows[JUDGE_SPLIT])
    assert verification.gate.n == images.sizes["test"] + images.sizes[JUDGE_SPLIT] > 2000
    report = sidecar.sections["fallback"]
    assert report["passed_on_selection"] and len(report["steps"]) == 2  # plain int8, then one step
    assert report["selection_splits"] == ["val", CHOOSE_SPLIT]
    assert not report["steps"][0]["selection_passed"] and report["steps"][1]["selection_passed"]
    assert report["steps"][1]["kept"] and report["steps"][1]["shortfall"] <= 0 < report["steps"][0]["shortfall"]
    assert len(report["layers_kept_float"]) == 1 and PLANTED in report["layers_kept_float"][0]
    assert any("conv2d_71" in n or "activation_71" in n or "batch_normalization_71" in n for n in report["float_nodes"])
    assert all(isinstance(s["p50_ms"], float) and s["p50_ms"] > 0 for s in report["steps"])
    assert isinstance(report["steps"][1]["latency_cost_ms"], float)
    assert sidecar.metadata.artifact.float_layers  # the metadata inside the file says what stayed float
    if fmt == "tflite":
        assert sidecar.sections["kernels"].get("CONV_2D(FLOAT32)") == 2  # the planted layer and its reader, nothing more


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_the_fallback_artifact_runs_in_the_runtime(hard75, fmt):
    from runtime.classifier import Classifier

    (_, _, fallback), = [p for p in _pairs(hard75) if p[0] == fmt]
    clf = Classifier(fallback)
    rng = np.random.default_rng(0)
    [result] = clf.predict(rng.integers(0, 256, size=(28, 28), dtype=np.uint8))
    assert 0.0 <= result.probability <= 1.0


def test_the_benchmark_shows_the_fallback_beside_plain_int8(hard75, tmp_path):
    from benchmarks.config import BenchmarkConfig
    from benchmarks.run import run_benchmarks

    names = [p.name for _, plain, fallback in _pairs(hard75) for p in (plain, fallback)]
    cfg = BenchmarkConfig(model=str(hard75), formats=tuple(names), out=str(tmp_path / "bench"), runs=5, warmup=1,
                          threads=(1,), rounds=1, throughput_batch=0, plots=False)  # drift rows, not a speed verdict
    report = run_benchmarks(cfg)
    rows = list(report.formats)
    for plain, fallback in zip(names[::2], names[1::2]):
        assert rows.index(fallback) == rows.index(plain) + 1  # side by side in the table
        assert report.formats[plain].drift_failures and report.formats[fallback].drift_failures == []
        assert "layers float" in report.formats[fallback].description
    markdown = (tmp_path / "bench" / "benchmark.md").read_text()
    assert "`model_int8_fallback.tflite` | TFLite int8, 2 layers float" in markdown
