"""``train(config)``: data -> balanced split -> cached features -> fit -> SavedModel -> model card.

Everything is written into a hidden staging directory and renamed to ``config.out`` only
when complete, so a failed or killed run leaves ``out`` as it was.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from runtime.datasets import (Dataset, Split, binary_labels, check_split_pixels, iter_pixel_batches, load_dataset, load_npy,
                              negative_label)
from runtime.errors import ConfigError, DataError
from runtime.file_sources import SPLIT_FILE, write_split_file
from runtime.image_store import TRANSFORM
from runtime.evaluation import SplitSummary
from runtime.fileio import atomic_write_json, check_output_dir, sha256_file, sha256_tree, staged_output_dir
from runtime.images import MIN_IMAGE_SIZE
from runtime.metrics import OperatingPoint

from .balance import class_counts, stratified_split, undersample
from .card import (CARD_NAME, CONFIG_NAME, SAVED_MODEL_DIR, DataFile, DataRecord, FilesRecord, InputRecord, ModelCard,
                   package_versions)
from .config import TrainConfig
from .evaluate import choose_operating_points, saved_model_logits, split_metrics
from .distribute import SINGLE, barrier, make_strategy, peers_watched, role_from_tf_config
from .fit import cache_features, forward, keras_fit_stage
from .loop import fit_stage as loop_fit_stage
from .model import INPUT_NAME, OUTPUT_NAME, build_inception
from .precision import bf16_twin, check_bf16_supported, copy_weights

log = logging.getLogger(__name__)
EVAL_BATCH = 64


@dataclass
class TrainResult:
    out: Path
    card: ModelCard | None  # None on a worker that is not the chief: the chief alone writes the model


@dataclass
class _Rows:
    """A split restricted to some rows, with 0/1 labels."""

    split: Split
    indices: np.ndarray
    y: np.ndarray


def _image_size(cfg: TrainConfig, data: Dataset) -> int:
    if cfg.resize:
        return cfg.image_size
    train = data.splits["train"]
    h, w = train.images.shape[1:3]
    for split in data.splits.values():
        if tuple(split.images.shape[1:3]) != (h, w):
            raise DataError(f"{split.source}: images are {split.images.shape[1]}x{split.images.shape[2]} but the training images "
                            f"are {h}x{w}; without resizing every split needs the same size")
    if h != w:
        raise DataError(f"{train.source}: images are {h}x{w}; training without resizing needs square images")
    if h < MIN_IMAGE_SIZE:
        raise DataError(f"{train.source}: images are {h}x{w}, under InceptionV3's minimum of {MIN_IMAGE_SIZE}; drop --no-resize or pass --image-size")
    return int(h)


def with_source_classes(cfg: TrainConfig, data: Dataset) -> TrainConfig:
    """The config with the class names of an image-file source (its folder or label names); arrays keep the options."""
    if data.from_files is None:
        if cfg.positive_class is not None:
            raise ConfigError(f"--positive-class {cfg.positive_class!r}: names a class of image files, but {cfg.data} holds "
                              "arrays; use --positive-label for the label value of the positive class")
        return cfg
    names = data.from_files.class_names
    if not cfg.resize:
        raise ConfigError(f"--no-resize: {cfg.data} is image files, brought to --image-size {cfg.image_size} (drop --no-resize)")
    if cfg.positive_label != TrainConfig.positive_label:
        raise ConfigError(f"--positive-label {cfg.positive_label}: {cfg.data} is image files; name the positive class with "
                          "--positive-class")
    if cfg.class_names not in (TrainConfig.class_names, names):
        raise ConfigError(f"--class-names {','.join(cfg.class_names)}: {cfg.data}'s classes are {names[0]} (negative) and "
                          f"{names[1]} (positive); drop --class-names")
    return replace(cfg, class_names=names)


def _subclasses(cfg: TrainConfig, n: int) -> np.ndarray | None:
    if cfg.subclass_labels is None:
        return None
    path = Path(cfg.subclass_labels)
    if not path.is_file():
        raise DataError(f"{path}: subclass labels not found; expected a .npy file with one subclass id per training row")
    sub = np.asarray(load_npy(path))
    sub = sub.reshape(-1) if sub.ndim == 2 and sub.shape[1] == 1 else sub
    if sub.ndim != 1 or sub.shape[0] != n or not np.issubdtype(sub.dtype, np.integer):
        raise DataError(f"{path}: subclass labels have shape {sub.shape} and dtype {sub.dtype}; expected {n} integers, one per training row")
    return sub


def prepare_rows(cfg: TrainConfig, data: Dataset) -> tuple[dict[str, _Rows], dict[str, Any]]:
    """Binary labels, the validation split (given or held out), and the balanced training rows."""
    pixel_range = cfg.parsed_pixel_range
    for split in data.splits.values():
        check_split_pixels(split, pixel_range)
    train = data.splits["train"]
    y_train_all = binary_labels(train, cfg.positive_label)
    record: dict[str, Any] = {"train_before": class_counts(y_train_all)}
    rows: dict[str, _Rows] = {}
    if "val" in data.splits:
        candidate = np.arange(len(train))
        val = data.splits["val"]
        rows["val"] = _Rows(val, np.arange(len(val)), binary_labels(val, cfg.positive_label))
        record["val_source"] = "given"
    else:
        candidate, val_idx = stratified_split(y_train_all, cfg.val_fraction, cfg.seed)
        rows["val"] = _Rows(train, val_idx, y_train_all[val_idx])
        record["val_source"] = f"stratified {cfg.val_fraction:g} of train (seed {cfg.seed})"
        log.info("no validation split in %s: holding out %d training rows, stratified", data.path, val_idx.size)
    subclasses = _subclasses(cfg, len(train))
    if cfg.balance:
        keep = candidate[undersample(y_train_all[candidate], cfg.seed, None if subclasses is None else subclasses[candidate])]
        method = "seeded random undersampling" + (" within subclasses, proportionally" if subclasses is not None else "")
    else:
        keep, method = candidate, "none"
    rows["train"] = _Rows(train, keep, y_train_all[keep])
    if "test" in data.splits:
        test = data.splits["test"]
        rows["test"] = _Rows(test, np.arange(len(test)), binary_labels(test, cfg.positive_label))
    else:
        log.warning("%s has no test split: the model card will carry validation metrics only", data.path)
    record["train_after"] = class_counts(rows["train"].y)
    record.update({name: class_counts(rows[name].y) for name in ("val", "test") if name in rows})
    for name, r in rows.items():
        _check_class_counts(name, r)
    record["balancing"] = {"method": method, "seed": cfg.seed,
                           "indices_sha256": hashlib.sha256(keep.astype("<i8").tobytes()).hexdigest()}
    log.info("training classes before balancing %s, after %s (%s)", record["train_before"], record["train_after"], method)
    return rows, record


MIN_PER_CLASS = 2  # the card's DeLong AUC interval needs two images of each class in every split it scores


def _check_class_counts(name: str, r: _Rows) -> None:
    """Refuse, before any training, a split whose figures could not be computed at the end of the run."""
    counts = class_counts(r.y)
    if min(counts.values()) < MIN_PER_CLASS:
        where = r.split.source if r.indices.size == len(r.split) else f"{r.split.source} ({name} rows)"
        raise DataError(f"{where}: the {name} split has {counts['positive']} positive and {counts['negative']} negative "
                        f"images; expected at least {MIN_PER_CLASS} of each (the model card's AUC interval needs them)")


def _pixels(r: _Rows, cfg: TrainConfig, size: int):
    return iter_pixel_batches(r.split, r.indices, EVAL_BATCH, size if cfg.resize else None, cfg.parsed_pixel_range)


def _fit(cfg: TrainConfig, rows: dict[str, _Rows], size: int, work: Path, strategy: Any) -> tuple[Any, dict[str, Any]]:
    fine_tune = cfg.resolved_fine_tune()
    if cfg.fine_tune == "auto" and fine_tune is not None:
        log.info("--weights none: a frozen random base carries no learned features, so %s..mixed10 fine-tune "
                 "(--fine-tune auto); pass --fine-tune none for the notebook's frozen recipe", fine_tune)
    with strategy.scope():
        views = build_inception(size, cfg.weights, fine_tune)
    cached = {name: cache_features(views.stem, _pixels(r, cfg, size), r.indices.size, work / f"{name}_features.npy",
                                   f"{name} features ({views.cut_layer})") for name, r in rows.items() if name in ("train", "val")}
    if cfg.engine == "keras-fit":  # the notebook's plateau rules in both stages
        fit_stage = fine_tune_stage = keras_fit_stage
    else:  # the head keeps the plateau rules; the fine-tuning stage takes the configured schedule
        fit_stage, fine_tune_stage = loop_fit_stage, partial(loop_fit_stage, schedule=cfg.fine_tune_schedule)
    stages: dict[str, Any] = {}
    if fine_tune is None:
        pooled = cached
    else:
        pooled = {name: forward(views.pooled_from_cache, f, EVAL_BATCH) for name, f in cached.items()}
    stages["head"] = fit_stage(views.head, (pooled["train"], rows["train"].y), (pooled["val"], rows["val"].y),
                               cfg, cfg.learning_rate, cfg.epochs, cfg.seed, "head", strategy)
    if fine_tune is not None and cfg.fine_tune_epochs > 0:
        top = _fine_tuned_view(views.top, cfg.precision, strategy)
        stages["fine_tune"] = fine_tune_stage(top, (cached["train"], rows["train"].y), (cached["val"], rows["val"].y),
                                              cfg, cfg.fine_tune_learning_rate, cfg.fine_tune_epochs, cfg.seed + 1,
                                              f"fine-tune {fine_tune}..mixed10", strategy)
        if top is not views.top:
            copy_weights(top, views.top)
    plan = {"fine_tune": fine_tune, "trained_blocks": views.trained_blocks, "cached_layer": views.cut_layer,
            "batchnorm": "frozen (inference mode, statistics as loaded)", "engine": cfg.engine,
            "fine_tune_precision": cfg.precision if fine_tune is not None else None, "stages": stages}
    return views.model, plan


def _fine_tuned_view(top: Any, precision: str, strategy: Any) -> Any:
    """The view the fine-tuning stage trains: ``top`` itself, or its bfloat16 twin (train.precision)."""
    if precision == "float32":
        return top
    with strategy.scope():
        return bf16_twin(top)


def _weights_record(cfg: TrainConfig) -> Any:
    if cfg.weights in ("imagenet", "none"):
        return cfg.weights
    return {"file": str(Path(cfg.weights).resolve()), "sha256": sha256_file(cfg.weights)}


def _model_card(cfg: TrainConfig, stage: Path, size: int, plan: dict[str, Any], points: list[OperatingPoint],
                metrics: dict[str, SplitSummary], counts: dict[str, Any], data: Dataset, neg_label: int,
                seconds: float) -> ModelCard:
    """The model card (:class:`train.card.ModelCard`) for the model staged in ``stage``."""
    return ModelCard(
        saved_model=SAVED_MODEL_DIR, image_size=size, positive_label=cfg.positive_label,
        class_names=tuple(cfg.class_names),  # type: ignore[arg-type]
        operating_points=tuple(points), metrics=metrics,
        data=DataRecord(path=str(data.path.resolve()), bundled=data.bundled,
                        image_shape=tuple(data.splits["train"].images.shape[1:]),
                        files=tuple(DataFile(str(f.resolve()), sha256_file(f)) for f in data.files),
                        from_files=_files_record(data)),
        negative_label=neg_label,
        input=InputRecord(source_pixel_range=cfg.pixel_range or "0,255 (uint8)", name=INPUT_NAME),
        saved_model_sha256=sha256_tree(stage / SAVED_MODEL_DIR), config=CONFIG_NAME,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        output={"name": OUTPUT_NAME, "kind": "logit", "probability": "sigmoid(logit), of the positive class"},
        architecture={"base": "InceptionV3 (include_top=False)", "head": "GlobalAveragePooling2D -> Dense(1) logit",
                      "preprocessing": "in graph: x / 127.5 - 1", "weights": _weights_record(cfg),
                      **{k: v for k, v in plan.items() if k != "stages"}},
        class_counts=counts, training={"seed": cfg.seed, "stages": plan["stages"], "seconds": round(seconds, 1)},
        versions=package_versions())


def _files_record(data: Dataset) -> FilesRecord | None:
    found = data.from_files
    if found is None:
        return None
    return FilesRecord(SPLIT_FILE, found.kind, found.split_method, TRANSFORM, found.unreadable, found.duplicates)


def prefer_onednn() -> None:
    """Ask for TensorFlow's oneDNN CPU kernels unless the user chose (``TF_ENABLE_ONEDNN_OPTS``).

    TensorFlow turns them on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX; on an AVX2-only CPU it
    falls back to Eigen, whose convolution gradients made the 75x75 fine-tuning step 1.4x slower than oneDNN's AVX2
    kernels (93 against 67 ms a step of 32, measured with oneDNN held to AVX2 by ONEDNN_MAX_CPU_ISA=AVX2 on a Zen 4).
    Only works before TensorFlow is imported, which is why train() imports it late.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def train(cfg: TrainConfig) -> TrainResult:
    """Run the whole training stage and return the published directory and its model card.

    Under ``--distribute multiworker`` every process of the cluster calls this; only the chief writes ``cfg.out``
    and gets the card, the other workers return ``card=None`` after training their share.
    """
    started = time.monotonic()
    cfg.validate()
    role = role_from_tf_config() if cfg.distribute == "multiworker" else SINGLE
    out = check_output_dir(cfg.out, cfg.overwrite) if role.is_chief else Path(cfg.out)
    data = load_dataset(cfg.data, cfg.file_source_options())
    cfg = with_source_classes(cfg, data)
    size = _image_size(cfg, data)
    rows, counts = prepare_rows(cfg, data)
    prefer_onednn()
    # TensorFlow loads only now, after every check on the user's input has passed. The strategy comes first:
    # MultiWorkerMirroredStrategy must configure TensorFlow's collectives before any other TensorFlow work.
    import keras
    import tensorflow as tf

    strategy = make_strategy(cfg.distribute, role)
    if cfg.precision == "bfloat16":  # refused before any work where the CPU would only emulate it
        where = check_bf16_supported(has_gpu=bool(tf.config.list_physical_devices("GPU")))
        log.info("fine-tuning computes in bfloat16 on the %s; weights and the saved model stay float32", where)
    # Layer names (conv2d_80, ...) come from a process-wide counter: start it afresh, so that a model trained in a process
    # that built others (a notebook, a test session) has the names the command line gives it, which reports and
    # benchmarks.hard_case refer to. Before the seed: clearing the session also drops Keras's global seed state.
    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    if not role.is_chief:
        # A worker's feature caches are scratch: a temporary folder, removed however the run ends.
        with peers_watched(role), tempfile.TemporaryDirectory(prefix="inception-edge-worker-") as scratch:
            _fit(cfg, rows, size, Path(scratch), strategy)
            log.info("%s: training done; waiting for the chief to write %s", role.describe(), out)
            barrier(strategy, role)
        return TrainResult(out, None)
    neg_label = negative_label(data.splits["train"], cfg.positive_label)
    with peers_watched(role), staged_output_dir(out, cfg.overwrite) as stage:
        # Feature caches live on the output's file system (not a possibly RAM-backed /tmp) and go before publishing.
        work = stage / "_feature_cache"
        work.mkdir()
        model, plan = _fit(cfg, rows, size, work, strategy)
        shutil.rmtree(work)
        model.export(str(stage / SAVED_MODEL_DIR), verbose=False)
        logits = saved_model_logits(str(stage / SAVED_MODEL_DIR),
                                    {name: _pixels(r, cfg, size) for name, r in rows.items() if name in ("val", "test")})
        points = choose_operating_points(rows["val"].y, logits["val"], cfg.target_sensitivity, cfg.target_specificity)
        metrics = {name: split_metrics(rows[name].y, lg, points, cfg.prevalence) for name, lg in logits.items()}
        plan["replicas"] = strategy.num_replicas_in_sync
        card = _model_card(cfg, stage, size, plan, points, metrics, counts, data, neg_label, time.monotonic() - started)
        atomic_write_json(stage / CONFIG_NAME, cfg.to_dict())
        if data.from_files is not None:
            write_split_file(stage / SPLIT_FILE, data.from_files.rows)
        atomic_write_json(stage / CARD_NAME, card.to_dict())
    _log_summary(card)
    with peers_watched(role):
        barrier(strategy, role)
    return TrainResult(out, card)


def _log_summary(card: ModelCard) -> None:
    for split, m in card.metrics.items():
        log.info("%s: AUC %.4f", split, m.auc)
        for name, r in m.points.items():
            log.info("  %-16s p>=%.4f  sensitivity %.3f  specificity %.3f  accuracy %.3f",
                     name, r.threshold, r.sensitivity, r.specificity, r.accuracy)
