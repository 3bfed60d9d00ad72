"""The small reference model: trained and exported once, then reused from a cache.

``pytest benchmarks/`` and the end-to-end tests need a trained model with its exports. Training
one takes minutes, so it is built once per combination of code, data and versions and kept in a
cache directory: the key hashes every source file the entry depends on (``train/`` and
``runtime/`` for the trained model, ``export/`` too for its exports), the data file's sha256 and
the versions of the packages that shape the numbers, so an edit to any of them builds a fresh
model instead of testing a stale one. Each entry is written to a
temporary sibling and renamed into place (``runtime.fileio.staged_output_dir``), so a killed build
leaves no half entry.

It also generates the synthetic data the demo uses when asked for it (``--data synthetic``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

from export.config import DriftLimits
from runtime.bundled import bundled_path, is_bundled_name
from runtime.errors import DriftError
from runtime.fileio import atomic_write_bytes, sha256_file, staged_output_dir

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = "pneumoniamnist"  # the bundled chest X-rays (runtime.bundled): there on every install
CLASS_NAMES = ("normal", "pneumonia")
REFERENCE_SIZE = 75  # InceptionV3's minimum: the whole build (training, three exports) takes about 5 minutes on 2 cores
REFERENCE_EXPORTS = ("model_int8.tflite", "model_fp32.onnx", "model_int8.onnx")
_KEY_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy", "pillow")


def reference_train_config(data: str | Path, out: str | Path):
    """The reference recipe: seed 0, 75x75, random weights (nothing to download)."""
    from train.config import TrainConfig

    return TrainConfig(data=str(data), out=str(out), image_size=REFERENCE_SIZE, weights="none", seed=0,
                       class_names=CLASS_NAMES)


TRAINING_CODE = ("train", "runtime")  # what a trained model depends on; its exports depend on export/ too
EXPORT_CODE = ("train", "export", "runtime")


def cache_key(data: str | Path, *parts: str, code: tuple[str, ...] = EXPORT_CODE) -> str:
    """A hash of the code, the data and the package versions: a different value means a different model."""
    h = hashlib.sha256()
    for package in code:
        for path in sorted((ROOT / package).rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    for name in _KEY_PACKAGES:
        try:
            h.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=absent".encode())
    h.update(sha256_file(bundled_path(data) if is_bundled_name(data) else data).encode())
    for part in parts:
        h.update(part.encode())
    return h.hexdigest()[:16]


def cached_trained_model(cache_root: Path, data: str | Path) -> Path:
    """The reference model, trained (no exports); built on the first call for this key.

    train() stages its output and renames it into place itself, so it writes straight to the
    final path (which its saved config then names exactly).
    """
    key = cache_key(data, json.dumps({**reference_train_config(data, "").to_dict(), "out": None}, sort_keys=True),
                    code=TRAINING_CODE)
    model = Path(cache_root) / f"trained-{key}" / "model"
    if not (model / "model_card.json").is_file():
        from train import train

        train(replace(reference_train_config(data, model), overwrite=True))
    return model


def reference_export_configs(model_dir: Path, max_drift: DriftLimits | None = DriftLimits()) -> list:
    """The export configs of the reference model: int8 TFLite, then ONNX (fp32 and int8)."""
    from export.config import OnnxExportConfig, TFLiteExportConfig

    return [TFLiteExportConfig(model=str(model_dir), max_drift=max_drift), OnnxExportConfig(model=str(model_dir), max_drift=max_drift)]


def export_reference(model_dir: Path, max_drift: DriftLimits | None = DriftLimits()) -> None:
    """int8 TFLite and ONNX (fp32, then int8) into ``model_dir``, with the exports' defaults (TFLite verified on
    both kernel sets, the non-inferiority gate) unless ``max_drift`` says otherwise.

    An export the gate refuses leaves its ``.rejected.json``, which the benchmark shows as a failed
    row; it does not stop the others.
    """
    from export.config import TFLiteExportConfig
    from export.onnx import export_onnx
    from export.tflite import export_tflite

    for cfg in reference_export_configs(model_dir, max_drift):
        try:
            export_tflite(cfg) if isinstance(cfg, TFLiteExportConfig) else export_onnx(cfg)
        except DriftError as exc:
            log.warning("%s", exc)


def cached_reference_model(cache_root: Path, data: str | Path) -> Path:
    """The reference model with every export of ``REFERENCE_EXPORTS``; trained and exported once per key."""
    trained = cached_trained_model(cache_root, data)
    configs = [c.to_dict() for c in reference_export_configs(Path("MODEL"))]
    destination = Path(cache_root) / f"exported-{cache_key(data, trained.parent.name, json.dumps(configs, sort_keys=True))}"
    if not destination.exists():  # staged and renamed whole, so an entry that exists is complete
        with staged_output_dir(destination, overwrite=False) as stage:
            # Exports read the card and data from the model directory, so they run in the staged copy; the card's
            # paths are relative to the card, so the rename keeps it valid.
            shutil.copytree(trained, stage / "model")
            export_reference(stage / "model")
    return destination / "model"


def hard_case_export_configs(model_dir: Path) -> list:
    """Plain int8 written whatever its drift (so the benchmark can show it), then the fallback at the default gate."""
    from export.config import OnnxExportConfig, TFLiteExportConfig

    model = str(model_dir)
    return [TFLiteExportConfig(model=model, verify_kernels=("default",), max_drift=None),
            TFLiteExportConfig(model=model, verify_kernels=("default",), fallback="auto"),
            OnnxExportConfig(model=model, max_drift=None),
            OnnxExportConfig(model=model, fallback="auto")]


def cached_hard_case(cache_root: Path, data: str | Path) -> Path:
    """The reference model made hard to quantize (``benchmarks.hard_case``), with plain and fallback int8 exports."""
    from benchmarks import hard_case
    from export.config import TFLiteExportConfig
    from export.onnx import export_onnx
    from export.tflite import export_tflite

    trained = cached_trained_model(cache_root, data)
    configs = hard_case_export_configs(Path("MODEL"))
    key = cache_key(data, trained.parent.name, Path(hard_case.__file__).read_text(encoding="utf-8"),
                    json.dumps([c.to_dict() for c in configs], sort_keys=True))
    destination = Path(cache_root) / f"hard-{key}"
    if not destination.exists():
        with staged_output_dir(destination, overwrite=False) as stage:
            model = hard_case.build_hard_case(trained, stage / "model")
            for cfg in hard_case_export_configs(model):
                export_tflite(cfg) if isinstance(cfg, TFLiteExportConfig) else export_onnx(cfg)
    return destination / "model"


def synthetic_dataset(path: Path, seed: int = 0, n_train: int = 400, n_val: int = 300, n_test: int = 300) -> Path:
    """A small labelled dataset made in code (the demo's ``--data synthetic``).

    Not medical data. Each 28x28 grayscale image is a smooth "chest" silhouette with two darker
    "lung" fields, noise and a random exposure; in class 1 one lung field also holds one to three
    bright blurred blobs (stand-ins for consolidation). It exists to exercise the pipeline end to end, offline; its
    numbers say nothing about any clinical task. ``n_*`` are per class.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)

    def image(positive: bool) -> np.ndarray:
        body = 150 + 30 * np.exp(-((xx - 14) ** 2) / 120.0)
        lungs = sum(60 * np.exp(-(((xx - cx) / 4.5) ** 2 + ((yy - 14) / 8.0) ** 2)) for cx in (8.5, 19.5))
        img = body - lungs + rng.normal(0, 10, (28, 28))
        if positive:
            cx = rng.choice((8.5, 19.5)) + rng.normal(0, 1.5)
            for _ in range(rng.integers(1, 4)):
                bx, by, r = cx + rng.normal(0, 2), 14 + rng.normal(0, 4), rng.uniform(2.0, 3.5)
                img += rng.uniform(35, 60) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * r * r))
        img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 12)  # exposure varies, so brightness alone is a weak cue
        return np.clip(img, 0, 255).astype(np.uint8)

    arrays = {}
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = np.repeat([0, 1], n)
        rng.shuffle(labels)
        arrays[f"{name}_images"] = np.stack([image(bool(y)) for y in labels])
        arrays[f"{name}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def model_cache_root(pytest_config, tmp_path_factory) -> Path:
    """Where tests keep built models: $INCEPTION_EDGE_MODEL_CACHE, else pytest's cache (.pytest_cache), else a temp dir."""
    import os

    if os.environ.get("INCEPTION_EDGE_MODEL_CACHE"):
        return Path(os.environ["INCEPTION_EDGE_MODEL_CACHE"])
    cache = getattr(pytest_config, "cache", None)
    return Path(cache.mkdir("inception-edge-models")) if cache is not None else tmp_path_factory.mktemp("models")
