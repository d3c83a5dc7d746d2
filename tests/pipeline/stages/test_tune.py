"""Sweeps: the MLflow tree, failures, resume after a kill, chief + workers, promotion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.config import ConfigError, load_config
from pipeline.fitting.hypermodel import shown
from pipeline.stages import promote, train, tune
from tests.conftest import tiny_overrides

SPACE = {"filters": [4, 6], "conv_blocks": 1, "dense_units": 8, "convs_per_block": 1,
         "learning_rate": {"min": 0.005, "max": 0.02, "sampling": "log"}}


def sweep_overrides(folder: Path, **extra) -> dict:
    overrides = tiny_overrides(folder, **{
        "tune.tuner": "random", "tune.max_trials": 3, "tune.epochs": 2,
        "tune.hyperparameters": SPACE, "tune.retrain_epochs": 1})
    overrides.update(extra)
    return overrides


def client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'mlruns/mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs_of(mlflow: MlflowClient) -> list:
    experiment = mlflow.get_experiment_by_name("tests")
    return mlflow.search_runs([experiment.experiment_id], max_results=1000)


def test_sweep_is_one_parent_run_with_a_child_per_trial(workdir, image_folder):
    config = load_config(None, sweep_overrides(image_folder))
    killed_train = workdir / "checkpoints/tiny/run.json"  # a `make train` of the same name
    killed_train.parent.mkdir(parents=True)
    killed_train.write_text('{"run_id": "elsewhere", "fingerprint": "x"}')
    lines: list[str] = []
    result = tune.run(config, log=lines.append)
    printed = "\n".join(lines)
    for trial_id in "012":  # a progress line per trial, then the table of trials
        assert f"trial {trial_id} started [" in printed and f"trial {trial_id} completed" in printed
    assert "| trial | status | val_accuracy |" in printed and "best trial" in printed
    mlflow = client(workdir)
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.name"] == "tiny"
    assert parent.data.params["tune.tuner"] == "random"
    assert "best_val_accuracy" in parent.data.metrics and "best.filters" in parent.data.params
    artifacts = {a.path for a in mlflow.list_artifacts(result.parent_run_id, "sweep")}
    assert {"sweep/trials.md", "sweep/hyperparameters.png", "sweep/search_space.json"} <= artifacts
    children = [r for r in runs_of(mlflow)
                if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    trials = [r for r in children if "kerastuner.trial_id" in r.data.tags]
    assert sorted(r.data.tags["kerastuner.trial_id"] for r in trials) == ["0", "1", "2"]
    for trial in trials:
        assert trial.info.status == "FINISHED" and trial.data.tags["trial_status"] == "completed"
        assert trial.data.params["filters"] in ("4", "6") and trial.data.params["conv_blocks"] == "1"
        steps = [m.step for m in mlflow.get_metric_history(trial.info.run_id, "val_accuracy")]
        assert sorted(steps) == [1, 2] and "final_val_accuracy" in trial.data.metrics
    [final] = [r for r in children if "kerastuner.trial_id" not in r.data.tags]
    assert final.info.run_id == result.final.run_id and "test_accuracy" in final.data.metrics
    version = mlflow.get_model_version_by_alias("tiny", "challenger")
    assert int(version.version) == result.final.model_version
    assert (workdir / f"saved_models/tiny/{version.version}/saved_model.pb").exists()
    assert killed_train.exists()  # the retraining kept its backup under tuning/tiny/final
    # The same command again finds the sweep finished and does nothing.
    assert tune.run(config, log=lambda line: None) is None
    assert len(runs_of(mlflow)) == len(children) + 1


def test_failed_trials_are_recorded_and_the_search_goes_on(workdir, image_folder):
    space = {**SPACE, "conv_blocks": [1, 5]}  # 5 blocks cannot pool a 12x12 image
    config = load_config(None, sweep_overrides(image_folder, **{
        "tune.hyperparameters": space, "tune.max_trials": 4,
        "tune.max_consecutive_failed_trials": 10, "tune.final": "restore"}))
    result = tune.run(config, log=lambda line: None)
    trials = [r for r in runs_of(client(workdir)) if "kerastuner.trial_id" in r.data.tags]
    statuses = {r.data.tags["trial_status"] for r in trials}
    assert len(trials) == 4 and "completed" in statuses
    for run in trials:
        if run.data.params["conv_blocks"] == "5":
            assert run.data.tags["trial_status"] == "invalid" and run.info.status == "FAILED"
            assert "pools a 12x12 image below 1x1" in run.data.tags["error"]
    assert result.best_hyperparameters["conv_blocks"] == 1


def test_config_errors_fail_before_any_trial(workdir, image_folder):
    with pytest.raises(ConfigError, match="tune.hyperparameters.filtres: not a keyword"):
        load_config(None, sweep_overrides(image_folder, **{
            "tune.hyperparameters": {"filtres": [4, 8]}}))
    config = load_config(None, sweep_overrides(image_folder, **{
        "tune.hyperparameters": {"learning_rate": {"low": 0.1, "max": 0.2}}}))
    with pytest.raises(ConfigError, match="tune.hyperparameters.learning_rate: a range takes"):
        tune.run(config, log=lambda line: None)
    assert not [r for r in runs_of(client(workdir)) if "kerastuner.trial_id" in r.data.tags]


def write_config(workdir: Path, overrides: dict) -> Path:
    raw: dict = {}
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = workdir / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def tune_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "tune", "--config", str(config), *extra]


@pytest.mark.slow  # over a minute on 2 busy cores
def test_killed_sweep_resumes_same_runs_and_the_trial_from_its_epoch(workdir, image_folder):
    epochs = 25
    config = write_config(workdir, sweep_overrides(image_folder, **{
        "tune.max_trials": 2, "tune.epochs": epochs, "tune.hyperparameters": {**SPACE, "filters": 4}}))
    process = subprocess.Popen(tune_command(config), cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    metadata = workdir / "tuning/tiny/trial_0/backup0/training_metadata.json"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if metadata.exists():
            try:
                if json.loads(metadata.read_text()).get("epoch", 0) >= 3:
                    break
            except ValueError:  # being written
                pass
        time.sleep(0.02)
    assert process.poll() is None, "the sweep ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.time() * 1000
    mlflow = client(workdir)
    [interrupted] = [r for r in runs_of(mlflow) if r.data.tags.get("kerastuner.trial_id") == "0"]
    assert interrupted.info.status == "RUNNING"

    done = subprocess.run(tune_command(config), cwd=workdir, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_of(mlflow)
    parents = [r for r in runs if "sweep.name" in r.data.tags]
    trials = [r for r in runs if "kerastuner.trial_id" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["kerastuner.trial_id"] for r in trials) == ["0", "1"]
    history = mlflow.get_metric_history(interrupted.info.run_id, "loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)) and max(steps) == epochs  # no epoch ran twice
    resumed = [m.step for m in history if m.timestamp > killed_at]
    assert min(resumed) >= 4  # continued after the backed-up epoch, not from epoch 1


@pytest.mark.slow  # over a minute on 2 busy cores
def test_chief_and_two_workers_complete_a_search_together(workdir, image_folder):
    config = write_config(workdir, sweep_overrides(image_folder, **{
        "tune.max_trials": 6, "tune.epochs": 3}))
    done = subprocess.run(tune_command(config, "--workers", "2"), cwd=workdir,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_of(client(workdir))
    [parent] = [r for r in runs if "sweep.name" in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
              and "kerastuner.trial_id" in r.data.tags]
    assert parent.info.status == "FINISHED" and len(trials) == 6
    assert {r.data.tags["kerastuner.tuner_id"] for r in trials} == {"tuner0", "tuner1"}
    assert client(workdir).get_model_version_by_alias("tiny", "challenger")


def test_promotion_moves_champion_only_when_the_challenger_is_better(workdir, image_folder):
    tracker_client = client(workdir)

    def register(**overrides) -> int:
        config = load_config(None, tiny_overrides(image_folder, **overrides))
        version = train.run(config, log=lambda line: None).model_version
        client(workdir).set_registered_model_alias("tiny", "challenger", str(version))
        return version

    promote_config = load_config(None, tiny_overrides(image_folder, **{
        "tune.gate_examples": 8, "tune.gate_p99_ms": 10_000}))  # a busy, shared test host
    weak = register(**{"model.learning_rate": 1e-6, "train.epochs": 1})
    first = promote.run(promote_config, log=lambda line: None)
    assert first.promoted and first.champion_after == weak  # the first challenger

    strong = register(**{"train.epochs": 8})
    second = promote.run(promote_config, log=lambda line: None)
    assert second.scores[strong]["test_accuracy"] > second.scores[weak]["test_accuracy"]
    assert second.promoted and second.champion_after == strong
    assert int(tracker_client.get_model_version_by_alias("tiny", "champion").version) == strong

    worse = register(**{"model.learning_rate": 1e-6, "train.epochs": 1})
    third = promote.run(promote_config, log=lambda line: None)
    assert not third.promoted and third.champion_after == strong
    assert int(tracker_client.get_model_version_by_alias("tiny", "champion").version) == strong
    assert worse == third.challenger


def test_hyperparameter_values_are_shown_as_people_read_them():
    assert shown(0.1 + 0.2) == "0.3" and shown(0.0035486885) == "0.003549"
    assert shown(32) == "32" and shown("relu") == "relu" and shown(True) == "True"


def test_margin_decides():
    assert promote.decide(0.93, 0.92, 0.0)[0]
    assert not promote.decide(0.925, 0.92, 0.01)[0]
    assert not promote.decide(0.92, 0.92, 0.0)[0]


def _traced_train_steps() -> int:
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(1 for item in gc.get_objects()
               if isinstance(item, FuncGraph) and item.name == "one_step_on_data")


def test_a_finished_trial_leaves_no_traced_graph_behind():
    """What keeps trial memory flat: a trial's traced train step dies with its model."""
    import keras
    import numpy as np

    from models import InputSpec, get_family
    from pipeline.fitting.tracked_tuner import released_custom_gradients

    pixels = np.random.default_rng(0).integers(0, 256, (32, 12, 12, 1), dtype=np.uint8)
    labels = np.arange(32) % 3

    def fit_one_model():
        model = get_family("cnn").build(InputSpec.image(12, 12, 1), 3, **get_family("cnn").TINY)
        model.fit(pixels, labels, batch_size=16, epochs=1, verbose=0)

    keras.backend.clear_session()
    before = _traced_train_steps()
    fit_one_model()
    keras.backend.clear_session()
    leaked = _traced_train_steps()
    assert leaked > before  # TensorFlow's gradient registry keeps the traces alive
    with released_custom_gradients():
        fit_one_model()
    keras.backend.clear_session()
    assert _traced_train_steps() == leaked  # the released trial left nothing behind
