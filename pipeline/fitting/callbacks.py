"""The Keras callbacks every fit runs with (`fit_callbacks`), training and tuning trials alike.

One list, built in one place: crash-safe backup and best-epoch checkpoint, epoch timing,
stopping on a NaN loss, early stopping, the learning-rate schedule, and MLflow logging.

Keras' BackupAndRestore and ModelCheckpoint overwrite their files in place, so a process
killed while writing one (SIGKILL, the OOM killer, a lost machine) leaves a truncated HDF5
file and the next run fails on it ('truncated file' from h5py) instead of resuming. The
versions here write every file under a staging name and rename it into place, and the
backup's metadata, renamed last, names the weights it goes with: a crash leaves the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import keras

from pipeline.config import TrainConfig
from pipeline.fitting.gradient_monitor import GradientMonitor
from pipeline.tracking import MetricsCallback, Run


def monitor_mode(metric: str) -> str:
    """Return "max" for an accuracy, "min" for a loss: which way is better for `metric`."""
    return "max" if metric.endswith("accuracy") else "min"


def fit_callbacks(config: TrainConfig, *, mlflow_run: Run, backup_dir: Path,
                  base_learning_rate: float, examples_per_epoch: int,
                  best_weights: Path | None = None, restore_dir: Path | None = None,
                  metric_prefix: str = "",
                  monitor_sample: tuple[Any, Any] | None = None,
                  ) -> list[keras.callbacks.Callback]:
    """Return the callbacks of one fit: what training and every tuning trial run with.

    `config` says what to monitor (`monitor`), how long the fit is (`epochs`, for the
    schedule), the schedule and the early-stopping patience (None: no early stopping).
    The best-epoch checkpoint is written to `best_weights` when given (KerasTuner trials
    have their own); after a resume it starts from the best value the MLflow run already
    holds. With `config.gradient_monitor`, `monitor_sample` (inputs, labels) is what the
    gradient monitor measures on. MLflow logging comes last, so it sees what the others add
    to the logs. `restore_dir` is where a resumed fit reads its backup, when not `backup_dir`
    (a non-chief worker reads the chief's).
    """
    mode = monitor_mode(config.monitor)
    callbacks: list[keras.callbacks.Callback] = [CrashSafeBackup(str(backup_dir), restore_dir)]
    if best_weights is not None:
        history = [value for _, value in mlflow_run.metric_history(metric_prefix + config.monitor)]
        best_so_far = (max(history) if mode == "max" else min(history)) if history else None
        callbacks.append(CrashSafeCheckpoint(
            str(best_weights), monitor=config.monitor, mode=mode, save_best_only=True,
            initial_value_threshold=best_so_far))
    callbacks += [EpochTimer(examples_per_epoch), keras.callbacks.TerminateOnNaN()]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=config.monitor, mode=mode, patience=config.early_stopping_patience))
    schedule = learning_rate_schedule(config, base_learning_rate, mode)
    if schedule is not None:
        callbacks.append(schedule)
    if config.gradient_monitor and monitor_sample is not None:
        callbacks.append(GradientMonitor(mlflow_run, *monitor_sample, prefix=metric_prefix))
    callbacks.append(MetricsCallback(mlflow_run, prefix=metric_prefix))
    return callbacks


def learning_rate_schedule(config: TrainConfig, base_rate: float,
                           mode: str) -> keras.callbacks.Callback | None:
    """Return the callback that sets the learning rate per epoch, or None for constant.

    cosine: linear warmup for `warmup_epochs`, then half a cosine from `base_rate` to ~0,
    so late epochs take small steps into the minimum found early. plateau: divide by 5 when
    the monitored metric stops improving for 2 epochs.
    """
    if config.lr_schedule == "plateau":
        return keras.callbacks.ReduceLROnPlateau(monitor=config.monitor, mode=mode,
                                                 factor=0.2, patience=2, min_lr=base_rate / 100)
    if config.lr_schedule == "constant":
        return None
    warmup, total = config.warmup_epochs, config.epochs

    def cosine(epoch: int, _current: float) -> float:
        if epoch < warmup:
            return base_rate * (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, total - warmup)
        return base_rate * 0.5 * (1.0 + math.cos(math.pi * progress))

    return keras.callbacks.LearningRateScheduler(cosine)


class EpochTimer(keras.callbacks.Callback):
    """Add `epoch_seconds` and `examples_per_second` (training throughput) to the epoch logs."""

    def __init__(self, examples_per_epoch: int):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._started
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["examples_per_second"] = self.examples_per_epoch / seconds


def _durable_replace(staging: str, path: str) -> None:
    """Flush `staging` to disk and rename it over `path` (atomic on POSIX)."""
    with open(staging, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, path)


def _staging_path(path: str | os.PathLike) -> str:
    """Where a .weights.h5 file is written before it is renamed to `path` (Keras needs the suffix)."""
    return os.fspath(path).removesuffix(".weights.h5") + ".partial.weights.h5"


def save_weights_atomically(model: keras.Model, path: str | os.PathLike) -> None:
    """Save `model`'s weights to `path` (a .weights.h5 file) so that a crash never truncates it."""
    path, staging = os.fspath(path), _staging_path(path)
    model.save_weights(staging, overwrite=True)
    _durable_replace(staging, path)


class CrashSafeBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backup survives the process being killed while it writes.

    Each epoch's weights go to a new file named after the epoch; then the metadata (epoch,
    batch and that file's name) is written under a staging name and renamed over the old
    metadata. That rename is the commit: the metadata always names complete weights, and
    the weights always match its epoch. Older weight files are removed after the commit.
    With `restore_dir`, a resumed fit reads the backup there instead of in `backup_dir`.
    """

    def __init__(self, backup_dir: str, restore_dir: Path | None = None, **kwargs: Any):
        super().__init__(backup_dir, **kwargs)
        self.restore_dir = restore_dir

    def _save_model(self) -> None:
        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        name = f"epoch{self._current_epoch}-batch{self._last_batch_seen}.weights.h5"
        save_weights_atomically(self.model, backup / name)
        staging = self._training_metadata_path + ".partial"
        with open(staging, "w") as handle:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}, handle)
        _durable_replace(staging, self._training_metadata_path)
        for stale in backup.glob("*.weights.h5"):
            if stale.name != name:
                stale.unlink(missing_ok=True)

    def _load_model(self) -> None:
        if not self.model.built:
            raise ValueError("CrashSafeBackup needs a built model: call it on a batch before fit()")
        metadata_path = Path(self._training_metadata_path)
        if self.restore_dir is not None:
            metadata_path = Path(self.restore_dir) / metadata_path.name
        if not metadata_path.exists():
            return  # nothing committed yet: start from the first epoch
        metadata = json.loads(metadata_path.read_text())
        weights = metadata_path.parent / metadata.get("weights", Path(self._weights_path).name)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its slots are in the file
        self.model.load_weights(str(weights))
        self.model._initial_epoch = metadata["epoch"]  # what BackupAndRestore sets: fit starts there


class CrashSafeCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint (weights only) that writes under a staging name and renames into place."""

    def __init__(self, filepath: str, **kwargs: Any):
        self.final_path = os.fspath(filepath)
        super().__init__(_staging_path(filepath), save_weights_only=True, **kwargs)

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        Path(self.filepath).unlink(missing_ok=True)  # a staging file a crash left behind
        super()._save_model(epoch, batch, logs)
        if os.path.exists(self.filepath):  # saved this time: this epoch improved
            _durable_replace(self.filepath, self.final_path)
