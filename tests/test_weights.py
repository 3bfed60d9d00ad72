"""``--weights FILE`` and the message when the ImageNet download is impossible (nothing downloads here)."""

import json

import h5py
import numpy as np
import pytest

from conftest import write_npy_dir
from runtime.errors import WeightsError


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    d = tmp_path_factory.mktemp("weights")
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    rng = np.random.default_rng(0)
    for w in base.weights:  # distinctive values, so a silent fallback to random init would show
        w.assign((rng.normal(size=w.shape) * 0.05 + (1.0 if "variance" in w.path else 0.0)).astype("float32"))
    new_format = d / "inception.weights.h5"
    base.save_weights(new_format)
    legacy = d / "inception_v3_notop.h5"  # the layout of Keras's ImageNet download
    with h5py.File(legacy, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)
    return base, new_format, legacy


@pytest.mark.parametrize("which", [1, 2])
def test_local_weights_file_is_loaded_into_the_base(weights_files, which):
    from train.model import build_inception

    base, path = weights_files[0], weights_files[which]
    views = build_inception(75, str(path), None)
    loaded = [w for w in views.model.weights if not w.path.startswith("logit")]
    assert len(loaded) == len(base.weights) == 376
    for got, want in zip(loaded, base.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    from train.model import build_inception

    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as handle:
        handle.create_dataset("junk", data=np.zeros(3))
    with pytest.raises(WeightsError, match="other.h5: cannot load as InceptionV3 weights"):
        build_inception(75, str(bad), None)


def test_failed_imagenet_download_names_the_alternatives(monkeypatch):
    import keras.src.applications.inception_v3 as inception_module
    from train.model import build_inception

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example/notop.h5: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(inception_module.file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as info:
        build_inception(75, "imagenet", None)
    message = str(info.value)
    assert "cannot download the ImageNet weights" in message and "--weights FILE" in message and "--weights none" in message
    assert "\n" not in message


def test_train_cli_with_a_weights_file_runs_the_frozen_recipe(weights_files, tmp_path):
    """A small end-to-end run: local weights, .npy arrays without val (held out), frozen base, tf.distribute on CPU."""
    from train.__main__ import main

    data = write_npy_dir(tmp_path / "arrays", splits=("train", "test"), n_per_class=20)
    out = tmp_path / "model"
    code = main(["--data", str(data), "--out", str(out), "--image-size", "75", "--weights", str(weights_files[2]),
                 "--epochs", "2", "--seed", "3", "--class-names", "normal,pneumonia", "--distribute", "mirrored"])
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["architecture"]["fine_tune"] is None and card["architecture"]["trained_blocks"] == []
    assert card["architecture"]["weights"]["sha256"] == __import__("runtime.fileio").fileio.sha256_file(weights_files[2])
    assert card["class_names"] == ["normal", "pneumonia"]
    assert card["class_counts"]["val"] == {"negative": 2, "positive": 2}
    assert card["class_counts"]["val_source"].startswith("stratified 0.1")
    assert card["training"]["stages"]["head"]["epochs_run"] <= 2
    assert sorted(p.name for p in out.iterdir()) == ["model_card.json", "saved_model", "train_config.json"]
