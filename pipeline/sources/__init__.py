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
    MissingPackages,
    Source,
    Split,
    installed_versions,
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
from pipeline.sources.fortunes import FORTUNES_DIR, LANGUAGES, fortunes, language_packages
from pipeline.sources.tfds import tfds_source

SOURCES: dict[str, Callable[[DataConfig, int], Source]] = {
    "fashion_mnist": fashion_mnist,
    "tfds": tfds_source,
    "image_folder": image_folder,
    "text_folder": text_folder,
    "fortunes": fortunes,
}

# The Debian packages each source reads when nothing else has the data (`make data` installs
# the missing ones).
DEBIAN_PACKAGES: dict[str, Callable[[DataConfig], tuple[str, ...]]] = {
    "fashion_mnist": lambda config: ("dataset-fashion-mnist",),
    "fortunes": language_packages,
}


def missing_debian_packages(config: DataConfig) -> tuple[str, ...]:
    """Return the Debian packages the configured source needs that are not installed."""
    needed = DEBIAN_PACKAGES.get(config.source, lambda config: ())(config)
    return tuple(package for package, version in installed_versions(needed).items()
                 if version is None)


__all__ = [
    "DEBIAN_FASHION_MNIST", "DEBIAN_PACKAGES", "FASHION_MNIST_CLASSES", "FORTUNES_DIR",
    "LANGUAGES", "SOURCES", "SPLITS", "DataError", "MissingFashionMnist", "MissingPackages",
    "Source", "Split", "debian_fashion_mnist", "fashion_mnist", "fortunes", "image_folder",
    "installed_versions", "language_packages", "missing_debian_packages", "partition",
    "read_idx", "sha256_file", "text_folder", "tfds_source",
]
