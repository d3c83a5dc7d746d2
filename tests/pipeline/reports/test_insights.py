"""Insights: the gradients they plot are real gradients of the loss."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models import InputSpec, get_family
from pipeline.reports.insights import gradient_norms, gradient_through_time


def _rnn(cell: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    return get_family("rnn").build(InputSpec.image(10, 6, 1), 3, cell=cell, units=8,
                                   recurrent_layers=2, bidirectional=True, dense_units=0)


def _batch() -> tuple[tf.Tensor, tf.Tensor]:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 10, 6, 1), dtype=np.uint8)
    return tf.constant(pixels), tf.constant(np.arange(16) % 3)


def test_gradient_through_time_has_one_positive_value_per_timestep():
    inputs, labels = _batch()
    for cell in ("simple_rnn", "lstm", "gru"):
        model = _rnn(cell)
        recurrent = next(layer for layer in model.layers
                         if isinstance(layer, keras.layers.Bidirectional))
        per_step = gradient_through_time(model, recurrent, inputs, labels)
        assert per_step.shape == (10,)  # 10 image rows are 10 timesteps
        assert np.all(np.isfinite(per_step)) and np.all(per_step > 0)


def test_gradient_norms_reach_every_kernel_input_to_output():
    inputs, labels = _batch()
    model = _rnn("gru")
    norms = gradient_norms(model, inputs, labels)
    assert list(norms) == ["bidirectional_gru1", "bidirectional_gru2", "logits"]
    assert all(value > 0 for value in norms.values())
