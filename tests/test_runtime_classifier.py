"""runtime.Classifier on the exported reference artifacts: same decisions as the export report, typed errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from runtime.classifier import Classifier
from runtime.datasets import binary_labels, load_dataset
from runtime.errors import ConfigError, DataError, ModelFileError
from runtime.metrics import binary_metrics, roc_auc


@pytest.fixture(scope="module")
def test_images(xray_data):
    test = load_dataset(xray_data).splits["test"]
    return np.asarray(test.images), binary_labels(test, 1)


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_decisions_equal_the_export_report(tflite_result, onnx_results, model_dir, test_images, name):
    clf = Classifier(model_dir / name)
    assert clf.checksum_verified and clf.image_size == 75 and clf.class_names == ("normal", "pneumonia")
    images, labels = test_images
    results = clf.predict(images)  # (N, 28, 28) uint8: resized on the way in, as in training
    prob = np.array([r.probability for r in results])
    report = json.loads((model_dir / f"{name}.json").read_text())["verification"]["splits"]["test"]
    assert roc_auc(labels, prob) == pytest.approx(report["auc"]["artifact"], abs=1e-12)
    m = binary_metrics(labels, prob, clf.threshold)
    assert m.sensitivity == pytest.approx(report["operating_points"]["youden"]["artifact"]["sensitivity"], abs=1e-12)
    assert m.specificity == pytest.approx(report["operating_points"]["youden"]["artifact"]["specificity"], abs=1e-12)
    assert [r.label for r in results[:3]] == ["pneumonia" if r.positive else "normal" for r in results[:3]]


def test_one_image_any_form_gives_one_answer(tflite_result, model_dir, test_images, tmp_path):
    clf = Classifier(model_dir / "model_int8.tflite", operating_point="high_sensitivity")
    image = test_images[0][5]
    Image.fromarray(image).save(tmp_path / "x.png")
    rgb = np.repeat(image[..., None], 3, axis=-1)
    forms = [image, image[..., None], rgb, Image.fromarray(image), tmp_path / "x.png", str(tmp_path / "x.png")]
    answers = [clf.predict(f) for f in forms]
    assert all(len(a) == 1 for a in answers)
    assert len({a[0].logit for a in answers}) == 1  # grayscale and its RGB replica are the same input
    assert answers[-1][0].path == str(tmp_path / "x.png") and answers[0][0].operating_point == "high_sensitivity"
    # float pixels are resized in float (as in training on float data), then rounded by the uint8 input: close, not equal
    floats = Classifier(model_dir / "model_int8.tflite", pixel_range="0,1", operating_point="high_sensitivity").predict(
        image.astype(np.float32) / 255)
    assert floats[0].positive == answers[0][0].positive and abs(floats[0].logit - answers[0][0].logit) < 0.5


def test_bad_input_raises_typed_errors(tflite_result, model_dir, tmp_path):
    clf = Classifier(model_dir / "model_int8.tflite")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="text.png: not a readable image"):
        clf.predict(tmp_path / "text.png")
    with pytest.raises(DataError, match="empty batch"):
        clf.predict(np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(DataError, match="NaN or inf"):
        Classifier(model_dir / "model_int8.tflite", pixel_range="0,1").predict(np.full((28, 28), np.nan, np.float32))
    with pytest.raises(ConfigError, match="--pixel-range"):
        clf.predict(np.zeros((28, 28), np.float32))
    with pytest.raises(DataError, match="shape \\(2, 28, 28, 5\\)"):
        clf.predict(np.zeros((2, 28, 28, 5), np.uint8))
    with pytest.raises(ConfigError, match="--operating-point 'best'"):
        Classifier(model_dir / "model_int8.tflite", operating_point="best")


def test_a_changed_or_truncated_model_is_refused(tflite_result, model_dir, tmp_path):
    copy = tmp_path / "model_int8.tflite"
    shutil.copy(model_dir / "model_int8.tflite", copy)
    shutil.copy(model_dir / "model_int8.tflite.json", tmp_path / "model_int8.tflite.json")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match"):
        Classifier(copy)
    copy.write_bytes(bytes(data[:1000]))
    (tmp_path / "model_int8.tflite.json").unlink()
    with pytest.raises(ModelFileError, match="model_int8.tflite"):
        Classifier(copy)


def test_cli_predict_json_and_eval(tflite_result, model_dir, test_images, tmp_path):
    Image.fromarray(test_images[0][0]).save(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, "-m", "runtime", "predict", str(model_dir / "model_int8.tflite"), str(tmp_path / "a.png"),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["path"] == str(tmp_path / "a.png") and 0.0 <= row["probability"] <= 1.0 and row["label"] in ("normal", "pneumonia")
    proc = subprocess.run([sys.executable, "-m", "runtime", "predict", str(model_dir / "model_int8.tflite"), str(tmp_path / "nope.png")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.png'}: no such image file or folder"


def test_cli_eval_gives_intervals_and_ppv_npv_at_a_stated_prevalence(tflite_result, model_dir):
    from runtime.stats import wilson

    proc = subprocess.run([sys.executable, "-m", "runtime", "eval", str(model_dir / "model_int8.tflite"), "--data",
                           "pneumoniamnist", "--prevalence", "0.05", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["n"], out["positives"]) == (468, 234) and out["one_image"]["sensitivity"] == 1 / 234
    assert out["auc_interval"]["low"] < out["auc"] < out["auc_interval"]["high"] and out["auc_interval"]["method"] == "delong"
    assert set(out["operating_points"]) == {"youden", "high_sensitivity", "high_specificity"}
    row = out["operating_points"]["youden"]
    assert row["intervals"]["sensitivity"] == wilson(row["tp"], row["tp"] + row["fn"]).to_dict()
    sens, spec = row["sensitivity"], row["specificity"]
    pv = row["at_prevalence"]
    assert pv["prevalence"] == 0.05 and pv["stated"]
    assert pv["ppv"]["value"] == pytest.approx(sens * 0.05 / (sens * 0.05 + (1 - spec) * 0.95), rel=1e-12)
    assert pv["npv"]["value"] == pytest.approx(spec * 0.95 / (spec * 0.95 + (1 - sens) * 0.05), rel=1e-12)
    assert pv["ppv"]["value"] < row["ppv"]  # at 5% prevalence far below the balanced split's own PPV
    table = subprocess.run([sys.executable, "-m", "runtime", "eval", str(model_dir / "model_int8.tflite"), "--data",
                            "pneumoniamnist"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "(95%, DeLong)" in table.stdout and "prevalence 0.5 (the split's own)" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "runtime", "eval", str(model_dir / "model_int8.tflite"), "--data",
                          "pneumoniamnist", "--prevalence", "5"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --prevalence 5.0: expected the share")
