"""Exports of the reference model (``benchmarks.reference``: seed 0, 75x75, --weights none), checked independently.

The checks here do not trust the export's own report: they load the artifacts with
ai-edge-litert and onnxruntime directly, compute the numbers with scikit-learn, and compare.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from kill_points import Child, logged
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from benchmarks.reference import reference_export_configs
from export.config import DriftLimits, TFLiteExportConfig
from export.sidecar import Sidecar
from runtime.artifact_metadata import read_artifact_metadata
from runtime.datasets import binary_labels, iter_pixel_batches, load_dataset
from runtime.fileio import sha256_file
from train.card import ModelCard


@pytest.fixture(scope="module")
def test_split(xray_data):
    test = load_dataset(xray_data).splits["test"]
    pixels = np.concatenate(list(iter_pixel_batches(test, np.arange(len(test)), 64, 75, None)))
    return pixels, binary_labels(test, 1)


def _card(model_dir):
    return ModelCard.load(model_dir)


def _saved_model_logits(model_dir, pixels):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir / "saved_model"))
    return np.concatenate([np.asarray(loaded.serve(tf.constant(pixels[i:i + 100]))).reshape(-1) for i in range(0, len(pixels), 100)])


def _check_report_against(report, labels, float_logits, artifact_logits, card):
    """The report's test-split numbers must equal scikit-learn's and statsmodels' on the raw outputs (to 1e-12: the
    same counts through other code, so only the last bits of a float sum may differ)."""
    row = report.splits["test"]
    p_float, p_art = 1 / (1 + np.exp(-float_logits)), 1 / (1 + np.exp(-artifact_logits))
    assert row.artifact_summary.auc == pytest.approx(roc_auc_score(labels, p_art), abs=1e-12)
    assert row.float_summary.auc == pytest.approx(roc_auc_score(labels, p_float), abs=1e-12)
    for point in card.operating_points:
        t = point.threshold
        got = row.points[point.name]
        pos = p_art >= t
        assert got.artifact_rates.sensitivity == pytest.approx(pos[labels == 1].mean(), abs=1e-12)
        assert got.artifact_rates.specificity == pytest.approx((~pos[labels == 0]).mean(), abs=1e-12)
        assert got.agreement == pytest.approx(np.mean(pos == (p_float >= t)), abs=1e-12)
        # the intervals and p-values as statsmodels computes them from the same decisions
        agree = int(np.sum(pos == (p_float >= t)))
        low, high = proportion_confint(agree, labels.size, alpha=0.05, method="wilson")
        assert (got.agreement_interval.low, got.agreement_interval.high) == pytest.approx((low, high), abs=1e-12)
        was = p_float[labels == 1] >= t
        now = pos[labels == 1]
        table = [[int(np.sum(was & now)), int(np.sum(was & ~now))], [int(np.sum(~was & now)), int(np.sum(~was & ~now))]]
        change = got.sensitivity_change
        assert (change.lost, change.gained) == (table[0][1], table[1][0])
        assert change.mcnemar_p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)


def test_int8_tflite_is_integer_only_takes_raw_uint8_and_passes_the_default_gate(tflite_result, model_dir, test_split):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = model_dir / "model_int8.tflite"
    assert tflite_result.path == path and path.is_file()
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)  # raw pixels, no float maths before the model
    assert out["dtype"] == np.int8
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = set()
    for op in interpreter._get_ops_details():
        dtypes = {tensors[i]["dtype"] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0}
        assert dtypes <= {np.int8, np.uint8, np.int32}, (op["op_name"], dtypes)
        kinds.add(op["op_name"])
    assert {"CONV_2D", "CONCATENATION", "MEAN", "FULLY_CONNECTED"} <= kinds and "DEQUANTIZE" not in kinds
    report = tflite_result.verification
    assert report.passed and report.failures == () and set(report.splits) == {"val", "test", "train_unused"}
    assert report.gate.rule == "noninferiority" and report.gate.n == 270 + 468 + 2228
    assert report.images.chose == () and report.images.judged == ("val", "test", "train_unused")  # a plain export

    pixels, labels = test_split
    raw = pixels.astype(np.uint8)
    assert np.array_equal(raw, pixels)  # uint8 sources give integer pixels: the uint8 input is exact
    # The numbers come from the interpreter as users get it: default delegates (XNNPACK), whose int8 kernels
    # round slightly differently from the builtin ones inspected above.
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    scale, zero = out["quantization"]
    logits = []
    for image in raw:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        logits.append((float(interpreter.get_tensor(out["index"]).reshape(-1)[0]) - zero) * scale)
    _check_report_against(report, labels, _saved_model_logits(model_dir, pixels), np.array(logits), _card(model_dir))


def test_tflite_metadata_round_trips_and_the_sidecar_matches(tflite_result, model_dir):
    path = model_dir / "model_int8.tflite"
    raw = json.loads((model_dir / "model_int8.tflite.json").read_text())
    sidecar = Sidecar.load(model_dir / "model_int8.tflite.json")
    assert json.loads(json.dumps(sidecar.to_dict())) == raw  # the typed sidecar reads and writes the very JSON on disk
    meta = read_artifact_metadata(path)
    card = _card(model_dir)
    assert meta == sidecar.metadata == tflite_result.sidecar.metadata
    assert sidecar.sha256 == sha256_file(path) and sidecar.bytes == path.stat().st_size
    assert meta.class_names == ("normal", "pneumonia") and meta.positive_label == 1 and meta.image_size == 75
    assert meta.input.dtype == "uint8" and meta.input.quantization is not None and meta.input.quantization["scale"] == 1.0
    assert meta.input.training_shape == (28, 28)
    assert meta.operating_points == card.operating_points
    assert meta.source["saved_model_sha256"] == card.saved_model_sha256
    assert meta.calibration is not None and meta.calibration["size"] == 200
    assert meta.calibration["class_counts"] == {"negative": 100, "positive": 100}
    correction = meta.artifact.bias_correction
    assert correction is not None and correction["applied"] and correction["images"] == 200
    assert abs(correction["logit_shift"] + correction["mean_delta_logit"]) < 1e-4  # removed, to an int32 bias step
    assert {"tensorflow", "ai-edge-litert", "inception-edge"} <= set(meta.versions)
    saved = sidecar.config
    assert saved == reference_export_configs(Path(saved.model))[0]  # as the cache built it (JSON lists -> tuples)
    assert saved.max_drift == DriftLimits() and saved.gate == "noninferiority"


def test_onnx_fp32_matches_the_saved_model_and_int8_passes_the_default_gate(onnx_results, model_dir, test_split):
    import onnxruntime as ort

    fp32, int8 = onnx_results
    assert (fp32.path.name, int8.path.name) == ("model_fp32.onnx", "model_int8.onnx")
    check = fp32.sidecar.sections["numerical_check"]
    # val, test and every training image the calibration did not draw
    assert check["images"] == 270 + 468 + (2428 - 200) and check["max_abs_delta_logit"] <= 1e-3
    pixels, labels = test_split
    reference = _saved_model_logits(model_dir, pixels)
    session = ort.InferenceSession(str(fp32.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "pixels" and session.get_outputs()[0].name == "logit"
    fp32_logits = session.run(None, {"pixels": pixels})[0].reshape(-1)
    assert np.abs(fp32_logits - reference).max() <= 1e-3
    assert int8.verification.passed, int8.verification.failures
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")  # as runtime.backends: x86 without VNNI saturates
    q = ort.InferenceSession(str(int8.path), options, providers=["CPUExecutionProvider"])
    int8_logits = q.run(None, {"pixels": pixels})[0].reshape(-1).astype(np.float64)
    _check_report_against(int8.verification, labels, reference, int8_logits, _card(model_dir))
    correction = read_artifact_metadata(int8.path).artifact.bias_correction
    assert correction is not None and correction["applied"]
    assert correction["logit_shift"] == pytest.approx(-correction["mean_delta_logit"], abs=1e-6)
    ops = {n.op_type for n in __import__("onnx").load(str(int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_one_calibration_sample_serves_both_formats(tflite_result, onnx_results, model_dir):
    tflite_cal = read_artifact_metadata(model_dir / "model_int8.tflite").calibration
    onnx_cal = read_artifact_metadata(model_dir / "model_int8.onnx").calibration
    assert tflite_cal is not None and tflite_cal == onnx_cal
    assert read_artifact_metadata(model_dir / "model_fp32.onnx").calibration is None
    labels = binary_labels(load_dataset("pneumoniamnist").splits["train"], 1)
    idx = np.array(tflite_cal["indices"])
    assert (labels[idx] == 1).sum() == 100 and idx.max() > 1214  # drawn from both halves of the label-sorted arrays


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_cli_refuses_to_overwrite_and_reports_bad_input_in_one_line(tflite_result, model_dir, tmp_path):
    cases = [
        (["export.tflite", "--model", str(model_dir)], "model_int8.tflite: already exists; pass --overwrite"),
        (["export.tflite", "--model", str(tmp_path / "nope")], "no such model directory"),
        (["export.tflite", "--model", str(tmp_path)], "no model card"),
        (["export.onnx", "--model", str(model_dir), "--out", str(tmp_path), "--calibration-size", "5000"],
         "--calibration-size 5000: larger than the 2428 images"),
        (["export.onnx", "--model", str(model_dir), "--target", "x86"], "unrecognized arguments: --target x86"),
        (["export.tflite", "--model", str(model_dir), "--out", str(tmp_path), "--max-drift", "auc=big"], "--max-drift"),
        (["export.tflite", "--model", str(model_dir), "--mode", "int4"], "invalid choice: 'int4'"),
        (["export.tflite", "--model", str(model_dir), "--out", str(model_dir / "model_card.json" / "sub")],
         "model_card.json is not a writable directory"),
        (["export.onnx", "--model", str(model_dir), "--out", str(tmp_path), "--calibration-data", str(model_dir / "model_card.json")],
         "model_card.json: unsupported file type '.json'"),
    ]
    for argv, message in cases:
        proc = _cli(*argv)
        lines = [line for line in proc.stderr.splitlines() if not line[:2].isdigit()]
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(lines) == 1 and message in lines[0], (argv, lines)
    assert list(tmp_path.iterdir()) == []
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("saved_model", "*.tflite*", "*.onnx*"))
    proc = _cli("export.tflite", "--model", str(broken))
    assert proc.returncode == 2 and "not a SavedModel" in proc.stderr.strip().splitlines()[-1]


def test_drift_beyond_limits_exits_3_and_keeps_the_previous_artifact(tflite_result, model_dir):
    path = model_dir / "model_int8.tflite"
    before = sha256_file(path)
    proc = _cli("export.tflite", "--model", str(model_dir), "--overwrite", "--max-drift", "agreement=1.0,auc=0",
                "--verify-kernels", "default", "--agreement-images", "100")
    assert proc.returncode == 3, proc.stderr
    assert "model_int8.tflite: drift beyond --max-drift, not written" in proc.stderr.strip().splitlines()[-1]
    assert sha256_file(path) == before
    rejected = Sidecar.load(model_dir / "model_int8.tflite.rejected.json")
    assert rejected.verification.failures and not rejected.verification.passed


# Kill point: what proves the export got there (a line of its log), and whether its staged file must be left behind.
KILL_POINTS = {
    # TensorFlow's C++ log as the converter opens the SavedModel (calibration): nothing is staged yet
    "converting": ("Reading SavedModel from", False),
    # logged once the whole artifact is in its hidden staged file; verification runs next, then the rename
    "staged": ("converted model_int8.tflite", True),
}


@pytest.mark.parametrize("kill_after", list(KILL_POINTS))
def test_a_killed_export_leaves_no_partial_file(model_dir, tmp_path, kill_after):
    """SIGKILL while converting or while verifying a staged artifact: the previous artifact stays, whole.

    The export must still be running when it is killed, at the point its log proves (``TF_CPP_MIN_LOG_LEVEL=0``
    lets TensorFlow's converter log that it opened the SavedModel), and SIGKILL must be what ends it.
    """
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_int8.tflite").write_bytes(b"previous artifact")
    fragment, leaves_staged = KILL_POINTS[kill_after]
    child = Child([sys.executable, "-m", "export.tflite", "--model", str(model_dir), "--out", str(out), "--overwrite"],
                  tmp_path / "export.log", ROOT, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    child.wait_for(f"{fragment!r} in the export's log", logged(fragment))
    child.kill()
    staged = [p.name for p in out.iterdir() if p.name.startswith(".model_int8")]
    # a staged file left behind: SIGKILL came between staging and the rename (the export removes it otherwise)
    assert bool(staged) == leaves_staged, (staged, child.tail())
    assert (out / "model_int8.tflite").read_bytes() == b"previous artifact"
    assert not (out / "model_int8.tflite.json").exists()


def test_builtin_kernels_are_verified_too(tflite_result, xray_data):
    from runtime.classifier import Classifier
    from runtime.metrics import roc_auc

    result = tflite_result
    report = result.verification
    assert report.kernel_sets["builtin"].passed  # the gate holds on the kernels tflite-runtime runs, too
    assert report.kernels == "default" and list(report.kernel_sets) == ["builtin"]
    builtin = report.kernel_sets["builtin"].splits["test"].artifact_summary.auc
    default = report.splits["test"].artifact_summary.auc
    test = load_dataset(xray_data).splits["test"]
    for kernels, expected in (("builtin", builtin), ("default", default)):
        clf = Classifier(result.path, kernels=kernels)
        # the export computed its AUC with DeLong's midranks, this one with the trapezoid rule over the ROC: the
        # same number, summed in another order, so equal to the last bits only (seen: 0.9360983271239682 vs ...681)
        got = roc_auc(binary_labels(test, 1), np.array([r.probability for r in clf.predict(np.asarray(test.images))]))
        assert got == pytest.approx(expected, rel=0, abs=1e-12)
    # two kernel sets, two sets of numbers: apart by far more than rounding (one image moves the AUC by ~1/(234*234))
    assert abs(builtin - default) > 1e-6


def test_int8_input_variant_is_the_same_model_fed_pixel_minus_128(tflite_result, model_dir, tmp_path):
    from export.tflite import export_tflite

    result = export_tflite(TFLiteExportConfig(model=str(model_dir), out=str(tmp_path), input_type="int8", max_drift=None,
                                              verify_kernels=("default",), agreement_images=0))
    assert result.path.name == "model_int8_int8input.tflite"
    meta = read_artifact_metadata(result.path)
    assert meta.input.dtype == "int8" and meta.input.quantization is not None and meta.input.quantization["zero_point"] == -128
    assert set(result.verification.splits) == {"val", "test"}  # --agreement-images 0
    for split, row in result.verification.splits.items():
        # same calibration, same graph, exact input either way: identical logits, so identical figures to the last bit
        assert row == tflite_result.verification.splits[split]
