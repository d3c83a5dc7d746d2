"""The lab: the adding problem's data and budgets, a gated cell beating SimpleRNN, and the
MLflow parent run with one child per experiment, PNGs and a summary table."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.lab import adding
from pipeline.lab.config import LabConfig
from pipeline.lab.run import run as run_lab
from pipeline.sources import DEBIAN_FASHION_MNIST, FORTUNES_DIR


def test_adding_problem_marks_one_value_per_half_and_its_baseline_is_one_sixth():
    inputs, targets = adding.adding_problem(20_000, 50, np.random.default_rng(0))
    markers = inputs[..., 1]
    assert inputs.shape == (20_000, 50, 2) and targets.shape == (20_000, 1)
    assert np.all(markers[:, :25].sum(axis=1) == 1) and np.all(markers[:, 25:].sum(axis=1) == 1)
    np.testing.assert_allclose((inputs[..., 0] * markers).sum(axis=1), targets[:, 0], rtol=1e-6)
    assert np.mean((targets - 1.0) ** 2) == pytest.approx(adding.BASELINE_MSE, rel=0.03)


def test_cells_get_the_same_parameter_budget():
    counts = {cell: adding.build(cell, 10, adding.units_for_budget(cell, 1200), 1e-3)
              .count_params() for cell in ("simple_rnn", "lstm", "gru")}
    assert all(abs(count - 1200) <= 0.06 * 1200 for count in counts.values()), counts


def test_lstm_beats_simple_rnn_on_a_short_adding_problem():
    common = dict(budget=300, steps=500, batch_size=64, learning_rate=0.01, seed=42,
                  monitor=False)
    lstm = adding.train_one("lstm", 40, **common)
    simple = adding.train_one("simple_rnn", 40, **common)
    assert lstm.mse < adding.BASELINE_MSE / 4  # learnt to read the marked values
    assert lstm.mse < simple.mse / 2, (lstm.mse, simple.mse)


def lab_runs(result):
    client = MlflowClient(tracking_uri=result.tracking_uri)
    children = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.run_id}'")
    return client, children


def test_lab_logs_a_parent_run_children_figures_and_a_summary(tmp_path):
    config = LabConfig.quick(experiments=("adding",), tracking_uri=f"sqlite:///{tmp_path}/m.db",
                             output_dir=tmp_path / "out", adding_steps=10, lengths=(8, 16),
                             gradient_length=16, cells=("simple_rnn", "lstm"))
    result = run_lab(config, log=lambda line: None)
    client, children = lab_runs(result)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert [child.data.tags["lab"] for child in children] == ["adding"]
    child = children[0]
    assert {"mse.lstm.T16", "mse.simple_rnn.T8", "mse.lstm.T8"} <= set(child.data.metrics)
    curve = client.get_metric_history(child.info.run_id, "grad_h/simple_rnn/epoch_0")
    assert sorted(metric.step for metric in curve) == list(range(1, 17))
    artifacts = {item.path for item in client.list_artifacts(child.info.run_id, "lab")}
    assert {"lab/adding_mse_by_length.png", "lab/vanishing_gradient_lstm.png"} <= artifacts
    assert (tmp_path / "out" / "vanishing_gradient_simple_rnn.png").stat().st_size > 1000
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| T | simple_rnn MSE | lstm MSE |" in summary and "| 16 |" in summary


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST.exists() and (FORTUNES_DIR / "de").is_dir()),
                    reason="needs dataset-fashion-mnist and the fortunes packages")
def test_quick_lab_runs_every_experiment(tmp_path):
    config = LabConfig.quick(tracking_uri=f"sqlite:///{tmp_path}/m.db", output_dir=tmp_path)
    result = run_lab(config, log=lambda line: None)
    _, children = lab_runs(result)
    assert sorted(child.data.tags["lab"] for child in children) == [
        "activations", "adding", "representations"]
    assert all(child.info.status == "FINISHED" for child in children)
    for name in ("activations_mlp_init_gradients.png", "activations_learning_curves.png",
                 "representation_fashion_cnn.png", "representation_langid.png"):
        assert (tmp_path / name).is_file()
    assert "| mlp | relu |" in result.summary and "language ID" in result.summary


def test_a_gradient_length_that_is_not_trained_is_refused():
    with pytest.raises(ValueError, match="gradient_length 300 is not one of lengths"):
        LabConfig(gradient_length=300)
