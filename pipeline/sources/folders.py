"""Folders with one subfolder per class: images (decoded, resized) or text files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from pipeline.config import DataConfig
from pipeline.sources.base import (
    DataError,
    Source,
    Split,
    finish_source,
    partition,
    sha256_file,
    take,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
TEXT_SUFFIXES = {".txt"}


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
        indices = take(indices, config.max_examples)
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
    source = finish_source(splits, input_spec, class_names, identity, config)
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
