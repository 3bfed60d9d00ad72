import json

import pytest

from runtime.errors import ConfigError
from train.config import TrainConfig


def test_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(data="d.npz", out="o", image_size=75, weights="none", class_names=("normal", "pneumonia"),
                      pixel_range="0,1", seed=5, fine_tune="mixed8")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(path) == cfg


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 74}, "--image-size 74: expected an integer >= 75"),
    ({"fine_tune": "mixed11"}, "--fine-tune 'mixed11'"),
    ({"weights": "resnet"}, "--weights 'resnet'"),
    ({"class_names": ("a", "a")}, "two distinct names"),
    ({"pixel_range": "0"}, "pixel range '0'"),
    ({"val_fraction": 0.7}, "--val-fraction 0.7"),
    ({"epochs": 0}, "--epochs 0"),
    ({"learning_rate": -1.0}, "--learning-rate -1.0"),
    ({"target_sensitivity": 1.0}, "--target-sensitivity 1.0"),
    ({"distribute": "tpu"}, "--distribute 'tpu'"),
])
def test_invalid_options_name_the_option_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        TrainConfig(data="d", out="o", **kwargs)


def test_unknown_keys_in_a_saved_config_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": "d", "out": "o", "epoch": 3}))
    with pytest.raises(ConfigError, match="unknown keys \\['epoch'\\]"):
        TrainConfig.load(path)


def test_fine_tune_auto_depends_on_the_weights():
    assert TrainConfig(data="d", out="o").resolved_fine_tune() is None  # the notebook's frozen ImageNet base
    assert TrainConfig(data="d", out="o", weights="none").resolved_fine_tune() == "mixed8"
    assert TrainConfig(data="d", out="o", weights="none", fine_tune="none").resolved_fine_tune() is None
