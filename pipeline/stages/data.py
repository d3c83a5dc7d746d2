"""The data stage: a source's splits turned into batched, prefetched tf.data pipelines.

Order per split: source (decode, parallel map) -> cache -> shuffle(seed) -> batch ->
prefetch, prefetch last. Decoding happens before the cache so that it runs once, not once
per epoch; normalisation and augmentation are layers of the model, not steps here, so the
SavedModel takes the same raw input the pipeline feeds.

tf.data autotuning is off unless `data.autotune` asks for it. Keras makes a new iterator
every epoch, and in TF 2.21 dropping the old one waits for the autotuning thread to wake
from its timed sleep, which doubles up to tens of seconds: on 2 cores, a third of the
epochs of `make train` sat idle for ~20 s. After the cache there is nothing to tune
(shuffle and batch), so parallel steps use one call per core and prefetch keeps
PREFETCH_BATCHES batches ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig
from pipeline.sources import SOURCES, DataError, Source, Split

__all__ = ["DataError", "Datasets", "make_datasets", "run"]

PREFETCH_BATCHES = 2  # one batch in the model's hands, the next one ready


@dataclass(frozen=True)
class Datasets:
    """Batched train/validation/test pipelines and what the later stages need to know."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    sizes: dict[str, int]
    input_spec: InputSpec
    class_names: tuple[str, ...]
    identity: dict[str, Any]
    manifest: list[str]
    unbatched: dict[str, tf.data.Dataset]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def examples(self, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the first `count` (inputs, labels) of a split as NumPy arrays, in order."""
        inputs, labels = [], []
        for value, label in self.unbatched[split].take(count).as_numpy_iterator():
            inputs.append(value)
            labels.append(label)
        if not inputs:
            raise DataError(f"the {split} split is empty")
        return np.stack(inputs), np.asarray(labels)


def load_source(config: DataConfig, seed: int) -> Source:
    """Return the configured source, its splits decided by `seed`."""
    source = SOURCES[config.source](config, seed)
    for name, split in source.splits.items():
        if split.size == 0:
            raise DataError(f"the {name} split of {config.source} is empty; lower "
                            "data.validation_fraction/test_fraction or add examples")
    return source


def _read_once(split: Split, examples: tf.data.Dataset, decode) -> None:
    """Iterate the split once (filling its cache); name the first file that fails to decode."""
    try:
        for _ in examples.batch(1024):
            pass
    except tf.errors.OpError:
        for path in split.files:
            try:
                decode(tf.io.read_file(path))
            except tf.errors.OpError as error:
                reason = error.message.splitlines()[0]
                raise DataError(f"corrupt or unreadable file: {path} ({reason})") from None
        raise


def _pipeline(split: Split, source: Source, config: DataConfig, seed: int,
              training: bool) -> tf.data.Dataset:
    examples = split.examples.cache() if config.cache else split.examples
    if split.files:
        _read_once(split, examples, source.decode)
    if training:
        buffer = min(config.shuffle_buffer, split.size)
        examples = examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    # With autotuning off, AUTOTUNE parallelism means one call per core, not a tuned value.
    batched = examples.batch(config.batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)
    prefetched = batched.prefetch(tf.data.AUTOTUNE if config.autotune else PREFETCH_BATCHES)
    options = tf.data.Options()
    options.autotune.enabled = config.autotune
    return prefetched.with_options(options)


def make_datasets(config: DataConfig, seed: int) -> Datasets:
    """Return the batched train/validation/test pipelines of the configured source."""
    source = load_source(config, seed)
    pipelines = {
        name: _pipeline(split, source, config, seed, training=name == "train")
        for name, split in source.splits.items()
    }
    return Datasets(
        train=pipelines["train"],
        validation=pipelines["validation"],
        test=pipelines["test"],
        sizes={name: split.size for name, split in source.splits.items()},
        input_spec=source.input_spec,
        class_names=source.class_names,
        identity=source.identity,
        manifest=source.manifest,
        unbatched={name: split.examples for name, split in source.splits.items()},
    )


def run(config: DataConfig, seed: int) -> dict[str, Any]:
    """Return the identity and split sizes of the configured data (`make data`)."""
    source = load_source(config, seed)
    return {
        **source.identity,
        "classes": len(source.class_names),
        "input": f"{source.input_spec.name} {source.input_spec.dtype} {source.input_spec.shape}",
        **{f"{name}_examples": split.size for name, split in source.splits.items()},
    }
