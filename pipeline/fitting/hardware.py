"""Devices, precision and distribution: decided once per run from what the machine has."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import tensorflow as tf

from pipeline.config import RunConfig, TrainConfig
from pipeline.fitting import multi_worker
from pipeline.kernels import describe_onednn
from serving.common import cpu_description

BFLOAT16_MIN_SPEEDUP = 1.1  # below this, bfloat16's rounding is not worth it


@dataclass(frozen=True)
class Hardware:
    strategy: tf.distribute.Strategy
    precision: str | None  # the compute dtype of mixed precision; None: float32
    devices: tuple[str, ...]
    precision_reason: str = ""  # why `auto` chose it (printed and logged to MLflow)
    worker: multi_worker.Worker | None = None  # this process's place in a multi-worker run

    @property
    def gpus(self) -> int:
        return sum(device != "CPU" for device in self.devices)

    def describe(self) -> str:
        precision = f"mixed_{self.precision}" if self.precision else "float32"
        reason = f" ({self.precision_reason})" if self.precision_reason else ""
        place = f" | worker {self.worker.index} of {self.worker.count}" if self.worker else ""
        return (f"{', '.join(self.devices)}{place} | {type(self.strategy).__name__} "
                f"({self.strategy.num_replicas_in_sync} replica(s)) | {precision}{reason} | "
                f"oneDNN {describe_onednn()}")


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
    instruction_sets = str(cpu_description()["instruction_sets"]).split()
    return "avx512_bf16" in instruction_sets or "amx_bf16" in instruction_sets


@functools.cache
def bfloat16_speedup(repeats: int = 8) -> float:
    """Return how many times faster a conv training step runs in bfloat16 than float32 here.

    The step (a 3x3 convolution over 64 channels at 14x14, batch 64, and its gradient) is
    where the default CNN spends its time. About a second, once per process.
    """
    images = tf.random.stateless_normal([64, 14, 14, 64], seed=[1, 2])
    kernel = tf.random.stateless_normal([3, 3, 64, 64], seed=[3, 4])

    def seconds(dtype: tf.DType) -> float:
        @tf.function
        def step(images, kernel):
            with tf.GradientTape() as tape:
                tape.watch(kernel)
                outputs = tf.nn.conv2d(tf.cast(images, dtype), tf.cast(kernel, dtype), 1, "SAME")
                loss = tf.reduce_sum(tf.square(tf.cast(outputs, tf.float32)))
            return tape.gradient(loss, kernel)

        step(images, kernel).numpy()  # trace and warm up
        started = time.perf_counter()
        for _ in range(repeats):
            step(images, kernel).numpy()
        return time.perf_counter() - started

    return seconds(tf.float32) / seconds(tf.bfloat16)


def precision_choice(setting: str, gpus: list) -> tuple[str | None, str]:
    """Return the mixed-precision dtype for train.mixed_precision (None: float32), and why.

    `auto` on a CPU takes bfloat16 only where the CPU computes it natively (AVX512-BF16 or
    AMX) and a timed step is at least 10% faster; elsewhere bfloat16 is emulated and slower.
    """
    if setting == "off":
        return None, "train.mixed_precision: off"
    if setting in ("float16", "bfloat16"):
        return setting, f"train.mixed_precision: {setting}"
    if gpus:
        precision = _gpu_precision(gpus)
        return precision, f"auto: GPU compute capability {'fits' if precision else 'too old'}"
    if not _cpu_has_bfloat16():
        return None, "auto: no AVX512-BF16/AMX on this CPU"
    speedup = bfloat16_speedup()
    if speedup >= BFLOAT16_MIN_SPEEDUP:
        return "bfloat16", f"auto: bfloat16 measured {speedup:.2f}x float32 on this CPU"
    return None, f"auto: bfloat16 measured only {speedup:.2f}x float32 on this CPU"


def configure(config: TrainConfig, seed: int) -> Hardware:
    """Seed every generator, set the precision policy and return the distribution strategy.

    `auto` computes in bfloat16 (float32 weights) on GPUs from Ampere on and on CPUs with
    AVX512-BF16/AMX, in float16 on Volta/Turing GPUs, else in float32; it mirrors the model
    over several GPUs, and over several workers when $TF_CONFIG names a cluster
    (pipeline/fitting/multi_worker.py). The export is float32 whatever the training precision (see
    serving_copy). The global Keras policy is always set, so a run never inherits the
    previous run's policy in the same process.
    """
    worker = multi_worker.from_environment()  # $TF_CONFIG: one of several workers
    distribution = multi_worker.strategy() if worker else None  # first: before any TF op
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
    if worker is None or worker.is_chief:
        precision, reason = precision_choice(config.mixed_precision, gpus)
    if worker is not None:  # every worker computes in the chief's precision
        choices = (None, "bfloat16", "float16")
        mine = choices.index(precision) if worker.is_chief else 0
        precision = choices[multi_worker.broadcast_from_chief(distribution, worker, mine)]
        reason = reason if worker.is_chief else "the chief's choice"
    keras.mixed_precision.set_global_policy(f"mixed_{precision}" if precision else "float32")
    mirrored = config.distribution == "mirrored" or (config.distribution == "auto" and len(gpus) > 1)
    strategy = distribution or (
        tf.distribute.MirroredStrategy() if mirrored else tf.distribute.get_strategy())
    devices = tuple(gpu.name for gpu in gpus) or ("CPU",)
    return Hardware(strategy=strategy, precision=precision, devices=devices,
                    precision_reason=reason, worker=worker)


def for_accelerators(config: RunConfig, hardware: Hardware) -> RunConfig:
    """Return `config` with the batch that fills the GPUs; itself on CPU-only hosts.

    The batch becomes `data.gpu_batch_size` per GPU, and the model's learning rate grows
    with the square root of the batch ratio (Adam's rule of thumb; linear overshoots).
    """
    if not hardware.gpus or config.data.gpu_batch_size is None:
        return config
    batch_size = config.data.gpu_batch_size * max(1, hardware.strategy.num_replicas_in_sync)
    params = dict(config.model.params)
    if "learning_rate" in params:
        params["learning_rate"] *= math.sqrt(batch_size / config.data.batch_size)
    return config.model_copy(update={
        "data": config.data.model_copy(update={"batch_size": batch_size}),
        "model": config.model.model_copy(update={"params": params})})


def set_jit_compile(model: keras.Model, setting: str) -> bool:
    """Apply train.jit_compile to a compiled model; return whether XLA compiles its steps.

    `auto` keeps Keras' choice: XLA on GPUs, not on CPU-only hosts, where XLA's CPU
    convolutions made the default CNN's step 2.5x slower than TensorFlow's oneDNN kernels
    (see `make bench-train`).
    """
    if setting != "auto":
        model.jit_compile = setting == "on"
    return bool(model.jit_compile)


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


def host_description() -> dict[str, object]:
    """Return the CPU model, core count, vector instruction sets, GPUs and precision here.

    Every speed figure depends on these (the default CNN trains ~3x faster per epoch on a
    CPU with AVX512-BF16 than on one with AVX2 alone), so benchmarks print them with it.
    """
    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    return {**cpu_description(), "gpus": gpus,
            "precision": keras.mixed_precision.global_policy().name,
            "tensorflow": tf.__version__,
            "onednn": describe_onednn()}
