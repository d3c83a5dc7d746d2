"""Devices, precision and distribution: decided once per run from what the machine has."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from pipeline.config import TrainConfig


@dataclass(frozen=True)
class Hardware:
    strategy: tf.distribute.Strategy
    precision: str | None  # the compute dtype of mixed precision; None: float32
    devices: tuple[str, ...]

    def describe(self) -> str:
        precision = f"mixed_{self.precision}" if self.precision else "float32"
        return (f"{', '.join(self.devices)} | {type(self.strategy).__name__} "
                f"({self.strategy.num_replicas_in_sync} replica(s)) | {precision}")


def _gpu_precision(gpus: list) -> str | None:
    """Return the mixed precision every GPU runs fast: bfloat16 from Ampere (8.0), float16
    on Volta/Turing (7.x, tensor cores), None below."""
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability")
                    for gpu in gpus]
    if not capabilities or not all(capabilities):
        return None
    lowest = min(capabilities)
    return "bfloat16" if lowest >= (8, 0) else "float16" if lowest >= (7, 0) else None


def _cpu_has_bfloat16() -> bool:
    """Return whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def precision_for(setting: str, gpus: list) -> str | None:
    """Return "float16", "bfloat16" or None (float32) for train.mixed_precision."""
    if setting == "off":
        return None
    if setting in ("float16", "bfloat16"):
        return setting
    if gpus:
        return _gpu_precision(gpus)
    return "bfloat16" if _cpu_has_bfloat16() else None


def configure(config: TrainConfig, seed: int) -> Hardware:
    """Seed every generator, set the precision policy and return the distribution strategy.

    `auto` computes in bfloat16 (float32 weights) on GPUs from Ampere on and on CPUs with
    AVX512-BF16/AMX, in float16 on Volta/Turing GPUs, else in float32; it mirrors the model
    over several GPUs. The export is float32 whatever the training precision (see
    serving_copy). The global Keras policy is always set, so a run never inherits the
    previous run's policy in the same process.
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
    precision = precision_for(config.mixed_precision, gpus)
    keras.mixed_precision.set_global_policy(f"mixed_{precision}" if precision else "float32")
    mirrored = config.distribution == "mirrored" or (config.distribution == "auto" and len(gpus) > 1)
    strategy = tf.distribute.MirroredStrategy() if mirrored else tf.distribute.get_strategy()
    devices = tuple(gpu.name for gpu in gpus) or ("CPU",)
    return Hardware(strategy=strategy, precision=precision, devices=devices)


@contextmanager
def configured(config: TrainConfig, seed: int) -> Iterator[Hardware]:
    """Yield `configure`'s Hardware; restore the caller's Keras precision policy on exit.

    A stage sets a global policy; without this, a later model built in the same process (a
    test, a notebook, the server's demo model) would silently compute in bfloat16.
    """
    previous = keras.mixed_precision.global_policy()
    try:
        yield configure(config, seed)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def serving_copy(model: keras.Model, rebuild) -> keras.Model:
    """Return `model` computing in float32: itself, or a float32 rebuild with its weights.

    Mixed precision is a training speed-up; a SavedModel computing in bfloat16 or float16
    would run emulated (slowly) on CPUs and GPUs without those units. `rebuild()` must build
    the same architecture; the weights are float32 already and are copied over.
    """
    if keras.mixed_precision.global_policy().name == "float32":
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = rebuild()
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy
