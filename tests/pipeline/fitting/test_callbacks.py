"""The callbacks of every fit: crash-safe checkpoints, learning-rate schedules, one list."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from pipeline.config import TrainConfig
from pipeline.fitting.callbacks import (
    CrashSafeBackup,
    CrashSafeCheckpoint,
    fit_callbacks,
    learning_rate_schedule,
)

rng = np.random.default_rng(0)
FEATURES = rng.normal(size=(64, 4)).astype("float32")
TARGETS = (FEATURES @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32"))[:, None]


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


class StopAt(keras.callbacks.Callback):
    """Raise as epoch `epoch` (0-based) begins, the way a killed process stops: no on_train_end."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.weights_then = [value.copy() for value in self.model.get_weights()]
            raise KeyboardInterrupt


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_train_begin(self, logs=None):
        self.weights_at_start = self.model.get_weights()

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_backup_resumes_from_its_last_commit_despite_a_write_cut_short(tmp_path):
    backup = tmp_path / "backup"
    stop = StopAt(2)
    with pytest.raises(KeyboardInterrupt):
        small_model().fit(FEATURES, TARGETS, epochs=5, verbose=0, callbacks=[CrashSafeBackup(str(backup)), stop])
    metadata = json.loads((backup / "training_metadata.json").read_text())
    assert metadata == {"epoch": 2, "batch": 0, "weights": "epoch2-batch0.weights.h5"}
    assert sorted(path.name for path in backup.iterdir()) == ["epoch2-batch0.weights.h5", "training_metadata.json"]
    # A kill during epoch 3's backup: its weights half written, its metadata not yet renamed.
    (backup / "epoch3-batch0.partial.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))
    (backup / "training_metadata.json.partial").write_text('{"epoch": 3, "ba')

    recorder = Recorder()
    small_model().fit(FEATURES, TARGETS, epochs=5, verbose=0, callbacks=[CrashSafeBackup(str(backup)), recorder])
    assert recorder.epochs == [2, 3, 4]
    for restored, saved in zip(recorder.weights_at_start, stop.weights_then, strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert not backup.exists()  # a finished fit removes its backup, as Keras' does


def test_backup_without_a_commit_starts_from_the_first_epoch(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "epoch1-batch0.partial.weights.h5").write_bytes(bytes(96))  # killed in the first write
    recorder = Recorder()
    small_model().fit(FEATURES, TARGETS, epochs=2, verbose=0, callbacks=[CrashSafeBackup(str(backup)), recorder])
    assert recorder.epochs == [0, 1]


def test_best_checkpoint_is_replaced_whole_or_not_at_all(tmp_path):
    best = tmp_path / "best.weights.h5"
    staging = tmp_path / "best.partial.weights.h5"
    staging.write_bytes(bytes(96))  # left by a crash
    model = small_model()
    model.fit(FEATURES, TARGETS, epochs=2, verbose=0,
              callbacks=[CrashSafeCheckpoint(str(best), monitor="loss", mode="min", save_best_only=True)])
    assert best.exists() and not staging.exists()
    written = best.read_bytes()
    model.load_weights(str(best))

    staging.write_bytes(bytes(96))
    model.fit(FEATURES, TARGETS, epochs=2, verbose=0,  # never better than loss 0: nothing saved
              callbacks=[CrashSafeCheckpoint(str(best), monitor="loss", mode="min", save_best_only=True,
                                             initial_value_threshold=0.0)])
    assert best.read_bytes() == written and not staging.exists()


class NoRun:
    """Stands in for an MLflow run: no history, logs nothing."""

    def metric_history(self, key):
        return []

    def log_metrics(self, metrics, step=None):
        pass


class LearningRates(keras.callbacks.Callback):
    """The learning rate each epoch trains with (recorded after the schedule has set it)."""

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def train_config(**fields) -> TrainConfig:
    return TrainConfig(**{"epochs": 10, "early_stopping_patience": None, **fields})


def test_cosine_schedule_warms_up_then_halves_at_the_middle_of_the_rest():
    schedule = learning_rate_schedule(train_config(lr_schedule="cosine", warmup_epochs=2), 0.1, "max")
    rates = [schedule.schedule(epoch, 0.0) for epoch in range(10)]
    assert rates[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])  # linear warm-up, then the base
    assert rates[6] == pytest.approx(0.05)  # half way through the 8 cosine epochs
    assert rates[9] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(later < earlier for earlier, later in zip(rates[2:], rates[3:]))


def test_the_schedule_is_what_the_optimizer_trains_with(tmp_path):
    recorder = LearningRates()
    model = small_model()
    callbacks = fit_callbacks(train_config(epochs=4, monitor="val_loss", warmup_epochs=1),
                              mlflow_run=NoRun(), backup_dir=tmp_path / "backup",
                              base_learning_rate=0.01, examples_per_epoch=64)
    model.fit(FEATURES, TARGETS, epochs=4, verbose=0, validation_split=0.25,
              callbacks=[*callbacks, recorder])
    assert recorder.rates == pytest.approx([0.005, 0.01, 0.01 * 0.5 * (1 + math.cos(math.pi / 3)),
                                            0.01 * 0.5 * (1 + math.cos(2 * math.pi / 3))], rel=1e-6)


def test_plateau_divides_by_five_after_two_epochs_without_improvement():
    model = small_model()  # Adam(0.01)
    schedule = learning_rate_schedule(train_config(lr_schedule="plateau", monitor="val_loss"), 0.01, "min")
    schedule.set_model(model)
    schedule.on_train_begin()
    rates = []
    for epoch, val_loss in enumerate([1.0, 0.9, 0.9, 0.9, 0.9, 0.9]):
        schedule.on_epoch_end(epoch, {"val_loss": val_loss})
        rates.append(float(model.optimizer.learning_rate.numpy()))
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.002, 0.002, 0.0004])


def test_constant_schedule_leaves_the_rate_alone(tmp_path):
    callbacks = fit_callbacks(train_config(epochs=3, lr_schedule="constant", monitor="val_loss"),
                              mlflow_run=NoRun(), backup_dir=tmp_path / "backup",
                              base_learning_rate=0.01, examples_per_epoch=64)
    assert not any(isinstance(callback, (keras.callbacks.LearningRateScheduler,
                                         keras.callbacks.ReduceLROnPlateau))
                   for callback in callbacks)
    recorder = LearningRates()
    small_model().fit(FEATURES, TARGETS, epochs=3, verbose=0, validation_split=0.25,
                      callbacks=[*callbacks, recorder])
    assert recorder.rates == pytest.approx([0.01] * 3)


def test_one_list_for_training_and_trials(tmp_path):
    """What a trial leaves out (early stopping, its own best checkpoint) is the config's say."""
    common = dict(mlflow_run=NoRun(), backup_dir=tmp_path / "backup", base_learning_rate=0.01,
                  examples_per_epoch=64)
    training = fit_callbacks(train_config(early_stopping_patience=3), **common,
                             best_weights=tmp_path / "best.weights.h5")
    trial = fit_callbacks(train_config(), **common, metric_prefix="execution1/")
    names = [type(callback).__name__ for callback in training]
    assert names == ["CrashSafeBackup", "CrashSafeCheckpoint", "EpochTimer", "TerminateOnNaN",
                     "EarlyStopping", "LearningRateScheduler", "MetricsCallback"]
    assert [type(callback).__name__ for callback in trial] == [
        name for name in names if name not in ("CrashSafeCheckpoint", "EarlyStopping")]
    assert trial[-1].prefix == "execution1/"
