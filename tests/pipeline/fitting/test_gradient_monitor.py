"""The gradient monitor: ∂loss/∂h_t measured through a real Keras RNN, and logged to MLflow by
any training run that switches it on."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient

from models import get_family
from models.spec import InputSpec
from pipeline.config import load_config
from pipeline.fitting.gradients import hidden_state_gradients
from pipeline.stages import train
from tests.conftest import tiny_overrides


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_last_hidden_gradient_is_the_gradient_at_the_layers_output(cell):
    """Stepping the cell by hand reproduces the layer: at t = T, ∂loss/∂h_T is ∂loss/∂output."""
    keras.utils.set_random_seed(1)
    model = get_family("rnn").build(InputSpec.sequence(12, 3), 3, cell=cell, units=5,
                                    recurrent_layers=1, bidirectional=False, dense_units=0,
                                    dropout=0.0)
    inputs = np.random.default_rng(0).normal(size=(8, 12, 3)).astype("float32")
    labels = np.arange(8) % 3
    recurrent = model.get_layer(f"{cell}1")
    with tf.GradientTape() as tape:
        output = recurrent(tf.constant(inputs), training=False)
        tape.watch(output)
        loss = model.compute_loss(x=inputs, y=labels,
                                  y_pred=model.get_layer("probabilities")(
                                      model.get_layer("logits")(output)))
    expected = float(tf.reduce_mean(tf.norm(tape.gradient(loss, output), axis=-1)))
    per_step = hidden_state_gradients(model, inputs, labels)
    assert per_step.shape == (12,)
    assert per_step[-1] == pytest.approx(expected, rel=1e-4)
    assert np.all(per_step > 0)


def test_make_train_with_the_monitor_logs_layer_norms_and_hidden_gradients(workdir, image_folder):
    overrides = tiny_overrides(image_folder, **{
        "model.family": "rnn", "model.units": 4, "model.recurrent_layers": 1,
        "model.bidirectional": True, "model.dense_units": 0,
        "train.gradient_monitor": True, "train.gradient_monitor_examples": 16,
        "train.insights": False, "export.enabled": False})
    for key in ("model.conv_blocks", "model.filters"):
        overrides.pop(key)
    result = train.run(load_config(None, overrides), log=lambda line: None)
    client = MlflowClient(tracking_uri=result.tracking_uri)
    metrics = client.get_run(result.run_id).data.metrics
    layer_keys = {key for key in metrics if key.startswith("grad_norm/")}
    assert layer_keys == {"grad_norm/bidirectional_gru1", "grad_norm/logits"}
    steps = sorted(m.step for m in client.get_metric_history(result.run_id, "grad_norm/logits"))
    assert steps[0] == 0 and steps[:4] == [0, 1, 2, 3]  # at init, then the first batches
    for epoch in (0, 1, 2):  # at initialisation and after each of the 2 epochs
        curve = client.get_metric_history(result.run_id, f"grad_h/epoch_{epoch}")
        assert sorted(m.step for m in curve) == list(range(1, 13))  # t = 1..12 image rows
        assert all(m.value > 0 for m in curve)
    ratios = client.get_metric_history(result.run_id, "grad_h/first_over_last")
    assert sorted(m.step for m in ratios) == [0, 1, 2]
