"""The shared building blocks: the fused batch normalization against Keras' own."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from models.blocks import FusedBatchNormalization


def _pair(shape):
    """Return (Keras' batch norm, the fused one), built alike with the same weights."""
    plain, fused = layers.BatchNormalization(), FusedBatchNormalization()
    for layer in (plain, fused):
        layer.build(shape)
    rng = np.random.default_rng(1)
    fused.gamma.assign(rng.normal(1.0, 0.2, shape[-1]).astype("float32"))
    fused.beta.assign(rng.normal(0.0, 0.2, shape[-1]).astype("float32"))
    plain.set_weights(fused.get_weights())
    return plain, fused


def test_training_matches_keras_outputs_gradients_and_moving_statistics():
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32"))
    plain, fused = _pair(x.shape)
    answers = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * tf.range(6, dtype=tf.float32))
        answers.append((y, *tape.gradient(loss, [x, layer.gamma, layer.beta])))
    for expected, got in zip(*answers):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, rtol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-5)
    assert not np.allclose(fused.moving_mean, 0.0)  # the statistics did move


def test_inference_and_unfusable_cases_run_keras_own_code():
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 3, 3, 2)).astype("float32"))
    plain, fused = _pair(x.shape)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-6)
    fused.synchronized = True  # multi-worker training: statistics all-reduced by Keras
    assert not fused._fusable(x, True, None)
    flat = FusedBatchNormalization()
    assert not flat._fusable(tf.zeros((4, 2)), True, None)  # a 2-D input (after Dense)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_keeps_statistics_in_float32(dtype):
    layer = FusedBatchNormalization(dtype=f"mixed_{dtype}")
    x = tf.cast(tf.random.stateless_normal((4, 3, 3, 2), seed=(1, 2)) * 100.0, dtype)
    y = layer(x, training=True)
    assert y.dtype == dtype and layer.moving_variance.dtype == "float32"
    assert np.isfinite(layer.moving_variance.numpy()).all()
