"""The model card: what later stages and outside checks need to use the model correctly.

Contract (read by export/, runtime/, benchmarks/): ``saved_model`` (path relative to the card),
``image_size``, ``positive_label``, ``class_names``, ``operating_points`` (``name``,
``threshold`` as a probability, one named ``youden``), ``metrics["test"]["auc"]`` and
``metrics["test"][NAME]`` with sensitivity, specificity and accuracy per operating point, and
``data`` with the data files' sha256.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.errors import ModelCardError

CARD_NAME = "model_card.json"
CONFIG_NAME = "train_config.json"
SAVED_MODEL_DIR = "saved_model"
CARD_VERSION = 1
REQUIRED = ("saved_model", "image_size", "positive_label", "class_names", "operating_points", "metrics", "data")


def package_versions(names: tuple[str, ...] = ("inception-edge", "tensorflow", "keras", "numpy", "pillow")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """Load and check a model card; raise :class:`ModelCardError` naming what is wrong."""
    path = Path(model_dir) / CARD_NAME
    if not Path(model_dir).is_dir():
        raise ModelCardError(f"{model_dir}: not a directory; expected a model directory written by `python -m train`")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"{path}: no model card; expected the {CARD_NAME} written by `python -m train`") from None
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: not a readable JSON model card ({exc})") from None
    missing = [k for k in REQUIRED if k not in card] if isinstance(card, dict) else list(REQUIRED)
    if missing:
        raise ModelCardError(f"{path}: missing fields {missing}")
    if not any(p.get("name") == "youden" for p in card["operating_points"]):
        raise ModelCardError(f"{path}: no operating point named 'youden'")
    return card
