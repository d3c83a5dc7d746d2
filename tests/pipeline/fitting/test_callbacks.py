"""Crash-safe checkpoints: what a process killed in the middle of a write leaves must resume."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from pipeline.fitting.callbacks import CrashSafeBackup, CrashSafeCheckpoint

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
