"""Fashion-MNIST: TFDS's copy when prepared or downloadable, else Debian's IDX files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig
from pipeline.sources.base import (
    DataError,
    MissingFashionMnist,
    Source,
    Split,
    partition,
    sha256_file,
    take,
)
from pipeline.sources.tfds import tfds_builder, tfds_source, unreachable_endpoint

# Debian's package `dataset-fashion-mnist` installs the original IDX files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HOST = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def read_idx(path: Path) -> np.ndarray:
    """Return the array stored in a (gzipped) IDX file, the format of (Fashion-)MNIST."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    offset = 4 + 4 * len(dims)
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, data has "
                        f"{len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def debian_fashion_mnist(config: DataConfig, seed: int, folder: Path = DEBIAN_FASHION_MNIST
                         ) -> Source:
    """Return Fashion-MNIST read from the IDX files of Debian's `dataset-fashion-mnist`."""
    names = {
        "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    arrays = {key: read_idx(folder / name) for key, name in names.items()}
    for part in ("train", "test"):
        if len(arrays[f"{part}_images"]) != len(arrays[f"{part}_labels"]):
            raise DataError(f"{folder}: {part} images and labels differ in count")
    parts = partition(len(arrays["train_labels"]), {"validation": config.validation_fraction},
                      seed)
    parts["test"] = np.arange(len(arrays["test_labels"]))
    splits = {}
    for part, indices in parts.items():
        origin = "test" if part == "test" else "train"
        indices = take(indices, config.max_examples)
        images = arrays[f"{origin}_images"][indices][..., np.newaxis]
        labels = arrays[f"{origin}_labels"][indices].astype(np.int64)
        splits[part] = Split(tf.data.Dataset.from_tensor_slices((images, labels)), len(indices))
    manifest = [f"{name}\t{sha256_file(folder / name)}" for name in names.values()]
    identity = {
        "origin": "debian:dataset-fashion-mnist", "name": "fashion_mnist", "folder": str(folder),
        "sha256": hashlib.sha256("\n".join(manifest).encode()).hexdigest(),
    }
    return Source(splits, InputSpec.image(28, 28, 1), FASHION_MNIST_CLASSES, identity, manifest)


def fashion_mnist(config: DataConfig, seed: int) -> Source:
    """Return Fashion-MNIST: TFDS's copy if prepared or downloadable, else Debian's files.

    Order: 1) TFDS, already prepared in data.data_dir; 2) TFDS download, when data.download
    is on and the download host answers; 3) the Debian package's IDX files. The contents are
    the same (the Debian gzip files differ byte-wise, so TFDS's checksums reject them).
    """
    builder = tfds_builder("fashion_mnist", config.data_dir)
    downloadable = config.download and unreachable_endpoint(builder) is None
    if builder.is_prepared() or downloadable:
        return tfds_source(config, seed, name="fashion_mnist")
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        return debian_fashion_mnist(config, seed)
    raise MissingFashionMnist(
        f"fashion_mnist: not prepared in TFDS's {builder.data_dir}, {FASHION_MNIST_HOST} is "
        f"unreachable, and {DEBIAN_FASHION_MNIST} is missing; install it with "
        "`sudo apt-get install dataset-fashion-mnist` or set data.data_dir"
    )
