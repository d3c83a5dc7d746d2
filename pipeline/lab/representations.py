"""Representation learning, seen: classes separate in what the network learnt to compute.

For the Fashion-MNIST CNN (configs/fashion_cnn.yaml's architecture) and the language-ID
model (configs/fortunes_langid.yaml's), trained briefly here, the test examples' raw input
and penultimate layer (the features the classifier head reads) are projected to 2-D by PCA
and coloured by class. The number beside each picture is how well the 2-D projection alone
separates the classes: the accuracy of a nearest-class-centroid rule in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import get_family
from pipeline.config import load_config
from pipeline.reports.insights import pca_2d, pca_figure
from pipeline.stages.data import make_datasets


@dataclass(frozen=True)
class RepresentationResult:
    model: str
    accuracy: float  # the model's own test accuracy after its short training
    raw_separation: float | None  # nearest-centroid accuracy in 2-D PCA of the raw input
    learned_separation: float  # the same in 2-D PCA of the penultimate layer
    figure: object


def centroid_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """Return the accuracy of assigning each point to the nearest class centroid."""
    classes = np.unique(labels)
    centroids = np.stack([points[labels == label].mean(axis=0) for label in classes])
    distances = ((points[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(classes[distances.argmin(axis=1)] == labels))


def _penultimate(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    extractor = keras.Model(model.inputs, model.get_layer("logits").input)
    # Called directly rather than through predict(): predict() rejects NumPy byte strings.
    return np.concatenate([
        np.asarray(extractor(tf.constant(inputs[start : start + 256]), training=False),
                   dtype=np.float32) for start in range(0, len(inputs), 256)])


def train_and_project(config_path: Path, *, name: str, data_overrides: dict, epochs: int,
                      seed: int, examples: int = 1000
                      ) -> RepresentationResult:
    """Train `config_path`'s model briefly on its data; return the 2-D projections."""
    config = load_config(config_path, {f"data.{key}": value
                                       for key, value in data_overrides.items()})
    data = make_datasets(config.data, seed)
    keras.utils.set_random_seed(seed)
    model = get_family(config.model.family).build(data.input_spec, data.num_classes,
                                                  **config.model.params)
    model.fit(data.train, epochs=epochs, verbose=0, shuffle=False)  # tf.data shuffles
    accuracy = float(model.evaluate(data.test, verbose=0, return_dict=True)["accuracy"])
    inputs, labels = data.examples("test", examples)
    learned = _penultimate(model, inputs)
    raw = None if data.input_spec.kind == "text" else \
        inputs.reshape(len(inputs), -1).astype(np.float32)
    figure = pca_figure(raw, learned, labels, data.class_names)
    figure.suptitle(f"{name}: test examples in 2-D (PCA)")
    return RepresentationResult(
        name, accuracy, None if raw is None else centroid_accuracy(pca_2d(raw), labels),
        centroid_accuracy(pca_2d(learned), labels), figure)


def fashion_cnn(*, examples: int, epochs: int, seed: int) -> RepresentationResult:
    return train_and_project(Path("configs/fashion_cnn.yaml"), name="Fashion-MNIST CNN",
                             data_overrides={"max_examples": examples}, epochs=epochs,
                             seed=seed)


def langid(config_path: Path, *, per_class: int, epochs: int, seed: int) -> RepresentationResult:
    return train_and_project(config_path, name="language ID (fortunes)",
                             data_overrides={"max_per_class": per_class}, epochs=epochs,
                             seed=seed)

