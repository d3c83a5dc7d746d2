"""Shared fixtures: a temp working folder and small, real, learnable data sets on disk."""

from __future__ import annotations

import os

# `make test VAR=...` passes its command-line variables down to every make a test starts
# (MAKEFLAGS); the Makefile would then refuse them as unread by that target. Tests start
# make as a user would, from a clean command line.
for _inherited in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL"):
    os.environ.pop(_inherited, None)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

CLASS_NAMES = ("bar", "column", "diagonal")


def pattern(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a noisy grayscale image whose class is visible: a bar, a column or a diagonal."""
    image = rng.integers(0, 60, (size, size), dtype=np.int64)
    offset = int(rng.integers(2, size - 2))
    if label == 0:
        image[offset - 1 : offset + 1, :] += 180
    elif label == 1:
        image[:, offset - 1 : offset + 1] += 180
    else:
        np.fill_diagonal(image, 240)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, per_class: int = 20, size: int = 12, seed: int = 0) -> Path:
    """Write PNGs in one subfolder per class under `root`; return `root`."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(pattern(label, size, rng)).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temp folder: mlruns/, saved_models/ and checkpoints/ land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


def tiny_overrides(folder: Path, **extra) -> dict:
    """Return config overrides for a seconds-long run of the tiny CNN on an image folder."""
    overrides = {
        "name": "tiny", "data.source": "image_folder", "data.path": str(folder),
        "data.image_size": [12, 12], "data.batch_size": 16,
        "data.validation_fraction": 0.2, "data.test_fraction": 0.2,
        "model.family": "cnn", "model.conv_blocks": 1, "model.filters": 4,
        "model.dense_units": 8, "model.learning_rate": 0.01,
        "train.epochs": 2, "train.early_stopping_patience": None,
        "tracking.experiment": "tests", "export.parity_examples": 8,
        "export.warmup_batch_sizes": [1, 4],
    }
    overrides.update(extra)
    return overrides


def write_text_folder(root: Path, per_class: int = 12) -> Path:
    """Write short reviews in one subfolder per class (pos, neg) under `root`; return `root`."""
    words = {"pos": "great superb fine lovely", "neg": "awful dull poor boring"}
    for label, vocabulary in words.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            picked = vocabulary.split()[index % 4 :] + vocabulary.split()[: index % 4]
            (root / label / f"{index:03d}.txt").write_text(f"{' '.join(picked)} review {index}")
    return root


@pytest.fixture(scope="session")
def trained_exports(tmp_path_factory) -> dict[str, Path]:
    """Return {"cnn": version folder, "rnn": version folder} trained and exported by the pipeline.

    The CNN learns 300 Fashion-MNIST images (28x28x1, 10 classes) for one epoch, the RNN a
    small folder of texts: tests that need "a trained model" serve what `make train` exports
    (signatures, warmup requests, lineage), never a hand-made look-alike.
    """
    from pipeline.config import load_config
    from pipeline.stages import train

    root = tmp_path_factory.mktemp("trained")
    common = {
        "tracking.tracking_uri": f"sqlite:///{root / 'mlruns.db'}", "tracking.experiment": "tests",
        "export.base_dir": str(root / "saved_models"), "train.checkpoint_dir": str(root / "checkpoints"),
        "train.insights": False, "train.epochs": 1, "train.early_stopping_patience": None,
        "data.batch_size": 32, "export.parity_examples": 8, "export.warmup_batch_sizes": [1, 4]}
    families = {
        # Offline: TFDS's prepared copy or Debian's dataset-fashion-mnist (CI installs it).
        "cnn": {"data.source": "fashion_mnist", "data.download": False,
                "data.max_examples": 300, "model.family": "cnn",
                "model.conv_blocks": 1, "model.filters": 4, "model.dense_units": 8},
        "rnn": {"data.source": "text_folder", "data.path": str(write_text_folder(root / "reviews")),
                "data.sequence_length": 8, "data.test_fraction": 0.25, "model.family": "rnn", "model.units": 8,
                "model.recurrent_layers": 1, "model.dense_units": 0, "model.embedding_dim": 8},
    }
    return {name: train.run(load_config(None, {**common, "name": name, **overrides}),
                            log=lambda line: None).export_path
            for name, overrides in families.items()}
