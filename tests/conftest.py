"""Shared fixtures. The shared data lives outside the repository, at ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist_balanced.npz"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_file():
        pytest.skip(f"{SHARED_DATA} not found (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained75(shared_data, tmp_path_factory):
    """The issue's reference model: seed 0, 75x75, --weights none (about 3-4 minutes on 2 cores, once per session).

    Tests that write into a model directory must copy it first (see ``model75_copy``).
    """
    from train import train
    from train.config import TrainConfig

    out = tmp_path_factory.mktemp("e2e") / "pneumonia75"
    cfg = TrainConfig(data=str(shared_data), out=str(out), image_size=75, weights="none", seed=0,
                      class_names=("normal", "pneumonia"))
    return cfg, train(cfg)


@pytest.fixture(scope="session")
def model_dir(trained75, tmp_path_factory):
    """A copy of the trained model, so exports written into it do not touch other tests."""
    _, result = trained75
    target = tmp_path_factory.mktemp("export") / "pneumonia75"
    shutil.copytree(result.out, target)
    return target


@pytest.fixture(scope="session")
def tflite_result(model_dir):
    from export.config import TFLiteExportConfig
    from export.tflite import export_tflite

    # Default kernels only: this small random-init model's builtin-kernel agreement (0.974 on val) misses the
    # default 0.98 limit; test_builtin_kernels_are_verified_too exercises that second verification.
    return export_tflite(TFLiteExportConfig(model=str(model_dir), verify_kernels=("default",)))


@pytest.fixture(scope="session")
def onnx_results(model_dir):
    from export.config import OnnxExportConfig
    from export.onnx import export_onnx

    return export_onnx(OnnxExportConfig(model=str(model_dir), target="x86"))


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
