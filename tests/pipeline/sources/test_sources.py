"""Sources: deterministic seeded splits, real files, and clear errors for bad data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.sources import (
    DEBIAN_FASHION_MNIST,
    DataError,
    debian_fashion_mnist,
    partition,
    read_idx,
)
from pipeline.stages.data import make_datasets
from tests.conftest import CLASS_NAMES, tiny_overrides


def test_partition_is_seeded_disjoint_and_complete():
    first = partition(1000, {"validation": 0.1, "test": 0.2}, seed=7)
    again = partition(1000, {"validation": 0.1, "test": 0.2}, seed=7)
    other = partition(1000, {"validation": 0.1, "test": 0.2}, seed=8)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["validation"], other["validation"])
    assert [len(first[k]) for k in ("train", "validation", "test")] == [700, 100, 200]
    assert len(np.unique(np.concatenate(list(first.values())))) == 1000


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fake_debian_folder(root: Path, train: int = 50, test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, count))
    return root


def test_idx_files_are_read_into_seeded_splits_with_checksums(tmp_path):
    folder = fake_debian_folder(tmp_path / "fmnist")
    source = debian_fashion_mnist(load_config(None).data, seed=1, folder=folder)
    assert {k: s.size for k, s in source.splits.items()} == {"validation": 5, "train": 45,
                                                               "test": 20}
    image, label = next(iter(source.splits["test"].examples))
    assert image.shape == (28, 28, 1) and image.dtype.name == "uint8" and label.dtype.name == "int64"
    assert len(source.identity["sha256"]) == 64 and len(source.manifest) == 4


def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\1" * 10))
    with pytest.raises(DataError, match="broken-idx3-ubyte.gz is truncated"):
        read_idx(path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian():
    config = load_config(None, {"data.max_examples": 100})
    source = debian_fashion_mnist(config.data, seed=42)
    assert source.identity["origin"] == "debian:dataset-fashion-mnist"
    assert source.class_names[0] == "T-shirt/top" and len(source.class_names) == 10
    images, labels = next(iter(source.splits["train"].examples.batch(100)))
    assert images.shape == (100, 28, 28, 1) and 0 <= int(labels.numpy().min())
    assert 70 < float(images.numpy().mean()) < 75  # real clothes, not noise (noise ~127)


def test_image_folder_gives_batched_raw_uint8_splits(image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    data = make_datasets(config.data, config.seed)
    assert data.class_names == CLASS_NAMES
    assert data.sizes == {"validation": 12, "test": 12, "train": 36}
    images, labels = next(iter(data.train))
    assert images.dtype.name == "uint8" and images.shape[1:] == (12, 12, 1)
    assert data.input_spec.shape == (12, 12, 1)
    assert data.identity["files"] == 60 and len(data.manifest) == 60


def test_image_folder_splits_are_deterministic(image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    first = make_datasets(config.data, config.seed).examples("test", 12)
    again = make_datasets(config.data, config.seed).examples("test", 12)
    np.testing.assert_array_equal(first[0], again[0])


def test_corrupt_image_is_named(image_folder):
    bad = image_folder / "bar" / "005.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    config = load_config(None, tiny_overrides(image_folder))
    with pytest.raises(DataError, match=r"corrupt or unreadable file: .*bar/005.png"):
        make_datasets(config.data, config.seed)


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "data.path: folder not found"),
    (lambda root: root.mkdir(), "needs one subfolder per class"),
    (lambda root: [(root / c).mkdir(parents=True) for c in "ab"], "class folder .* has no"),
])
def test_missing_or_empty_folders_are_named(tmp_path, setup, message):
    root = tmp_path / "images"
    setup(root)
    config = load_config(None, tiny_overrides(root))
    with pytest.raises(DataError, match=message):
        make_datasets(config.data, config.seed)


def test_text_folder_learns_its_vocabulary_from_train(tmp_path):
    for label, words in enumerate(["great superb fine", "awful dull poor"]):
        folder = tmp_path / "reviews" / ("pos" if label == 0 else "neg")
        folder.mkdir(parents=True)
        for index in range(10):
            (folder / f"{index}.txt").write_text(f"{words} review number {index}")
    config = load_config(None, {"data.source": "text_folder", "data.path": str(tmp_path / "reviews"),
                                "data.sequence_length": 8, "model.family": "rnn"})
    data = make_datasets(config.data, config.seed)
    assert data.input_spec.kind == "text" and "review" in data.input_spec.vocabulary
    texts, _ = next(iter(data.train))
    assert texts.dtype.name == "string"


@pytest.mark.parametrize("autotune", [False, True])
def test_pipelines_autotune_only_when_asked(image_folder, autotune):
    config = load_config(None, tiny_overrides(image_folder, **{"data.autotune": autotune}))
    data = make_datasets(config.data, config.seed)
    for split in (data.train, data.validation, data.test):
        assert split.options().autotune.enabled is autotune
    assert len(list(data.train)) == -(-data.sizes["train"] // config.data.batch_size)
