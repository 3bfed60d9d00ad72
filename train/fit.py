"""Training on cached features: the frozen part of the network runs once, not every epoch; and the notebook's loop.

A 299x299 forward pass costs about 67 ms per image on a 2-core CPU, so 20 naive epochs over
2,428 images take about 55 minutes; caching the frozen part's output makes each epoch cost
only the trainable part. Features go to a memory-mapped file, so memory stays flat however
large the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig

log = logging.getLogger(__name__)


def compiled_forward(model: Any) -> Any:
    """``model`` in inference mode as one compiled function of a batch.

    Not Keras's ``predict``: under a tf.distribute strategy that would spread each batch over the cluster's replicas,
    while every process here needs the outputs of every row it asks for.
    """
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def batched_outputs(run: Callable[[np.ndarray], Any], x: np.ndarray, batch_size: int) -> np.ndarray:
    """``run``'s outputs for every row of ``x`` (which may be memory-mapped), ``batch_size`` rows at a time."""
    return np.concatenate([np.asarray(run(np.asarray(x[i:i + batch_size])), dtype=np.float32)
                           for i in range(0, len(x), batch_size)])


def forward(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model``'s outputs for every row of ``x``, through one compiled function (:func:`compiled_forward`)."""
    return batched_outputs(compiled_forward(model), x, batch_size)


def cache_features(extractor: Any, batches: Iterable[np.ndarray], n: int, path: Path, what: str) -> np.ndarray:
    """Run ``extractor`` over ``batches`` (n rows in all) into a .npy memmap at ``path``."""
    out: np.ndarray | None = None
    run = compiled_forward(extractor)
    done, last_report, start = 0, -1, time.monotonic()
    for batch in batches:
        feats = np.asarray(run(batch), dtype=np.float32)
        if out is None:
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *feats.shape[1:]))
        out[done:done + feats.shape[0]] = feats
        done += feats.shape[0]
        pct = 100 * done // n
        if pct // 10 != last_report:
            last_report = pct // 10
            log.info("%s: %d/%d images (%d%%, %.0f s)", what, done, n, pct, time.monotonic() - start)
    if out is None or done != n:
        raise RuntimeError(f"feature cache for {what} holds {done} of {n} rows")
    out.flush()
    return out


def _batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Shuffled mini-batches read from (possibly memory-mapped) arrays, reshuffled each epoch."""

        def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> None:
            super().__init__()
            self.x, self.y, self.batch_size = x, y.astype(np.float32).reshape(-1, 1), batch_size
            self.rng = np.random.default_rng(seed) if seed is not None else None
            self.order = np.arange(len(self.y))
            self.on_epoch_end()

        def __len__(self) -> int:
            return (len(self.y) + self.batch_size - 1) // self.batch_size

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
            return np.asarray(self.x[rows]), self.y[rows]

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.order = self.rng.permutation(len(self.y))

    return ArrayBatches


def keras_fit_stage(model: Any, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                    cfg: TrainConfig, learning_rate: float, epochs: int, seed: int, name: str, strategy: Any) -> dict[str, Any]:
    """The notebook's loop as it was written, with ``model.fit`` (``--engine keras-fit``).

    Kept as the reference :mod:`train.loop` is measured against (``python -m benchmarks.train_speed``): the same
    rules on the notebook's plateau schedule only (TrainConfig refuses the cosine one with this engine), about twice
    the time a step on a CPU. One process or MirroredStrategy only.
    """
    import keras

    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=cfg.early_stopping_min_delta,
                                      patience=cfg.early_stopping_patience, restore_best_weights=cfg.restore_best_weights),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", min_delta=cfg.reduce_lr_min_delta, patience=cfg.reduce_lr_patience,
                                          factor=cfg.reduce_lr_factor, min_lr=cfg.min_learning_rate),
    ]
    batches = _batches_class()
    log.info("%s: up to %d epochs at learning rate %g on %d rows", name, epochs, learning_rate, len(train[1]))
    start = time.monotonic()
    history = model.fit(
        batches(*train, cfg.batch_size, seed),
        validation_data=batches(*val, cfg.batch_size, None),
        epochs=epochs, callbacks=callbacks, verbose=2,
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best = int(np.argmin(hist["val_loss"]))
    return {"epochs_run": len(hist["val_loss"]), "best_epoch": best + 1, "best_val_loss": hist["val_loss"][best],
            "learning_rate": learning_rate, "seconds": round(time.monotonic() - start, 1), "history": hist}
