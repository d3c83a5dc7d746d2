"""Any TensorFlow Datasets set, by name, split and data_dir."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig
from pipeline.sources.base import (
    DataError,
    Source,
    Split,
    finish_source,
    partition,
    reachable,
    select,
    take,
)


def tfds_builder(name: str, data_dir: Path | None):
    import tensorflow_datasets as tfds  # heavy: only for the sources that use it
    from absl import logging as absl_logging

    # TFDS warns about every version folder it looks for and does not find: not news here,
    # where a missing copy is expected and handled (download, then Debian's files).
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return tfds.builder(name, data_dir=str(data_dir) if data_dir else None)
    except Exception as error:  # TFDS raises several types for an unknown name
        raise DataError(f"data.name: unknown TFDS data set {name!r}: {error}") from None


def download_endpoints(builder) -> list[tuple[str, int]]:
    """Return the (host, port) of every URL the data set downloads from, in first-seen order.

    The URLs are those of the data set's own registered checksums (TFDS's `url_infos`); the
    port is the URL's, else its scheme's (http 80, https 443). A data set that registers
    none (one generated locally, say) gives an empty list.
    """
    endpoints: dict[tuple[str, int], None] = {}
    for url in builder.url_infos or {}:
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or {"http": 80, "https": 443, "ftp": 21}.get(parts.scheme, 443)
            endpoints[(parts.hostname, port)] = None
    return list(endpoints)


def unreachable_endpoint(builder) -> tuple[str, int] | None:
    """Return the first download endpoint that does not answer, or None if all do.

    TFDS retries an unreachable host for minutes before it fails: a 3-second probe per
    host first turns that into one clear line.
    """
    return next((endpoint for endpoint in download_endpoints(builder)
                 if not reachable(*endpoint)), None)


def _tfds_ensure_prepared(builder, config: DataConfig) -> None:
    if builder.is_prepared():
        return
    location = builder.data_dir
    if not config.download:
        raise DataError(f"TFDS data set {builder.name} is not prepared in {location} "
                        "and data.download is false")
    unreachable = unreachable_endpoint(builder)
    if unreachable is not None:
        host, port = unreachable
        raise DataError(f"TFDS data set {builder.name} is not prepared in {location} and "
                        f"its download host {host}:{port} is unreachable")
    builder.download_and_prepare()


def _tfds_input_key(builder, config: DataConfig) -> str:
    features = builder.info.features
    if config.input_key:
        if config.input_key not in features:
            raise DataError(f"data.input_key: {config.input_key!r} is not a feature of "
                            f"{builder.name}; features: {', '.join(features)}")
        return config.input_key
    for key in ("image", "text"):
        if key in features:
            return key
    raise DataError(f"{builder.name} has no image or text feature; set data.input_key")


def _tfds_input_spec(builder, input_key: str, config: DataConfig) -> InputSpec | None:
    """Return the image InputSpec, or None for text (its vocabulary is learned later)."""
    feature = builder.info.features[input_key]
    if feature.dtype == tf.string:
        return None
    if len(feature.shape) != 3:
        raise DataError(f"{builder.name}.{input_key} has shape {feature.shape}; expected an "
                        "image (height, width, channels) or text")
    height, width, channels = feature.shape
    if config.image_size is None and (height is None or width is None):
        raise DataError(f"{builder.name} images vary in size; set data.image_size")
    return InputSpec.image(*(config.image_size or (height, width)), channels)


def tfds_source(config: DataConfig, seed: int, name: str | None = None) -> Source:
    """Return a TFDS data set's splits; validation (and test, if absent) carved by seed."""
    builder = tfds_builder(name or config.name, config.data_dir)
    _tfds_ensure_prepared(builder, config)
    info = builder.info
    input_key = _tfds_input_key(builder, config)
    label_key = config.label_key
    if label_key not in info.features:
        raise DataError(f"data.label_key: {label_key!r} is not a feature of {builder.name}")

    input_spec = _tfds_input_spec(builder, input_key, config)
    resize = input_spec is not None and config.image_size is not None

    def example(row: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        value = row[input_key]
        if resize:
            value = tf.cast(tf.round(tf.image.resize(value, config.image_size, antialias=True)),
                            tf.uint8)
        return value, tf.cast(row[label_key], tf.int64)

    def read(split: str) -> tuple[tf.data.Dataset, int]:
        try:
            size = info.splits[split].num_examples
        except (KeyError, ValueError):
            raise DataError(f"{builder.name} has no split {split!r}; splits: "
                            f"{', '.join(info.splits)}") from None
        examples = builder.as_dataset(split=split, shuffle_files=False)
        return examples.map(example, num_parallel_calls=tf.data.AUTOTUNE), size

    train_examples, train_size = read(config.train_split)
    fractions = {"validation": config.validation_fraction}
    if config.test_split is None:
        fractions["test"] = config.test_fraction
    parts = partition(train_size, fractions, seed)
    splits = {
        part: Split(select(train_examples, take(indices, config.max_examples), train_size),
                    len(take(indices, config.max_examples)))
        for part, indices in parts.items()
    }
    if config.test_split is not None:
        test_examples, test_size = read(config.test_split)
        limit = min(test_size, config.max_examples or test_size)
        splits["test"] = Split(test_examples.take(limit), limit)
    identity = {
        "origin": "tensorflow-datasets", "name": info.name, "version": str(info.version),
        "train_split": config.train_split, "test_split": str(config.test_split),
        "data_dir": str(builder.data_dir),
    }
    return finish_source(splits, input_spec, tuple(info.features[label_key].names), identity,
                          config)
