"""Keras callbacks of the training stage: learning-rate schedules and epoch timing."""

from __future__ import annotations

import math
import time
from typing import Any

import keras

from pipeline.config import TrainConfig


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
