"""Devices, precision and distribution: decided once per run from what the machine has."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from pipeline.config import TrainConfig


@dataclass(frozen=True)
class Hardware:
    strategy: tf.distribute.Strategy
    mixed_precision: bool
    devices: tuple[str, ...]

    def describe(self) -> str:
        precision = "mixed_float16" if self.mixed_precision else "float32"
        return (f"{', '.join(self.devices)} | {type(self.strategy).__name__} "
                f"({self.strategy.num_replicas_in_sync} replica(s)) | {precision}")


def _tensor_cores(gpus: list) -> bool:
    """Return whether every GPU has compute capability >= 7.0, where float16 pays off."""
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or capability < (7, 0):
            return False
    return bool(gpus)


def configure(config: TrainConfig, seed: int) -> Hardware:
    """Seed every generator, set the precision policy and return the distribution strategy.

    `auto` turns mixed precision on where GPUs with tensor cores exist and mirrors the model
    over several GPUs; on a CPU-only machine both stay off. The global Keras policy is always
    set, so a run never inherits the previous run's policy in the same process.
    """
    keras.utils.set_random_seed(seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow GPU memory on demand: TF Serving or a second run may share the card.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    mixed = {"on": True, "off": False, "auto": _tensor_cores(gpus)}[config.mixed_precision]
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    mirrored = config.distribution == "mirrored" or (config.distribution == "auto" and len(gpus) > 1)
    strategy = tf.distribute.MirroredStrategy() if mirrored else tf.distribute.get_strategy()
    devices = tuple(gpu.name for gpu in gpus) or ("CPU",)
    return Hardware(strategy=strategy, mixed_precision=mixed, devices=devices)
