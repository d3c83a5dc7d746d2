"""Where examples come from: TFDS, the Debian Fashion-MNIST files, image and text folders.

Every source returns a `Source`: unbatched (input, label) examples per split, decided
deterministically from the seed, plus what the model and MLflow need to know about them.
Nothing here falls back to synthetic data: a source that cannot be read is an error.
"""


from __future__ import annotations

from collections.abc import Callable

from pipeline.config import DataConfig
from pipeline.sources.base import (
    SPLITS,
    DataError,
    MissingFashionMnist,
    Source,
    Split,
    partition,
    sha256_file,
)
from pipeline.sources.fashion_mnist import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    debian_fashion_mnist,
    fashion_mnist,
    read_idx,
)
from pipeline.sources.folders import image_folder, text_folder
from pipeline.sources.tfds import tfds_source

SOURCES: dict[str, Callable[[DataConfig, int], Source]] = {
    "fashion_mnist": fashion_mnist,
    "tfds": tfds_source,
    "image_folder": image_folder,
    "text_folder": text_folder,
}

__all__ = [
    "DEBIAN_FASHION_MNIST", "FASHION_MNIST_CLASSES", "SOURCES", "SPLITS", "DataError",
    "MissingFashionMnist", "Source", "Split", "debian_fashion_mnist", "fashion_mnist",
    "image_folder", "partition", "read_idx", "sha256_file", "text_folder", "tfds_source",
]
