"""Make the ideas of deep learning visible, as MLflow artifacts of each training run.

- backpropagation: the gradient norm that reaches each layer's weights (gradient_flow.png);
- representation learning: test examples projected to 2-D, raw input against the learned
  features the classifier head reads (representation_pca.png);
- CNNs: what the first conv block's filters respond to in one image (feature_maps.png);
- RNNs: how much the loss depends on each timestep, |dL/dx_t|, which decays for early steps
  when gradients vanish (gradient_through_time.png);
- activation functions and their derivatives, the one this model uses in bold
  (activations.png).
"""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from models.blocks import ACTIVATIONS
from pipeline.fitting.gradients import first_recurrent
from pipeline.fitting.gradients import layer_gradient_norms as gradient_norms
from pipeline.stages.data import Datasets
from pipeline.tracking import Run

SAMPLE = 512


def log_insights(model: keras.Model, data: Datasets, mlflow_run: Run) -> None:
    """Compute and log the figures and metrics above on a sample of test examples."""
    inputs, labels = data.examples("test", SAMPLE)
    inputs, labels = tf.constant(inputs), tf.constant(labels)
    norms = gradient_norms(model, inputs[:128], labels[:128])
    mlflow_run.log_metrics({f"grad_norm.{name}": value for name, value in norms.items()})
    mlflow_run.log_figure(_bar_figure(norms), "insights/gradient_flow.png")
    features = model.get_layer("logits").input
    if features is not None:
        extractor = keras.Model(model.inputs, features)
        learned = np.asarray(extractor(inputs, training=False), dtype=np.float32)
        raw = np.asarray(tf.reshape(tf.cast(inputs, tf.float32), (len(labels), -1))) \
            if data.input_spec.kind != "text" else None
        mlflow_run.log_figure(pca_figure(raw, learned, labels.numpy(), data.class_names),
                              "insights/representation_pca.png")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if convs:
        mlflow_run.log_figure(_feature_maps(model, convs[0], inputs[:1]),
                              "insights/feature_maps.png")
    recurrent = first_recurrent(model)
    if recurrent is not None:
        per_step = gradient_through_time(model, recurrent, inputs[:128], labels[:128])
        mlflow_run.log_figure(_time_figure(per_step, recurrent.name),
                              "insights/gradient_through_time.png")
    used = {layer.get_config().get("activation") for layer in model.layers}
    mlflow_run.log_figure(activation_figure(used), "insights/activations.png")


def gradient_through_time(model: keras.Model, recurrent: keras.layers.Layer,
                          inputs: tf.Tensor, labels: tf.Tensor) -> np.ndarray:
    """Return mean |dLoss/dx_t| per timestep t of the first recurrent layer's input.

    The families build chains, so running the layers in order reproduces the model and lets
    the tape watch the sequence right where it enters the recurrent stack.
    """
    x = inputs
    with tf.GradientTape() as tape:
        for layer in model.layers[1:]:
            if layer is recurrent:
                tape.watch(x)
                sequence = x
            x = layer(x, training=False)
        # Inside the tape: an op outside it would cut the path from loss back to sequence.
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, x))
    gradient = tape.gradient(loss, sequence)
    return tf.cast(tf.reduce_mean(tf.abs(gradient), axis=[0, 2]), tf.float32).numpy()


def _bar_figure(norms: dict[str, float]):
    figure, axis = plt.subplots(figsize=(max(6, 0.6 * len(norms)), 4))
    axis.bar(range(len(norms)), list(norms.values()), color="tab:blue")
    axis.set_xticks(range(len(norms)), list(norms), rotation=45, ha="right")
    axis.set_yscale("log")
    axis.set_ylabel("‖∂loss/∂W‖ (log)")
    axis.set_title("Backpropagation: the gradient reaching each layer\n(input → output)")
    figure.tight_layout()
    return figure


def pca_2d(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def pca_figure(raw: np.ndarray | None, learned: np.ndarray, labels: np.ndarray,
                class_names: tuple[str, ...]):
    panels = [("raw input", raw), ("learned features (head input)", learned)]
    panels = [(title, values) for title, values in panels if values is not None]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for axis, (title, values) in zip(axes[0], panels):
        points = pca_2d(values)
        for label, name in enumerate(class_names):
            chosen = labels == label
            axis.scatter(points[chosen, 0], points[chosen, 1], s=6, label=name)
        axis.set_title(f"{title}: first 2 principal components")
    axes[0][-1].legend(markerscale=3, fontsize=7, loc="best")
    figure.suptitle("Representation learning: classes separate in the learned features")
    figure.tight_layout()
    return figure


def _feature_maps(model: keras.Model, conv: keras.layers.Layer, image: tf.Tensor):
    maps = np.asarray(keras.Model(model.inputs, conv.output)(image, training=False)[0],
                      dtype=np.float32)
    count = min(16, maps.shape[-1])
    figure, axes = plt.subplots(2, 9, figsize=(13, 3.4))
    axes = axes.ravel()
    axes[0].imshow(np.squeeze(image[0].numpy()), cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for index in range(1, len(axes)):
        axes[index].axis("off")
        if index - 1 < count:
            axes[index].imshow(maps[..., index - 1], cmap="viridis")
    axes[0].axis("off")
    figure.suptitle(f"CNN: responses of the first {count} filters of {conv.name}")
    figure.tight_layout()
    return figure


def _time_figure(per_step: np.ndarray, layer_name: str):
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(np.arange(1, len(per_step) + 1), per_step, "-o", markersize=3)
    axis.set_yscale("log")
    axis.set_xlabel("timestep t")
    axis.set_ylabel("mean |∂loss/∂x_t| (log)")
    axis.set_title(f"Backpropagation through time into {layer_name}")
    figure.tight_layout()
    return figure


def activation_figure(used: set[str] | None = None):
    """Return every activation and its derivative (by autodiff) on [-5, 5]."""
    x = tf.linspace(-5.0, 5.0, 401)
    figure, (values_axis, slope_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in ACTIVATIONS:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = keras.activations.get(name)(x)
        slope = tape.gradient(y, x)
        width = 2.8 if used and name in used else 1.0
        values_axis.plot(x, y, linewidth=width, label=name)
        slope_axis.plot(x, slope, linewidth=width, label=name)
    values_axis.set_title("activation f(x)")
    slope_axis.set_title("derivative f'(x): what backprop multiplies by")
    values_axis.set_ylim(-2, 5)
    for axis in (values_axis, slope_axis):
        axis.grid(alpha=0.3)
    slope_axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure
