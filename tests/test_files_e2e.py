"""X-rays as files, end to end: a Kermany-layout tree of PNG, JPEG and 16-bit DICOM through train, both exports,
``runtime eval`` and ``runtime predict``; the same pixels as arrays train the same model.

The tree is the bundled data (150 training images per class, every val and test image) enlarged to 224 px,
with patient ids in the file names. A short recipe (2 head epochs, 2 fine-tuning epochs) keeps it to a few
minutes: what is tested is that files change nothing but how the pixels arrive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import hard_case
from benchmarks.xray_files import PATIENT_PATTERN, write_tree
from export.config import OnnxExportConfig, TFLiteExportConfig
from export.onnx import export_onnx
from export.tflite import export_tflite
from runtime.__main__ import main as runtime_main
from runtime.datasets import load_dataset
from runtime.file_sources import SPLIT_FILE
from train.card import ModelCard
from train.config import TrainConfig
from train.pipeline import train

RECIPE = {"image_size": 75, "weights": "none", "epochs": 2, "fine_tune_epochs": 2, "seed": 0}
# Same pixels, same rows in the same order, same seed and op determinism: the two runs compute the same sums in the
# same order, so their figures agree to the last bits; 1e-6 only allows for a BLAS that splits a sum differently.
SAME_PIXELS_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def files_model(tmp_path_factory):
    work = tmp_path_factory.mktemp("files_e2e")
    tree = work / "chest_xray"
    write_tree(tree, px=224, per_split={"train": 150})
    cfg = TrainConfig(data=str(tree), out=str(work / "model"), positive_class="PNEUMONIA",
                      patient_pattern=PATIENT_PATTERN, **RECIPE)
    return tree, train(cfg)


def test_split_file_matches_what_was_trained_and_no_patient_crosses(files_model):
    _, result = files_model
    card = result.card
    assert card.class_names == ("NORMAL", "PNEUMONIA") and card.positive_label == 1
    assert card.data.from_files is not None and card.data.training_shape == (75, 75)
    rows = (result.out / SPLIT_FILE).read_text().splitlines()
    assert rows[0] == "path,sha256,class,split,patient"
    splits = [line.split(",")[3] for line in rows[1:]]
    assert {s: splits.count(s) for s in ("train", "val", "test")} == {"train": 300, "val": 270, "test": 468}
    patients: dict[str, set[str]] = {}
    for line in rows[1:]:
        patients.setdefault(line.split(",")[4], set()).add(line.split(",")[3])
    assert all(len(s) == 1 for s in patients.values())
    assert card.metrics["test"].n == 468 and card.metrics["val"].n == 270
    # the card's class counts are the split file's
    assert card.class_counts["test"] == {"negative": 234, "positive": 234}


def test_the_same_pixels_as_arrays_train_the_same_model(files_model, tmp_path):
    _, result = files_model
    data = load_dataset(result.out / SPLIT_FILE, _split_file_options(result.card))
    arrays = {}
    for name, split in data.splits.items():
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = np.asarray(split.images), split.labels
    np.savez(tmp_path / "same_pixels.npz", **arrays)
    cfg = TrainConfig(data=str(tmp_path / "same_pixels.npz"), out=str(tmp_path / "m"), class_names=("NORMAL", "PNEUMONIA"),
                      **RECIPE)
    arrays_result = train(cfg)
    card = arrays_result.card
    # the second model trained in this process carries the same layer names as the first (and as a fresh process)
    assert _variable_names(arrays_result.out) == _variable_names(result.out)
    assert f"{hard_case.CONSUMER}/kernel" in _variable_names(result.out)  # what benchmarks.hard_case edits
    for split in ("val", "test"):
        got, want = card.metrics[split], result.card.metrics[split]
        assert got.auc == pytest.approx(want.auc, abs=SAME_PIXELS_TOLERANCE)
        for name, point in want.points.items():
            assert got.points[name].threshold == pytest.approx(point.threshold, abs=SAME_PIXELS_TOLERANCE)
            assert (got.points[name].sensitivity, got.points[name].specificity) == (point.sensitivity, point.specificity)


def _variable_names(model_dir: Path) -> set[str]:
    import tensorflow as tf

    return {v.name.split(":")[0] for v in tf.saved_model.load(str(model_dir / "saved_model")).variables}


def _split_file_options(card: ModelCard):
    from runtime.file_sources import model_source_options, split_file_options

    return split_file_options(model_source_options(card.class_names, card.data.training_shape, card.image_size))


@pytest.fixture(scope="module")
def exported(files_model):
    tree, result = files_model
    export_tflite(TFLiteExportConfig(model=str(result.out), max_drift=None))
    export_onnx(OnnxExportConfig(model=str(result.out), max_drift=None))
    return tree, result


def test_exports_draw_from_the_models_own_splits(exported):
    _, result = exported
    for name in ("model_int8.tflite", "model_int8.onnx"):
        sidecar = json.loads((result.out / f"{name}.json").read_text())
        assert sidecar["metadata"]["calibration"]["source"] == f"{result.out / SPLIT_FILE}:train"
        assert sidecar["verification"]["images"]["sizes"]["test"] == 468
        assert sidecar["verification"]["images"]["sizes"]["val"] == 270


def test_runtime_eval_on_the_folder_matches_the_card_and_warns_about_training_files(exported, capsys):
    tree, result = exported
    assert runtime_main(["eval", str(result.out / "model_fp32.onnx"), "--data", str(tree), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # fp32 ONNX of the same SavedModel, on the same stored pixels: the card's AUC within float rounding of the logits
    assert report["n"] == 468 and report["auc"] == pytest.approx(result.card.metrics["test"].auc, abs=1e-4)
    assert runtime_main(["eval", str(result.out / "model_int8.tflite"), "--data", str(tree / "train")]) == 0
    err = capsys.readouterr().err
    assert "warning: 300 of 300 test images are files the model was trained on" in err


def test_runtime_predict_on_a_full_size_training_file_gives_trainings_probability(exported, tmp_path):
    """Training files as they lie on disk (224 px PNG, JPEG and 16-bit DICOM) through the runtime's reader and parity,
    and the same files' stored training images through the SavedModel: the same probabilities."""
    import tensorflow as tf

    _, result = exported
    data = load_dataset(result.out / SPLIT_FILE, _split_file_options(result.card))
    rows = [r for r in data.from_files.rows if r.split == "train"][:6]
    assert {Path(r.path).suffix for r in rows} == {".png", ".jpeg", ".dcm"}
    loaded = tf.saved_model.load(str(result.out / "saved_model"))
    pixels = np.repeat(np.asarray(data.splits["train"].images[:6])[..., None], 3, axis=-1).astype(np.float32)
    trained = 1 / (1 + np.exp(-np.asarray(loaded.serve(tf.constant(pixels))).reshape(-1)))
    out = tmp_path / "rows.jsonl"
    assert runtime_main(["predict", str(result.out / "model_fp32.onnx"), *[r.path for r in rows], "--out", str(out)]) == 0
    predicted = [json.loads(line)["probability"] for line in out.read_text().splitlines()]
    np.testing.assert_allclose(predicted, trained, atol=1e-5)  # fp32 ONNX vs the SavedModel: float rounding only
