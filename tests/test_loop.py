"""The training loop's parts: Keras's stopping and LR rules, the batches, the replicas' shares, the loss."""

from __future__ import annotations

import numpy as np
import pytest

from train.config import TrainConfig
from train.loop import Plateau, epoch_batches, logit_bce, replica_share


def _keras_decisions(values: list[float], cfg: TrainConfig, lr: float) -> tuple[int, list[float], int]:
    """(epochs run, learning rate of each epoch, best epoch) that Keras's two callbacks give for these val_losses."""
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=cfg.early_stopping_min_delta,
                                         patience=cfg.early_stopping_patience, restore_best_weights=True)
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", min_delta=cfg.reduce_lr_min_delta,
                                               patience=cfg.reduce_lr_patience, factor=cfg.reduce_lr_factor,
                                               min_lr=cfg.min_learning_rate)
    rates = []
    for cb in (stop, reduce):
        cb.set_model(model)
        cb.on_train_begin()
    for epoch, value in enumerate(values):
        rates.append(float(model.optimizer.learning_rate.numpy()))
        for cb in (stop, reduce):
            cb.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            return epoch + 1, rates, stop.best_epoch
    return len(values), rates, stop.best_epoch


def _ours(values: list[float], cfg: TrainConfig, lr: float) -> tuple[int, list[float], int]:
    plateau, rates = Plateau.of(cfg), []
    for epoch, value in enumerate(values):
        rates.append(lr)
        _, stop, lr = plateau.after_epoch(epoch, value, lr)
        if stop:
            return epoch + 1, rates, plateau.best_epoch
    return len(values), rates, plateau.best_epoch


@pytest.mark.parametrize("seed", range(12))
def test_plateau_takes_the_decisions_keras_callbacks_take(seed):
    rng = np.random.default_rng(seed)
    # A falling, noisy val_loss with plateaus, steps near min_delta, and exact repeats.
    values = list(np.round(0.7 * np.exp(-0.2 * np.arange(30)) + rng.normal(0, 0.02, 30), 4))
    values[5:8] = [values[4]] * 3
    cfg = TrainConfig(data="x", out="y", early_stopping_patience=int(rng.integers(1, 5)), reduce_lr_patience=int(rng.integers(1, 4)))
    keras_run = _keras_decisions(values, cfg, 3e-4)
    ours = _ours(values, cfg, 3e-4)
    assert ours[0] == keras_run[0]
    assert ours[2] == keras_run[2]
    np.testing.assert_allclose(ours[1], keras_run[1], rtol=1e-6)  # Keras keeps the rate in float32


def test_plateau_by_hand():
    cfg = TrainConfig(data="x", out="y", early_stopping_patience=2, reduce_lr_patience=1, early_stopping_min_delta=0.01,
                      reduce_lr_min_delta=0.01)
    plateau = Plateau.of(cfg)
    assert plateau.after_epoch(0, 1.0, 1e-3) == (True, False, 1e-3)
    assert plateau.after_epoch(1, 0.995, 1e-3) == (False, False, pytest.approx(1e-4))  # under min_delta: no improvement
    assert plateau.after_epoch(2, 0.98, 1e-4) == (True, False, 1e-4)
    assert plateau.after_epoch(3, 0.98, 1e-4)[:2] == (False, False)
    assert plateau.after_epoch(4, 0.98, 1e-5)[:2] == (False, True)  # two epochs without improvement
    assert plateau.best_epoch == 2


def test_epoch_batches_are_seeded_cover_every_row_once_and_are_sorted():
    a = epoch_batches(70, 32, np.random.default_rng(3))
    b = epoch_batches(70, 32, np.random.default_rng(3))
    assert [len(r) for r in a] == [32, 32, 6]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(r, np.sort(r)) for r in a)
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(70))
    assert not np.array_equal(np.concatenate(a), np.arange(70))


@pytest.mark.parametrize("n,replicas", [(32, 2), (31, 2), (6, 4), (1, 2)])
def test_replica_shares_split_a_batch_in_order(n, replicas):
    batch = np.arange(n) * 10
    shares = [replica_share(batch, r, replicas) for r in range(replicas)]
    np.testing.assert_array_equal(np.concatenate(shares), batch)
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_logit_bce_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 8, 200).astype(np.float32)
    y = rng.integers(0, 2, 200)
    expected = keras.losses.binary_crossentropy(y.reshape(-1, 1).astype(np.float32), logits.reshape(-1, 1), from_logits=True)
    np.testing.assert_allclose(logit_bce(y, logits), np.asarray(expected), rtol=1e-5, atol=1e-6)
