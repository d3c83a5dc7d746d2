"""Test-time augmentation: the served prediction averages an image and its mirror image.

A model trained with `random_flip` has seen both orientations of every garment, so its two
answers for an image and its mirror are two views of one input; their mean is a small
ensemble for the price of one model. It is a prediction-time choice (`export.test_time_flip`):
the Keras model stays as trained, and the float32 copy that is evaluated and exported wraps
it, so the test metrics, the parity check and the served SavedModel all see the average.
The cost is one more pass of the network per image, run as one call of twice the batch.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tfpipe")
class WithMirror(layers.Layer):
    """[N, H, W, C] images -> [2N, H, W, C]: the images, then each mirrored left to right."""

    def call(self, images):
        return ops.concatenate([images, ops.flip(images, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


@keras.saving.register_keras_serializable(package="tfpipe")
class MeanOfHalves(layers.Layer):
    """[2N, K] -> [N, K]: the mean of row i and row N + i (an image's two answers)."""

    def call(self, values):
        first, second = ops.split(values, 2, axis=0)
        return (first + second) / 2.0

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


def flip_averaged(model: keras.Model) -> keras.Model:
    """Return a model answering the mean of `model`'s probabilities for an image and its mirror.

    `model` must take a batch of images [N, H, W, C] (any dtype) and return [N, classes].
    """
    spec = model.inputs[0]
    if len(spec.shape) != 4:
        raise ValueError(f"test-time flips need image input [batch, height, width, channels], "
                         f"got {tuple(spec.shape)}")
    images = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=spec.name)
    both = model(WithMirror(name="with_mirror")(images), training=False)
    probabilities = MeanOfHalves(dtype="float32", name="probabilities")(both)
    wrapped = keras.Model(images, probabilities, name=f"{model.name}_flip_averaged")
    if model.compiled:  # the same loss and metrics, so `evaluate` reports them alike
        wrapped.compile_from_config(model.get_compile_config())
    return wrapped
