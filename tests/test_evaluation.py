"""runtime.evaluation: one model's figures on one split, as the model card, runtime eval and the benchmark give them."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import ConfigError
from runtime.evaluation import (
    SplitSummary,
    check_prevalence,
    predictive_value_text,
    split_summary,
)
from runtime.stats import auc_interval, predictive_values, wilson


def _split():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [140, 60])
    logits = rng.normal(0, 1, y.size) + 1.8 * y - 0.5
    return y, logits


def test_every_rate_carries_its_interval_and_what_one_image_is_worth():
    y, logits = _split()
    out = split_summary(y, logits, {"youden": 0.5, "screen": 0.2})
    assert (out.n, out.positives) == (200, 60)
    assert (out.one_image.sensitivity, out.one_image.specificity, out.one_image.accuracy) == (1 / 60, 1 / 140, 1 / 200)
    assert out.auc_interval == auc_interval(y, 1 / (1 + np.exp(-logits)))
    for name in ("youden", "screen"):
        row = out.points[name]
        assert row.interval("sensitivity") == wilson(row.tp, 60)
        assert row.interval("specificity") == wilson(row.tn, 140)
        assert row.interval("accuracy") == wilson(row.tp + row.tn, 200)
        pv = row.at_prevalence
        assert pv.prevalence == 0.3 and not pv.stated  # the split's own: 60 of 200
        assert pv.ppv.value == pytest.approx(row.ppv, rel=1e-12)
    assert out.points["screen"].sensitivity > out.points["youden"].sensitivity  # a lower threshold calls more positive


def test_a_point_named_like_a_figure_of_the_split_cannot_overwrite_it_and_both_schemas_read_back():
    y, logits = _split()
    out = split_summary(y, logits, {"auc": 0.5, "n": 0.2})
    raw = out.to_dict()
    assert raw["auc"] == out.auc and raw["n"] == 200 and set(raw["operating_points"]) == {"auc", "n"}
    assert SplitSummary.from_dict(raw) == out
    # the first schema put the points beside the split's own keys; its files still read
    first = {k: v for k, v in raw.items() if k != "operating_points"}
    plain = split_summary(y, logits, {"youden": 0.5})
    first_schema = {**{k: v for k, v in plain.to_dict().items() if k != "operating_points"},
                    "youden": plain.points["youden"].to_dict()}
    assert SplitSummary.from_dict(first_schema) == plain and "operating_points" not in first


def test_a_stated_prevalence_moves_ppv_and_npv_by_bayes_rule():
    y, logits = _split()
    row = split_summary(y, logits, {"youden": 0.5}, prevalence=0.02).points["youden"]
    ppv, npv = predictive_values(row.tp, row.fn, row.tn, row.fp, 0.02)
    assert row.at_prevalence.to_dict() == {"prevalence": 0.02, "stated": True, "ppv": ppv.to_dict(), "npv": npv.to_dict()}
    sens, spec = row.sensitivity, row.specificity
    assert ppv.value == pytest.approx(sens * 0.02 / (sens * 0.02 + (1 - spec) * 0.98), rel=1e-12)
    assert ppv.value < row.ppv and npv.value > row.npv  # rarer disease: fewer true alarms, safer negatives
    iv = row.interval("sensitivity")
    assert row.rate_text("sensitivity") == f"{sens:.4f} [{iv.low:.4f}, {iv.high:.4f}]"
    assert predictive_value_text(row, "ppv") == f"{ppv.value:.4f} [{ppv.low:.4f}, {ppv.high:.4f}]"


@pytest.mark.parametrize("constant, undefined, reason", [(-9.0, "ppv", "no image called positive"),
                                                         (9.0, "npv", "no image called negative")])
def test_a_constant_model_leaves_ppv_or_npv_undefined_and_says_why(constant, undefined, reason):
    """An int8 export gone wrong outputs one value: every image is called one way, and one predictive value has no
    denominator. It must print as undefined, not crash (runtime eval) or print a number."""
    y, _ = _split()
    for prevalence in (None, 0.05):
        row = split_summary(y, np.full(y.size, constant), {"youden": 0.5}, prevalence).points["youden"]
        assert np.isnan(getattr(row.at_prevalence, undefined).value)
        assert predictive_value_text(row, undefined) == f"undefined ({reason})"
        assert row.to_dict()["at_prevalence"][undefined]["value"] is None  # JSON null, not NaN


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.1"])
def test_prevalence_must_be_a_share_strictly_inside_zero_and_one(bad):
    with pytest.raises(ConfigError, match="--prevalence"):
        check_prevalence(bad)
    assert check_prevalence(None) is None and check_prevalence(0.05) == 0.05


def test_every_stage_checks_prevalence_with_the_same_rule():
    from benchmarks.config import BenchmarkConfig
    from export.config import TFLiteExportConfig
    from train.config import TrainConfig

    for make in (lambda p: TrainConfig(data="d.npz", out="o", prevalence=p), lambda p: TFLiteExportConfig(model="m", prevalence=p),
                 lambda p: BenchmarkConfig(model="m", prevalence=p)):
        with pytest.raises(ConfigError, match=r"--prevalence 1\.5: expected the share of positives"):
            make(1.5).validate()


def _constant_model(path, logit: float):
    """A sealed ONNX file of the toolkit's kind (75x75 RGB in, one logit out) whose output is ``logit`` for any image:
    what an int8 export gone wrong looks like to the device."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from export.metadata import embed_onnx, seal_artifact
    from runtime.integrity import PLACEHOLDER
    from runtime.metrics import OperatingPoint
    from runtime.model_metadata import ArtifactInfo, ArtifactMetadata, InputSpec

    nodes = [helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0, axes=[1, 2, 3]),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]), helper.make_node("Add", ["nothing", "bias"], ["logit"])]
    graph = helper.make_graph(nodes, "constant", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 75, 75, 3])],
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [None])],
                              [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                               numpy_helper.from_array(np.array(logit, np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ArtifactMetadata(75, ("normal", "pneumonia"), (OperatingPoint("youden", 0.5, 0.0, "youden"),), 1,
                            InputSpec("float32"), ArtifactInfo("onnx", "fp32", opset=17), content_sha256=PLACEHOLDER)
    embed_onnx(model, meta)
    path.write_bytes(seal_artifact(onnx.ModelProto.SerializeToString(model), meta, path.name)[0])
    return path


@pytest.mark.parametrize("logit, undefined", [(-9.0, "PPV undefined (no image called positive)"),
                                              (9.0, "undefined (no image called negative)")])
def test_runtime_eval_of_a_constant_model_prints_the_undefined_value_and_why(tmp_path, logit, undefined):
    """It used to end in a traceback (formatting None as a number) on exactly the model the toolkit warns about."""
    import subprocess
    import sys

    from conftest import ROOT

    model = _constant_model(tmp_path / "constant.onnx", logit)
    for prevalence in ([], ["--prevalence", "0.05"]):
        proc = subprocess.run([sys.executable, "-m", "runtime", "eval", str(model), "--data", "pneumoniamnist", *prevalence],
                              capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        row = next(line for line in proc.stdout.splitlines() if line.startswith("youden"))
        assert undefined.removeprefix("PPV ") in row, row
        sensitivity = "0.0000 [" if logit < 0 else "1.0000 ["
        assert sensitivity in row  # every image called one way: sensitivity 0 or 1, with its Wilson interval
