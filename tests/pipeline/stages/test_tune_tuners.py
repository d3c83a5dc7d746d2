"""Sweeps as the Make variables ask for them: TRIALS per tuner, EXECUTIONS, OVERWRITE=1."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.fitting import callbacks as fit_callbacks_module
from pipeline.stages import tune
from pipeline.tracking import MetricsCallback
from tests.pipeline.stages.test_tune import client, runs_of, sweep_overrides

QUICK = {"tune.final": "restore", "train.insights": False}


def trial_runs(workdir, parent_run_id: str) -> list:
    return [r for r in runs_of(client(workdir))
            if r.data.tags.get("mlflow.parentRunId") == parent_run_id
            and "kerastuner.trial_id" in r.data.tags]


# Random search's count is checked by test_tune.py's first test (3 trials).
@pytest.mark.parametrize("tuner, epochs, max_trials, export", [
    ("bayesian", 2, 2, True),
    ("hyperband", 3, 2, True),  # stops inside its first bracket (3 models at 1 epoch)
    ("hyperband", 2, 3, False),  # one model per pass of its brackets: three passes
])
def test_max_trials_is_the_number_of_trials_run(workdir, image_folder, tuner, epochs, max_trials,
                                                export):
    overrides = sweep_overrides(image_folder, **QUICK, **{
        "tune.max_trials": max_trials, "tune.epochs": epochs, "export.enabled": export})
    if tuner == "hyperband":
        del overrides["tune.tuner"]  # the default
    else:
        overrides["tune.tuner"] = tuner
    config = load_config(None, overrides)
    assert config.tune.tuner == tuner
    result = tune.run(config, log=lambda line: None)
    trials = trial_runs(workdir, result.parent_run_id)
    assert len(trials) == max_trials
    assert {r.data.tags["trial_status"] for r in trials} == {"completed"}
    mlflow = client(workdir)
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == max_trials
    if export:
        challenger = mlflow.get_model_version_by_alias("tiny", "challenger")
        assert int(challenger.version) == result.final.model_version


def test_the_objective_is_averaged_over_executions(workdir, image_folder):
    config = load_config(None, sweep_overrides(image_folder, **QUICK, **{
        "tune.max_trials": 1, "tune.executions_per_trial": 2, "export.enabled": False}))
    result = tune.run(config, log=lambda line: None)
    [trial] = trial_runs(workdir, result.parent_run_id)
    mlflow = client(workdir)
    best_epochs = []
    for execution in (0, 1):  # each execution a fit of its own, logged under its prefix
        history = mlflow.get_metric_history(trial.info.run_id, f"execution{execution}/val_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        best_epochs.append(max(m.value for m in history))
    logged = {m.step: m.value for m in
              mlflow.get_metric_history(trial.info.run_id, "execution_objective")}
    assert logged == pytest.approx({0: best_epochs[0], 1: best_epochs[1]})
    assert trial.data.metrics["final_val_accuracy"] == pytest.approx(np.mean(best_epochs))
    assert result.best_score == pytest.approx(np.mean(best_epochs))


class InterruptAtEpochEnd(MetricsCallback):
    """Ctrl-C once the first epoch is logged: an interrupted sweep that would resume."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        raise KeyboardInterrupt


def test_overwrite_starts_afresh_and_keeps_the_old_runs(workdir, image_folder, monkeypatch):
    overrides = sweep_overrides(image_folder, **QUICK, **{
        "tune.max_trials": 1, "export.enabled": False})
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(fit_callbacks_module, "MetricsCallback", InterruptAtEpochEnd)
        tune.run(load_config(None, overrides), log=lambda line: None)
    [old_parent] = [r for r in runs_of(client(workdir)) if "sweep.name" in r.data.tags]
    [old_trial] = trial_runs(workdir, old_parent.info.run_id)
    assert old_parent.info.status == "KILLED" and old_trial.info.status == "KILLED"

    lines: list[str] = []
    result = tune.run(load_config(None, {**overrides, "tune.overwrite": True}), log=lines.append)
    assert result.parent_run_id != old_parent.info.run_id
    assert any("trial 0 started" in line for line in lines)
    assert not any("resumed" in line for line in lines)
    [new_trial] = trial_runs(workdir, result.parent_run_id)
    mlflow = client(workdir)
    steps = sorted(m.step for m in mlflow.get_metric_history(new_trial.info.run_id, "loss"))
    assert steps == [1, 2]  # from the first epoch, not from the old trial's backup
    # The abandoned sweep stays in MLflow as it was: not resumed, not removed.
    assert mlflow.get_run(old_parent.info.run_id).info.status == "KILLED"
    assert mlflow.get_run(old_trial.info.run_id).info.status == "KILLED"
    assert [m.step for m in mlflow.get_metric_history(old_trial.info.run_id, "loss")] == [1]
