"""The training stage end to end: real TF, a real MLflow store in a temp dir, real exports."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient

from pipeline.config import ConfigError, load_config
from pipeline.sources import DataError
from pipeline.stages import train
from pipeline.tracking import Tracker
from serving.export import ExportError
from tests.conftest import tiny_overrides, write_text_folder


def client_for(result_or_uri) -> MlflowClient:
    uri = getattr(result_or_uri, "tracking_uri", result_or_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def test_train_tracks_evaluates_exports_and_registers(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    result = train.run(config, log=lambda line: None)
    client = client_for(result)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.filters"] == "4" and run.data.params["train.epochs"] == "2"
    assert run.data.params["dataset.origin"] == "folder"
    assert steps(client, result.run_id, "val_accuracy") == [1, 2]
    for key in ("test_accuracy", "test_loss", "export_parity_max_abs_diff"):
        assert key in run.data.metrics
    assert run.data.metrics["export_parity_max_abs_diff"] <= 1e-4
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
    # Where the command's time went, printed in its result table and logged.
    assert list(result.seconds) == ["data_seconds", "fit_seconds", "publish_seconds", "total_seconds"]
    assert result.seconds["total_seconds"] >= sum(
        value for part, value in result.seconds.items() if part != "total_seconds")
    assert train.describe(result)["total_seconds"] == round(result.seconds["total_seconds"], 1)
    assert run.data.metrics["total_seconds"] == pytest.approx(result.seconds["total_seconds"])
    artifacts = artifact_paths(client, result.run_id)
    for expected in ("evaluation/learning_curves.png", "evaluation/confusion_matrix.png",
                     "evaluation/per_class_report.md", "model_summary.txt", "data/identity.json",
                     "saved_model/saved_model.pb", "insights/gradient_flow.png",
                     "insights/representation_pca.png", "insights/activations.png"):
        assert expected in artifacts
    assert "insights_error" not in run.data.tags
    assert run.inputs.dataset_inputs  # the data set, in MLflow's Datasets panel
    # Registry version == export folder.
    assert result.model_version == 1 and result.export_path == Path("saved_models/tiny/1")
    version = client.get_model_version("tiny", "1")
    assert version.run_id == result.run_id
    assert (workdir / "saved_models/tiny/1/saved_model.pb").exists()
    assert not list((workdir / "saved_models/tiny").glob(".staging-*"))
    assert not (workdir / "checkpoints/tiny").exists()
    second = train.run(config, log=lambda line: None)
    assert second.model_version == 2 and (workdir / "saved_models/tiny/2").is_dir()


def test_the_export_serves_what_keras_predicts(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    result = train.run(config, log=lambda line: None)
    loaded = tf.saved_model.load(str(result.export_path))
    assert set(loaded.signatures) == {"serving_default", "predict_image_bytes", "classify"}
    names = (result.export_path / "assets/class_names.txt").read_text().split()
    outputs = loaded.signatures["serving_default"](image=tf.zeros([2, 12, 12, 1], tf.uint8))
    assert outputs["class_name"].numpy()[0].decode() == names[int(outputs["class_id"][0])]


def test_test_time_flip_is_evaluated_and_served(workdir, image_folder):
    """export.test_time_flip: the served answer is the mean over an image and its mirror."""
    config = load_config(None, tiny_overrides(image_folder, **{"export.test_time_flip": True}))
    result = train.run(config, log=lambda line: None)
    served = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (3, 12, 12, 1)), tf.uint8)
    mirrored = tf.reverse(images, axis=[2])
    plain, flipped = (served(image=batch)["probabilities"].numpy() for batch in (images, mirrored))
    np.testing.assert_allclose(plain, flipped, atol=1e-6)  # the mean is the same either way
    assert client_for(result).get_run(result.run_id).data.metrics["export_parity_max_abs_diff"] <= 1e-4


def test_test_time_flip_refuses_text_before_training(workdir, tmp_path):
    reviews = write_text_folder(tmp_path / "reviews")
    overrides = {key: value for key, value in tiny_overrides(reviews).items()
                 if not key.startswith("model.") and key != "data.image_size"}
    config = load_config(None, {**overrides, "data.source": "text_folder", "data.sequence_length": 8,
                                "model.family": "rnn", "model.units": 8, "export.test_time_flip": True})
    with pytest.raises(ConfigError, match="export.test_time_flip mirrors images"):
        train.run(config, log=lambda line: None)
    client = client_for(f"sqlite:///{workdir / 'mlruns/mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


class InterruptAfter(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch, after the stage's own callbacks backed it up."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_same_mlflow_run_from_its_last_epoch(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder, **{"train.epochs": 5}))
    with pytest.raises(KeyboardInterrupt):
        train.run(config, log=lambda line: None, callbacks=[InterruptAfter(2)])
    state = json.loads((workdir / "checkpoints/tiny/run.json").read_text())
    client = client_for(f"sqlite:///{workdir / 'mlruns/mlflow.db'}")
    assert client.get_run(state["run_id"]).info.status == "KILLED"
    assert not (workdir / "saved_models/tiny").exists() or not any(
        p.name.isdigit() for p in (workdir / "saved_models/tiny").iterdir())

    result = train.run(config, log=lambda line: None)
    assert result.resumed and result.run_id == state["run_id"]
    # Epochs 1-2 ran once, before the interruption; the resumed fit ran 3-5 only.
    assert steps(client, result.run_id, "epoch_seconds") == [1, 2, 3, 4, 5]
    assert client.get_run(result.run_id).info.status == "FINISHED"
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1


def test_changed_config_starts_a_new_run(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder, **{"train.epochs": 3}))
    with pytest.raises(KeyboardInterrupt):
        train.run(config, log=lambda line: None, callbacks=[InterruptAfter(1)])
    changed = load_config(None, tiny_overrides(image_folder, **{"model.filters": 6}))
    assert not train.run(changed, log=lambda line: None).resumed


def test_a_killed_run_is_continued_only_under_its_own_parent(workdir, image_folder):
    # A sweep started afresh (OVERWRITE=1) must not continue the abandoned sweep's retraining.
    config = load_config(None, tiny_overrides(image_folder, **{"train.epochs": 3}))
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    abandoned, fresh = (tracker.open_run(name) for name in ("sweep-old", "sweep-new"))
    with pytest.raises(KeyboardInterrupt):
        train.run(config, log=lambda line: None, callbacks=[InterruptAfter(1)],
                  parent_run_id=abandoned.run_id)
    result = train.run(config, log=lambda line: None, parent_run_id=fresh.run_id)
    assert not result.resumed
    run = client_for(result).get_run(result.run_id)
    assert run.data.tags["mlflow.parentRunId"] == fresh.run_id
    assert steps(client_for(result), result.run_id, "epoch_seconds") == [1, 2, 3]


def runs_of_tests_experiment(workdir: Path) -> list:
    client = client_for(f"sqlite:///{workdir / 'mlruns/mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_corrupt_data_is_named_before_any_run_and_exports_nothing(workdir, image_folder):
    # Data is read before the MLflow run opens: bad data leaves no run (RUNNING or FAILED).
    (image_folder / "column" / "003.png").write_bytes(b"GIF89a truncated")
    config = load_config(None, tiny_overrides(image_folder))
    with pytest.raises(DataError, match="column/003.png"):
        train.run(config, log=lambda line: None)
    assert runs_of_tests_experiment(workdir) == []
    assert not (workdir / "saved_models").exists() or not any((workdir / "saved_models").rglob("*.pb"))


def test_an_existing_version_folder_is_never_overwritten(workdir, image_folder):
    (workdir / "saved_models/tiny/1").mkdir(parents=True)
    config = load_config(None, tiny_overrides(image_folder))
    with pytest.raises(ExportError, match="saved_models/tiny/1 exists"):
        train.run(config, log=lambda line: None)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m pipeline` as a user would, with the CLI's own choice of CPU kernels."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_cli_reports_bad_config_in_one_line_and_exit_code_2(workdir):
    (workdir / "bad.yaml").write_text("model: {family: cnn, activation: relux}\n")
    done = run_cli("train", "--config", "bad.yaml", cwd=workdir)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.activation" in errors[0] and "relux" in errors[0]
    assert not (workdir / "saved_models").exists()


def test_cli_trains_with_flag_overrides(workdir, image_folder):
    overrides = tiny_overrides(image_folder)
    del overrides["train.epochs"], overrides["data.batch_size"]
    sets = [f"--set={key}={json.dumps(value)}" for key, value in overrides.items()
            if value is not None]
    done = run_cli("train", "--epochs", "1", "--batch-size", "8", *sets, cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test_accuracy" in done.stdout and "saved_models/tiny/1" in done.stdout
    client = client_for(f"sqlite:///{workdir / 'mlruns/mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.data.params["train.epochs"] == "1" and run.data.params["data.batch_size"] == "8"
    # oneDNN's kernels on every x86-64 CPU, where TensorFlow alone keeps them off without
    # AVX512_VNNI/BF16 or AMX; said in the run's first line and tagged
    if platform.machine() == "x86_64":
        assert run.data.tags["hardware.onednn"] == "on (TF_ENABLE_ONEDNN_OPTS=1)"
        assert "oneDNN on (TF_ENABLE_ONEDNN_OPTS=1)" in done.stdout


def test_cli_missing_data_folder_is_one_line_and_leaves_no_run(workdir, tmp_path):
    overrides = tiny_overrides(tmp_path / "nowhere")
    sets = [f"--set={key}={json.dumps(value)}" for key, value in overrides.items()
            if value is not None]
    done = run_cli("train", *sets, cwd=workdir)
    assert done.returncode == 1 and "data.path: folder not found" in done.stderr
    assert runs_of_tests_experiment(workdir) == []


def test_rnn_runs_log_the_gradient_through_time(workdir, image_folder):
    overrides = tiny_overrides(image_folder, **{"name": "tiny_rnn", "model": {
        "family": "rnn", "cell": "gru", "units": 8, "dense_units": 8}})
    for key in ("model.family", "model.conv_blocks", "model.filters", "model.dense_units",
                "model.learning_rate"):
        overrides.pop(key)
    result = train.run(load_config(None, overrides), log=lambda line: None)
    client = client_for(result)
    assert "insights_error" not in client.get_run(result.run_id).data.tags
    assert "insights/gradient_through_time.png" in artifact_paths(client, result.run_id)


def test_early_stopping_ends_the_run_before_its_last_epoch(workdir, image_folder):
    # A learning rate too small to move the weights: validation accuracy never improves
    # after the first epoch (no batch norm, whose statistics would still move).
    config = load_config(None, tiny_overrides(image_folder, **{
        "train.epochs": 10, "train.early_stopping_patience": 2, "train.lr_schedule": "constant",
        "model.learning_rate": 1e-9, "model.batch_norm": False, "train.insights": False,
        "export.enabled": False}))
    result = train.run(config, log=lambda line: None)
    assert steps(client_for(result), result.run_id, "val_accuracy") == [1, 2, 3]
