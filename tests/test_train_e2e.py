"""End to end on the bundled PneumoniaMNIST arrays at 75x75 with --weights none: the training stage's acceptance run.

One training run (about 3-4 minutes on 2 cores) serves every test in this module.
"""

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from runtime.datasets import binary_labels, iter_pixel_batches, load_dataset
from runtime.metrics import sigmoid
from runtime.stats import wilson
from train.config import TrainConfig


@pytest.fixture(scope="module")
def trained(trained75):
    return trained75


@pytest.fixture(scope="module")
def saved_model_test_logits(trained, xray_data):
    import tensorflow as tf

    cfg, result = trained
    loaded = tf.saved_model.load(str(result.out / result.card.saved_model))
    test = load_dataset(xray_data).splits["test"]
    logits = np.concatenate([np.asarray(loaded.serve(tf.constant(b))).reshape(-1)
                             for b in iter_pixel_batches(test, np.arange(len(test)), 100, 75, None)])
    return binary_labels(test, 1), logits


def test_card_holds_the_contract_fields(trained, xray_data):
    cfg, result = trained
    card = json.loads((result.out / "model_card.json").read_text())
    assert card == result.card.to_dict() and card["card_version"] == 2
    assert (result.out / card["saved_model"] / "saved_model.pb").is_file()
    assert card["image_size"] == 75 and card["positive_label"] == 1 and card["negative_label"] == 0
    assert card["class_names"] == ["normal", "pneumonia"]
    assert [p["name"] for p in card["operating_points"]] == ["youden", "high_sensitivity", "high_specificity"]
    assert all(0.0 < p["threshold"] < 1.0 for p in card["operating_points"])
    assert card["data"]["files"][0]["sha256"] == "f36c2b3e34de9d60c5c734118bc6daff281eaf76b67a57d26ad958da948274b0"
    assert card["class_counts"]["train_after"] == {"negative": 1214, "positive": 1214}
    assert card["architecture"]["trained_blocks"] == ["mixed8", "mixed9", "mixed10"]  # --fine-tune auto with --weights none
    assert card["architecture"]["fine_tune_precision"] == "float32"
    assert card["input"]["range"] == [0, 255] and card["input"]["dtype"] == "float32"
    assert {"tensorflow", "keras", "numpy", "python"} <= set(card["versions"])


def test_meets_the_accuracy_bar(trained):
    test = trained[1].card.metrics["test"]
    assert test.auc >= 0.92
    assert test.points["youden"].sensitivity >= 0.82 and test.points["youden"].specificity >= 0.82


def test_card_metrics_equal_sklearn_on_the_saved_models_own_predictions(trained, saved_model_test_logits):
    test = trained[1].card.metrics["test"]
    y, logits = saved_model_test_logits
    prob = sigmoid(logits)
    assert test.auc == pytest.approx(roc_auc_score(y, prob), abs=1e-6)
    for point in trained[1].card.operating_points:
        tn, fp, fn, tp = confusion_matrix(y, prob >= point.threshold, labels=[0, 1]).ravel()
        m = test.points[point.name]
        assert (m.tp, m.fp, m.tn, m.fn) == (tp, fp, tn, fn)
        assert m.sensitivity == pytest.approx(tp / (tp + fn))
        assert m.specificity == pytest.approx(tn / (tn + fp))
        assert m.accuracy == pytest.approx((tp + tn) / y.size)
        # every rate with its 95% interval, computed by runtime.evaluation as `python -m runtime eval` does
        assert m.interval("sensitivity") == wilson(int(tp), int(tp + fn))
        assert m.at_prevalence.ppv.value == pytest.approx(tp / (tp + fp), rel=1e-12)  # the split's own prevalence
    assert test.auc_interval.method == "delong" and test.auc_interval.low < test.auc < test.auc_interval.high
    assert test.one_image.sensitivity == 1 / int(y.sum())


def test_saved_model_takes_raw_pixels(trained):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained[1].out / "saved_model"))
    spec = loaded.signatures["serving_default"].structured_input_signature[1]
    (tensor_spec,) = spec.values()
    assert tensor_spec.dtype == tf.float32 and tensor_spec.shape.as_list() == [None, 75, 75, 3]
    # scaling to [-1, 1] happens in the graph: a white and a black image give different, finite logits
    out = loaded.serve(tf.constant(np.stack([np.zeros((75, 75, 3)), np.full((75, 75, 3), 255.0)]).astype("float32")))
    assert np.isfinite(out.numpy()).all() and abs(float(out[0, 0] - out[1, 0])) > 1e-3


def test_card_reader_accepts_the_output_and_names_what_is_missing(trained, tmp_path):
    from runtime.errors import ModelCardError
    from train.card import ModelCard

    assert ModelCard.load(trained[1].out) == trained[1].card
    with pytest.raises(ModelCardError, match="no model card"):
        ModelCard.load(tmp_path)
    broken = trained[1].card.to_dict()
    del broken["operating_points"], broken["data"]
    (tmp_path / "model_card.json").write_text(json.dumps(broken))
    with pytest.raises(ModelCardError, match="missing fields \\['operating_points', 'data'\\]"):
        ModelCard.load(tmp_path)
    # a version 1 card (each split's operating points beside its AUC) still reads, and writes back as version 2
    first = trained[1].card.to_dict()
    first["card_version"] = 1
    for split in first["metrics"].values():
        split.update(split.pop("operating_points"))
    (tmp_path / "model_card.json").write_text(json.dumps(first))
    assert ModelCard.load(tmp_path).to_dict() == trained[1].card.to_dict()


def test_config_round_trips(trained):
    cfg, result = trained
    assert TrainConfig.load(result.out / "train_config.json") == cfg
