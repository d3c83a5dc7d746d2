"""Where examples come from: TFDS, the Debian Fashion-MNIST files, image and text folders.

Every source returns a `Source`: unbatched (input, label) examples per split, decided
deterministically from the seed, plus what the model and MLflow need to know about them.
Nothing here falls back to synthetic data: a source that cannot be read is an error.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig

# Debian's package `dataset-fashion-mnist` installs the original IDX files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HOST = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
TEXT_SUFFIXES = {".txt"}
SPLITS = ("train", "validation", "test")


class DataError(RuntimeError):
    """Data that cannot be read; the message names the file or folder."""


class MissingFashionMnist(DataError):
    """No copy of Fashion-MNIST anywhere; `make data` then installs Debian's package."""


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


def _take(indices: np.ndarray, limit: int | None) -> np.ndarray:
    return indices if limit is None else indices[:limit]


def _select(examples: tf.data.Dataset, indices: np.ndarray, total: int) -> tf.data.Dataset:
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


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Return whether a TCP connection to host:port opens (TFDS retries for minutes if not)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- TFDS -------------------------------------------------------------------------------


def _tfds_builder(name: str, data_dir: Path | None):
    import tensorflow_datasets as tfds  # heavy: only for the sources that use it
    from absl import logging as absl_logging

    # TFDS warns about every version folder it looks for and does not find: not news here,
    # where a missing copy is expected and handled (download, then Debian's files).
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return tfds.builder(name, data_dir=str(data_dir) if data_dir else None)
    except Exception as error:  # TFDS raises several types for an unknown name
        raise DataError(f"data.name: unknown TFDS data set {name!r}: {error}") from None


def _tfds_ensure_prepared(builder, config: DataConfig, hosts: tuple[str, ...]) -> None:
    if builder.is_prepared():
        return
    location = builder.data_dir
    if not config.download:
        raise DataError(f"TFDS data set {builder.name} is not prepared in {location} "
                        "and data.download is false")
    if not any(_reachable(host) for host in hosts):
        raise DataError(f"TFDS data set {builder.name} is not prepared in {location} and "
                        f"its download host ({hosts[0]}) is unreachable")
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


def tfds_source(config: DataConfig, seed: int, name: str | None = None,
                hosts: tuple[str, ...] = ("storage.googleapis.com",)) -> Source:
    """Return a TFDS data set's splits; validation (and test, if absent) carved by seed."""
    builder = _tfds_builder(name or config.name, config.data_dir)
    _tfds_ensure_prepared(builder, config, hosts)
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
        part: Split(_select(train_examples, _take(indices, config.max_examples), train_size),
                    len(_take(indices, config.max_examples)))
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
    return _finish_source(splits, input_spec, tuple(info.features[label_key].names), identity,
                          config)


# --- Fashion-MNIST ----------------------------------------------------------------------


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
        indices = _take(indices, config.max_examples)
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
    builder = _tfds_builder("fashion_mnist", config.data_dir)
    downloadable = config.download and _reachable(FASHION_MNIST_HOST, 80)
    if builder.is_prepared() or downloadable:
        return tfds_source(config, seed, name="fashion_mnist", hosts=(FASHION_MNIST_HOST,))
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        return debian_fashion_mnist(config, seed)
    raise MissingFashionMnist(
        f"fashion_mnist: not prepared in TFDS's {builder.data_dir}, {FASHION_MNIST_HOST} is "
        f"unreachable, and {DEBIAN_FASHION_MNIST} is missing; install it with "
        "`sudo apt-get install dataset-fashion-mnist` or set data.data_dir"
    )


# --- Folders ----------------------------------------------------------------------------


def list_class_folder(root: Path, suffixes: set[str]) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Return files, their labels and the class names of a folder with one subfolder per class."""
    if not root.is_dir():
        raise DataError(f"data.path: folder not found: {root}")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir()
                        and not path.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"data.path: {root} needs one subfolder per class (at least 2), "
                        f"found {len(class_dirs)}")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        members = sorted(path for path in class_dir.rglob("*")
                         if path.is_file() and path.suffix.lower() in suffixes)
        if not members:
            raise DataError(f"data.path: class folder {class_dir} has no "
                            f"{'/'.join(sorted(suffixes))} files")
        files += members
        labels += [label] * len(members)
    return files, np.array(labels, dtype=np.int64), tuple(path.name for path in class_dirs)


def folder_source(config: DataConfig, seed: int, suffixes: set[str],
                  decode: Callable[[tf.Tensor], tf.Tensor], input_spec: InputSpec | None) -> Source:
    """Return the seeded train/validation/test split of a class-per-subfolder tree."""
    root = Path(config.path)
    files, labels, class_names = list_class_folder(root, suffixes)
    fractions = {"validation": config.validation_fraction, "test": config.test_fraction}
    splits = {}
    for part, indices in partition(len(files), fractions, seed).items():
        indices = _take(indices, config.max_examples)
        paths = tf.constant([str(files[i]) for i in indices], dtype=tf.string)
        examples = tf.data.Dataset.from_tensor_slices((paths, labels[indices])).map(
            lambda path, label: (decode(tf.io.read_file(path)), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        splits[part] = Split(examples, len(indices), tuple(str(files[i]) for i in indices))
    manifest = [f"{path.relative_to(root)}\t{sha256_file(path)}" for path in files]
    identity = {
        "origin": "folder", "name": root.name, "path": str(root.resolve()),
        "files": len(files), "sha256": hashlib.sha256("\n".join(manifest).encode()).hexdigest(),
    }
    source = _finish_source(splits, input_spec, class_names, identity, config)
    return Source(source.splits, source.input_spec, class_names, identity, manifest, decode)


def image_folder(config: DataConfig, seed: int) -> Source:
    height, width = config.image_size
    channels = 1 if config.color_mode == "grayscale" else 3

    def decode(contents: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
        image = tf.image.resize(image, (height, width), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    return folder_source(config, seed, IMAGE_SUFFIXES, decode,
                         InputSpec.image(height, width, channels))


def text_folder(config: DataConfig, seed: int) -> Source:
    return folder_source(config, seed, TEXT_SUFFIXES, lambda contents: contents, None)


# --- Text vocabulary ---------------------------------------------------------------------


def _finish_source(splits: dict[str, Split], input_spec: InputSpec | None,
                   class_names: tuple[str, ...], identity: dict[str, Any],
                   config: DataConfig) -> Source:
    """Return the Source; for text, learn the vocabulary from the train split only."""
    if input_spec is None:
        import keras

        vectorizer = keras.layers.TextVectorization(max_tokens=config.vocabulary_size)
        vectorizer.adapt(splits["train"].examples.map(lambda text, label: text).batch(256))
        vocabulary = tuple(vectorizer.get_vocabulary()[2:])  # drop padding and [UNK]
        input_spec = InputSpec.text(vocabulary, config.sequence_length)
    return Source(splits, input_spec, class_names, identity)


SOURCES: dict[str, Callable[[DataConfig, int], Source]] = {
    "fashion_mnist": fashion_mnist,
    "tfds": tfds_source,
    "image_folder": image_folder,
    "text_folder": text_folder,
}
