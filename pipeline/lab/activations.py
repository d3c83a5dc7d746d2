"""Activation functions: what sigmoid, tanh, ReLU, GELU and SiLU do to learning.

The same deep MLP (many narrow Dense layers, no normalisation, so nothing hides the effect)
and the same small CNN (the `cnn` family without batch norm) are trained on the same
Fashion-MNIST images with the same seed, optimiser and number of steps; only the activation
changes. Measured: the gradient norm reaching each layer in the first steps (a sigmoid's
derivative is at most 0.25, so every layer shrinks it at least 4x: the early layers of a
sigmoid stack barely move), the share of dead ReLUs (units that output 0 for every example,
so no gradient flows through them again), and held-out accuracy by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from models import get_family
from models.blocks import compile_classifier
from models.spec import InputSpec
from pipeline.fitting.gradient_monitor import GradientMonitor
from pipeline.lab.common import HeldOutCurve

IMAGE = InputSpec.image(28, 28, 1)


def build_mlp(activation: str, *, layers: int, units: int, num_classes: int = 10
              ) -> keras.Model:
    """Return a compiled deep MLP on raw uint8 images: `layers` Dense layers of `units`."""
    inputs = keras.Input(IMAGE.shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    for index in range(1, layers + 1):
        x = keras.layers.Dense(units, activation=activation, name=f"dense{index}")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"mlp_{activation}")
    return compile_classifier(model, optimizer="adam", learning_rate=1e-3, weight_decay=0.0)


def build_cnn(activation: str) -> keras.Model:
    """Return the small CNN of the `cnn` family with `activation` and no batch norm."""
    return get_family("cnn").build(IMAGE, 10, conv_blocks=2, filters=8, batch_norm=False,
                                   activation=activation, block_dropout=0.0, dense_units=32,
                                   dense_dropout=0.0, learning_rate=1e-3)


def _activated_outputs(model: keras.Model) -> list[keras.KerasTensor]:
    """Return the hidden layers' outputs after their activation (the head's softmax excluded)."""
    outputs = []
    for layer in model.layers:
        activation = layer.get_config().get("activation")
        if isinstance(layer, keras.layers.Activation) and layer.name != "probabilities":
            outputs.append(layer.output)
        elif isinstance(layer, keras.layers.Dense) and activation not in (None, "linear"):
            outputs.append(layer.output)
    return outputs


def dead_unit_share(model: keras.Model, inputs: np.ndarray) -> float:
    """Return the share of hidden units (per Dense unit or conv channel) that are exactly 0
    on every input: a ReLU that will never pass a gradient again."""
    values = keras.Model(model.inputs, _activated_outputs(model))([inputs])
    dead = total = 0
    for value in values:
        channels = np.asarray(value).reshape(-1, value.shape[-1])
        dead += int(np.sum(np.all(channels == 0, axis=0)))
        total += channels.shape[-1]
    return dead / max(1, total)


@dataclass(frozen=True)
class ActivationResult:
    model: str  # "mlp" or "cnn"
    activation: str
    accuracy: float  # held-out, after training
    curve: tuple[list[int], list[float]]  # steps, held-out accuracy
    first_step_norms: dict[str, float]  # ‖∂loss/∂W‖ per layer at initialisation
    early_norms: list[tuple[int, dict[str, float]]]  # the same over the first steps
    dead_share: float
    seconds: float

    def steps_to(self, accuracy: float) -> int | None:
        """Return the first measured step where held-out accuracy reached `accuracy`."""
        return next((step for step, value in zip(*self.curve) if value >= accuracy), None)


def train_one(kind: str, activation: str, data: tuple[np.ndarray, ...], *, epochs: int,
              monitor_steps: int, seed: int, mlp_layers: int, mlp_units: int,
              batch_size: int = 64) -> ActivationResult:
    """Train the MLP or CNN with one activation; return what it measured."""
    import time

    train_inputs, train_labels, test_inputs, test_labels = data
    keras.utils.set_random_seed(seed)
    model = build_mlp(activation, layers=mlp_layers, units=mlp_units) if kind == "mlp" \
        else build_cnn(activation)
    steps = epochs * -(-len(train_inputs) // batch_size)
    curve = HeldOutCurve(test_inputs, test_labels, every=max(1, steps // 12))
    monitor = GradientMonitor(None, train_inputs[:128], train_labels[:128],
                              first_steps=monitor_steps)
    started = time.perf_counter()
    model.fit(train_inputs, train_labels, batch_size=batch_size, epochs=epochs, verbose=0,
              shuffle=True, callbacks=[curve, monitor])
    seconds = time.perf_counter() - started
    accuracy = curve.curve[-1][1]["accuracy"] if curve.curve[-1][0] == curve.step else \
        float(model.evaluate(test_inputs, test_labels, verbose=0, return_dict=True)["accuracy"])
    return ActivationResult(kind, activation, accuracy, curve.series("accuracy"),
                            monitor.layer_norms[0][1], monitor.layer_norms[:monitor_steps + 1],
                            dead_unit_share(model, test_inputs[:512]), seconds)
