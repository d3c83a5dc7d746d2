"""What every source shares: the split and source records, seeded partitions, errors."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig

SPLITS = ("train", "validation", "test")


class DataError(RuntimeError):
    """Data that cannot be read; the message names the file or folder."""


class MissingPackages(DataError):
    """Debian packages the configured data needs are not installed; `make data` installs them.

    The CLI exits 3 on it; `python -m pipeline packages --missing` then names them.
    """

    def __init__(self, message: str, packages: tuple[str, ...]):
        super().__init__(message)
        self.packages = packages


class MissingFashionMnist(MissingPackages):
    """No copy of Fashion-MNIST anywhere; `make data` then installs Debian's package."""

    def __init__(self, message: str):
        super().__init__(message, ("dataset-fashion-mnist",))


def installed_versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    """Return each Debian package's installed version (None if absent) from dpkg-query."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            answer = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}\t${Version}",
                                     package], capture_output=True, text=True, timeout=30,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired):  # no dpkg: not a Debian system
            versions[package] = None
            continue
        status, _, version = answer.stdout.partition("\t")
        installed = answer.returncode == 0 and status == "installed"
        versions[package] = version if installed else None
    return versions


@dataclass(frozen=True)
class Split:
    """One split of unbatched (input, label) examples and its exact size.

    `files` lists the files the examples are decoded from, in order, for sources that read
    files while iterating: the data stage reads them all once up front, so a corrupt file
    fails there by name instead of in the middle of an epoch.
    """

    examples: tf.data.Dataset
    size: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    splits: dict[str, Split]
    input_spec: InputSpec
    class_names: tuple[str, ...]
    identity: dict[str, Any]  # name, version/checksums, origin: logged to MLflow
    manifest: list[str] = field(default_factory=list)  # per-file checksums, if files
    decode: Callable[[tf.Tensor], tf.Tensor] | None = None  # file contents -> input


def partition(size: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Return sorted example indices per split: a seeded permutation cut by `fractions`.

    The split that is not in `fractions` takes the rest. The same size and seed always give
    the same split, whatever order the examples are read in later.
    """
    order = np.random.default_rng(seed).permutation(size)
    parts, start = {}, 0
    for name, fraction in fractions.items():
        count = int(round(size * fraction))
        parts[name] = np.sort(order[start : start + count])
        start += count
    rest = next(name for name in SPLITS if name not in parts)
    parts[rest] = np.sort(order[start:])
    return parts


def take(indices: np.ndarray, limit: int | None) -> np.ndarray:
    return indices if limit is None else indices[:limit]


def select(examples: tf.data.Dataset, indices: np.ndarray, total: int) -> tf.data.Dataset:
    """Return the examples whose position is in `indices`, streaming (nothing held in memory)."""
    chosen = np.zeros(total, dtype=bool)
    chosen[indices] = True
    mask = tf.constant(chosen)
    return (
        examples.enumerate()
        .filter(lambda position, example: mask[position])
        .map(lambda position, example: example)
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Return whether a TCP connection to host:port opens (TFDS retries for minutes if not)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def finish_source(splits: dict[str, Split], input_spec: InputSpec | None,
                   class_names: tuple[str, ...], identity: dict[str, Any],
                   config: DataConfig) -> Source:
    """Return the Source; for text, learn the vocabulary from the train split only."""
    if input_spec is None:
        import keras

        split = InputSpec.text((), 0, config.text_split)
        vectorizer = keras.layers.TextVectorization(
            max_tokens=config.vocabulary_size, split=split.split, standardize=split.standardize)
        vectorizer.adapt(splits["train"].examples.map(lambda text, label: text).batch(256))
        vocabulary = tuple(vectorizer.get_vocabulary()[2:])  # drop padding and [UNK]
        input_spec = InputSpec.text(vocabulary, config.sequence_length, config.text_split)
    return Source(splits, input_spec, class_names, identity)
