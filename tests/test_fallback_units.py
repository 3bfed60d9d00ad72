"""Accuracy-aware int8 without a model: the channel error, the search loop, the ONNX node groups, the config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.config import DriftLimits, OnnxExportConfig, TFLiteExportConfig
from export.fallback import FallbackOutcome, Step, search
from export.layer_errors import (
    LayerError,
    channel_error,
    layer_report,
    rank,
    short_name,
)
from runtime.errors import ConfigError


def _quantize_per_tensor(x: np.ndarray) -> np.ndarray:
    scale = x.max() / 255
    return np.round(x / scale) * scale


def test_channel_error_finds_the_outlier_that_energy_measures_miss():
    rng = np.random.default_rng(0)
    healthy = rng.uniform(0, 4, size=(1, 8, 8, 64))
    broken = healthy.copy()
    broken[..., 0] = 1e4  # one loud channel sets the scale (39); the other 63, all below 4, round to zero
    e_healthy = channel_error(healthy, _quantize_per_tensor(healthy))
    e_broken = channel_error(broken, _quantize_per_tensor(broken))
    assert e_healthy < 0.01
    assert 0.95 < e_broken <= 1.0
    # the energy-weighted view (RMSE over the whole tensor / RMS value) calls the broken tensor healthy
    energy = np.sqrt(np.mean((_quantize_per_tensor(broken) - broken) ** 2) / np.mean(broken**2))
    assert energy < 0.01


def test_channel_error_axis_and_silence():
    x = np.zeros((1, 3, 4, 4))
    x[:, 1] = 2.0
    noisy = x.copy()
    noisy[:, 1] += 0.2
    assert channel_error(x, noisy, channel_axis=1) == pytest.approx(0.1)  # only channel 1 has signal: 0.2 / 2.0
    assert np.isnan(channel_error(np.zeros((2, 5)), np.ones((2, 5))))


def test_ranking_report_and_short_names():
    rows = [LayerError("a/conv2d_1/convolution", "CONV_2D", "t1", 0.1),
            LayerError("x/y/activation_80_1/Relu;x/y/conv2d_80_1/convolution", "CONV_2D", "t2", 0.98, {"rmse_over_scale": 0.1}),
            LayerError("StatefulPartitionedCall/StatefulPartitionedCall/m/activation_5/Relu", "Relu", "t3", 0.5)]
    ranked = rank(rows)
    assert [r.tensor for r in ranked] == ["t2", "t3", "t1"]
    report = layer_report(rows, 32, "test")
    assert report["layers_measured"] == 3 and report["worst"][0]["channel_error"] == 0.98
    assert report["worst"][0]["rmse_over_scale"] == 0.1
    assert short_name(rows[1].layer) == "activation_80_1/Relu"
    assert short_name(rows[2].layer) == "activation_5/Relu"


def _layers(n: int) -> list[LayerError]:
    return [LayerError(f"layer{i}", "CONV_2D", f"t{i}", 1.0 - i / 10) for i in range(n)]


def test_search_stops_at_the_first_step_within_limits():
    built = []

    def build(nodes, step):
        built.append(list(nodes))
        return Step(Path(f"step{step}"), list(nodes), model=None)

    def judge(path):  # t0 helps a little, t1 makes it pass
        nodes = built[-1]
        return ([], -0.001) if "t1" in nodes else (["val AUC loss up to 0.2 > 0.01"], 0.19 if "t0" in nodes else 0.2)

    outcome = search(_layers(5), lambda layer: [layer.tensor, layer.tensor + "/reader"], build, judge, max_layers=8)
    assert outcome.passed
    assert built == [[], ["t0", "t0/reader"], ["t0", "t0/reader", "t1", "t1/reader"]]
    assert outcome.float_layers == ["t0", "t0/reader", "t1", "t1/reader"]
    assert [s.failures == [] for s in outcome.steps] == [False, False, True]
    assert outcome.final_index == 2


def test_a_step_that_does_not_help_goes_back_to_int8():
    built = []

    def build(nodes, step):
        built.append(list(nodes))
        return Step(Path(f"step{step}"), list(nodes), model=None)

    def judge(path):  # t0 and t2 are noise (the shortfall does not shrink); t1 and t3 help, t3 passes
        nodes = built[-1]
        short = 0.05 - 0.02 * ("t1" in nodes) - 0.04 * ("t3" in nodes) + 0.001 * ("t0" in nodes) + 0.0 * ("t2" in nodes)
        return ([] if short <= 0 else ["x"]), short

    outcome = search(_layers(5), lambda layer: [layer.tensor], build, judge, max_layers=8)
    # t0 is tried on plain int8 and dropped; t1 is kept; t2 is tried on top of t1 and dropped; t3 passes
    assert built == [[], ["t0"], ["t1"], ["t1", "t2"], ["t1", "t3"]]
    assert [s.kept for s in outcome.steps] == [True, False, True, False, True]
    assert outcome.passed and outcome.final.float_nodes == ["t1", "t3"] and outcome.final_index == 4
    report = outcome.report(max_layers=8, threads=1, selection_splits=("val", "train_unused"))
    assert report["layers_kept_float"] == ["layer1", "layer3"] and report["layers_tried_not_kept"] == ["layer0", "layer2"]
    assert report["selection_splits"] == ["val", "train_unused"] and report["passed_on_selection"]


def test_search_skips_layers_already_float_and_respects_max_layers():
    calls = []

    def build(nodes, step):
        calls.append(step)
        return Step(Path(f"s{step}"), list(nodes), model=None)

    # layer 1's group is already float after layer 0: no step spent on it
    groups = {"t0": ["t0", "t1"], "t1": ["t1"], "t2": ["t2"], "t3": ["t3"], "t4": ["t4"]}
    shortfalls = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    outcome = search(_layers(5), lambda layer: groups[layer.tensor], build, lambda p: (["still failing"], next(shortfalls)),
                     max_layers=2)
    assert not outcome.passed
    assert calls == [0, 1, 2]  # plain + 2 steps
    assert [s.layer.tensor for s in outcome.steps[1:]] == ["t0", "t2"]


def test_plain_int8_within_limits_needs_no_step():
    outcome = search(_layers(3), lambda layer: [layer.tensor], lambda nodes, step: Step(Path("p"), list(nodes), model=None),
                     lambda p: ([], -0.01), max_layers=4)
    assert outcome.passed and len(outcome.steps) == 1 and outcome.float_layers == []


def test_the_report_gives_each_layer_its_latency_cost():
    steps = [Step(Path("a"), [], None, failures=["x"], p50_ms=10.0, shortfall=0.01),
             Step(Path("b"), ["n0"], None, layer=_layers(1)[0], added=["n0"], failures=["x"], p50_ms=None, shortfall=0.02,
                  kept=False),
             Step(Path("c"), ["n1", "n2"], None, layer=_layers(2)[1], added=["n1", "n2"], p50_ms=10.75, shortfall=-0.001)]
    report = FallbackOutcome(steps).report(max_layers=8, threads=2, selection_splits=("val",))
    assert report["layers_kept_float"] == ["layer1"] and report["float_nodes"] == ["n1", "n2"]
    # the cost is against the last step kept (plain int8), not the step tried and dropped
    assert report["steps"][2]["latency_cost_ms"] == 0.75 and report["steps"][0]["latency_cost_ms"] is None
    assert report["steps"][1]["latency_cost_ms"] is None and not report["steps"][1]["kept"]
    assert report["latency"] == {"threads": 2, "calls": 40, "processes": 2, "batch": 1, "plain_int8_p50_ms": 10.0,
                                 "final_p50_ms": 10.75}
    assert report["selection_splits"] == ["val"] and report["passed_on_selection"]
    json.dumps(report)


def test_onnx_group_keeps_the_tensor_float_through_moves_and_activations():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from export.onnx.layers import fallback_group

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv80"),
             helper.make_node("Relu", ["c"], ["r"], name="relu80"),
             helper.make_node("Reshape", ["r", "shape"], ["flat"], name="reshape"),
             helper.make_node("MatMul", ["flat", "w2"], ["m"], name="matmul81"),
             helper.make_node("Relu", ["r"], ["side"], name="other_reader")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("m", TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    assert fallback_group(model, "r") == ["relu80", "conv80", "reshape", "other_reader", "matmul81"]
    assert fallback_group(model, "m") == ["matmul81"]


def test_config_fallback_fields_names_and_refusals():
    t = TFLiteExportConfig(model="m", fallback="auto", fallback_max_layers=3, layer_report_images=16)
    assert TFLiteExportConfig.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert t.artifact_name == "model_int8_fallback.tflite"
    assert TFLiteExportConfig(model="m", fallback="auto", input_type="int8").artifact_name == "model_int8_int8input_fallback.tflite"
    assert OnnxExportConfig(model="m", calibration_method="minmax", fallback="auto").int8_name == "model_int8_minmax_fallback.onnx"
    assert OnnxExportConfig(model="m", fallback="auto").fp32_name == "model_fp32.onnx"  # the fp32 model is shared
    for kwargs, flag in [({"fallback": "always"}, "--fallback 'always'"), ({"fallback_max_layers": 0}, "--fallback-max-layers 0"),
                         ({"layer_report_images": -1}, "--layer-report-images -1"),
                         ({"fallback": "auto", "max_drift": None}, "--max-drift none"),
                         ({"fallback": "auto", "layer_report_images": 0}, "--layer-report-images 0"),
                         ({"fallback": "auto", "mode": "float16"}, "--mode float16")]:
        with pytest.raises(ConfigError, match=flag):
            TFLiteExportConfig(model="m", **kwargs)
    assert TFLiteExportConfig(model="m", max_drift=DriftLimits()).fallback == "off"


def test_the_int8_driver_owns_bias_correction_and_counts_calibration_in_the_conversion_time(monkeypatch, tmp_path):
    """Both formats hand the driver (:func:`export.int8.quantize`) a calibrated builder; the driver measures each build's
    logit shift on the calibration images, has the format remove it, and times the whole recipe from calibration on."""
    import export.int8 as driver
    from export.int8 import quantize

    clock = [100.0]
    monkeypatch.setattr(driver.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []

    class Format:  # an Int8Format: the model is a list of the shifts applied to it
        suffix, kernel_sets, layer_method = ".fake", ("default",), "-"

        def build(self, float_nodes):
            calls.append(f"build{float_nodes}")
            clock[0] += 2.0
            return [], {"float_kernels": []}

        def save(self, model, path):
            path.write_text(repr(model))

        def shift_output(self, model, shift):
            model.append(shift)
            return {"applied": True, "logit_shift": shift}

        def layer_errors(self, plain, images):
            raise AssertionError("no per-layer report was asked for")

        def fallback_group(self, plain, layer):
            raise AssertionError("no fallback was asked for")

    class Session:
        cfg = TFLiteExportConfig(model="m", layer_report_images=0)

        def logit_shift(self, path):
            calls.append(f"measure {path.name}")
            return {"images": 4, "mean_delta_logit": 0.25, "std_delta_logit": 0.1}

    clock[0] += 5.0  # the format's calibration, before the driver runs
    outcome = quantize(Session(), Format(), tmp_path, started=100.0)  # type: ignore[arg-type]
    assert calls == ["build[]", "measure probe0.fake"]
    assert outcome.final.model == [-0.25] and (tmp_path / "step0.fake").read_text() == "[-0.25]"  # saved after the shift
    assert outcome.final.record["bias_correction"] == {"images": 4, "mean_delta_logit": 0.25, "std_delta_logit": 0.1,
                                                       "applied": True, "logit_shift": -0.25}
    assert outcome.sections == {"convert_seconds": 7.0} and not outcome.repaired and outcome.float_layers == []
