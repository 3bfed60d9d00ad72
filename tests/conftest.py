"""Shared fixtures. Real data is the bundled PneumoniaMNIST file (``runtime.bundled``): no test skips for want of it."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reference import REFERENCE_DATA
from runtime.bundled import bundled_path

ROOT = Path(__file__).resolve().parents[1]
# The kernels train.pipeline.prefer_onednn() asks for, in this process and every child, before any test imports
# TensorFlow: on an AVX2-only CPU, TensorFlow would otherwise pick slower ones, and differently in the processes
# that train (train() asks for oneDNN) and the ones that do not.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
POINTS = [{"name": "youden", "threshold": 0.5, "logit_threshold": 0.0, "rule": "youden"}]


@pytest.fixture(scope="session", autouse=True)
def image_store_in_tmp(tmp_path_factory) -> Path:
    """Decoded-image stores (runtime.image_store) go to a temporary folder, never the user's ~/.cache; subprocesses inherit it."""
    root = tmp_path_factory.mktemp("image_store")
    os.environ["INCEPTION_EDGE_DATA_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def xray_data() -> Path:
    """The bundled chest X-rays' file, checked against its sha256."""
    return bundled_path(REFERENCE_DATA)


@pytest.fixture(scope="session")
def trained75(request, tmp_path_factory):
    """The reference model: seed 0, 75x75, --weights none (about 75 s on a 2-core Zen 4 with AVX-512).

    Trained once per version of the code and data and kept in pytest's cache, shared with
    ``pytest benchmarks/`` (see ``benchmarks.reference``). Tests must never write into it: those
    that write into a model directory use a copy (``model_dir``).
    """
    from benchmarks.reference import (
        cached_trained_model,
        model_cache_root,
        reference_train_config,
    )
    from train.card import ModelCard
    from train.pipeline import TrainResult

    out = cached_trained_model(model_cache_root(request.config, tmp_path_factory), REFERENCE_DATA)
    cfg = replace(reference_train_config(REFERENCE_DATA, out), overwrite=True)
    return cfg, TrainResult(out, ModelCard.load(out))


@pytest.fixture(scope="session")
def exported75(request, tmp_path_factory) -> Path:
    """The reference model with its exports (int8 TFLite, ONNX fp32 and int8), built once and cached like
    ``trained75`` by the export library itself (``benchmarks.reference.export_reference``), with the exports' defaults."""
    from benchmarks.reference import cached_reference_model, model_cache_root

    return cached_reference_model(model_cache_root(request.config, tmp_path_factory), REFERENCE_DATA)


@pytest.fixture(scope="session")
def hard75(request, tmp_path_factory) -> Path:
    """The reference model with one tensor made hard to quantize (``benchmarks.hard_case``), exported plain int8
    (written whatever its drift) and with ``--fallback auto``, for TFLite and ONNX; cached."""
    from benchmarks.reference import cached_hard_case, model_cache_root

    return cached_hard_case(model_cache_root(request.config, tmp_path_factory), REFERENCE_DATA)


@pytest.fixture(scope="session")
def model_dir(exported75, tmp_path_factory):
    """A copy of the exported reference model, so tests that write into it do not touch the cache or each other."""
    target = tmp_path_factory.mktemp("export") / "pneumonia75"
    shutil.copytree(exported75, target)
    return target


def _published(path: Path):
    from export.session import ExportResult
    from export.sidecar import Sidecar

    return ExportResult(path, Sidecar.load(path.with_name(path.name + ".json")))


@pytest.fixture(scope="session")
def tflite_result(model_dir):
    """int8 TFLite, verified on both kernel sets (XNNPACK and the built-in kernels) under the default gate."""
    return _published(model_dir / "model_int8.tflite")


@pytest.fixture(scope="session")
def onnx_results(model_dir):
    """fp32, then int8 (model_int8.onnx)."""
    return [_published(model_dir / name) for name in ("model_fp32.onnx", "model_int8.onnx")]


@pytest.fixture()
def fake_model(tmp_path):
    """A model directory with the files discovery reads, and a SavedModel that cannot load."""
    from train.config import TrainConfig

    data = write_npz(tmp_path / "data.npz")
    model = tmp_path / "model"
    (model / "saved_model").mkdir(parents=True)
    (model / "saved_model" / "saved_model.pb").write_bytes(b"not a protobuf")
    card = {"saved_model": "saved_model", "image_size": 75, "positive_label": 1, "negative_label": 0,
            "class_names": ["normal", "pneumonia"], "operating_points": POINTS, "metrics": {},
            "data": {"path": str(data), "files": [], "image_shape": [28, 28]}, "config": "train_config.json"}
    (model / "model_card.json").write_text(json.dumps(card))
    (model / "train_config.json").write_text(json.dumps(TrainConfig(data=str(data), out=str(model)).to_dict()))
    return model, data


def make_arrays(n_per_class: int = 12, size: int = 28, channels: int | None = None, dtype=np.uint8,
                seed: int = 0, labels=(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Small labelled images whose class is visible in the mean brightness."""
    rng = np.random.default_rng(seed)
    shape = (2 * n_per_class, size, size) + ((channels,) if channels else ())
    y = np.repeat(np.asarray(labels), n_per_class)
    base = rng.integers(0, 100, size=shape)
    base[y == labels[1]] += 120
    x = base.astype(np.float32) / 255.0 if np.issubdtype(dtype, np.floating) else base.astype(np.uint8)
    return x.astype(dtype), y


def write_npz(path: Path, splits=("train", "val", "test"), **kw) -> Path:
    arrays = {}
    for i, name in enumerate(splits):
        x, y = make_arrays(seed=i, **kw)
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = x, y.reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def write_npy_dir(path: Path, splits=("train", "test"), **kw) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(splits):
        x, y = make_arrays(seed=i, **kw)
        np.save(path / f"X{name}.npy", x)
        np.save(path / f"Y{name}.npy", y)
    return path
