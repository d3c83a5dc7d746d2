"""SIGTERM (a kill, a CI timeout, a scheduler) ends a run like Ctrl-C: KILLED, backed up, resumable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import tiny_overrides
from tests.pipeline.stages.test_tune import SPACE, client, runs_of, write_config

EPOCHS = 8


def terminate_after_epoch(command: list[str], cwd: Path, metadata: Path, epoch: int) -> str:
    """Start `command`, SIGTERM it once its backup holds `epoch` epochs; return its stderr."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        try:
            if json.loads(metadata.read_text()).get("epoch", 0) >= epoch:
                break
        except (OSError, ValueError):  # not written yet
            pass
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be terminated"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    return stderr


def backed_up_epoch(metadata: Path) -> int:
    """The epochs the backup holds, after checking that the weights it names are whole."""
    backup = json.loads(metadata.read_text())
    assert (metadata.parent / backup["weights"]).stat().st_size > 1000
    assert not list(metadata.parent.glob("*.partial*"))
    return backup["epoch"]


def assert_resumed_after(mlflow, run_id: str, epoch: int, killed_at: float) -> None:
    """Every epoch logged once, and the rerun's first one right after the backed-up epoch."""
    history = mlflow.get_metric_history(run_id, "loss")
    steps = [metric.step for metric in history]
    assert len(steps) == len(set(steps)) and max(steps) == EPOCHS
    assert min(metric.step for metric in history if metric.timestamp > killed_at) == epoch + 1


def test_sigterm_during_training_resumes_from_the_backed_up_epoch(workdir, image_folder):
    config = write_config(workdir, tiny_overrides(image_folder, **{
        "train.epochs": EPOCHS, "train.insights": False, "export.enabled": False}))
    command = [sys.executable, "-m", "pipeline", "train", "--config", str(config)]
    metadata = workdir / "checkpoints/tiny/backup/training_metadata.json"
    stderr = terminate_after_epoch(command, workdir, metadata, 2)
    killed_at = time.time() * 1000
    assert "marked KILLED" in stderr and "Traceback" not in stderr
    run_id = json.loads((workdir / "checkpoints/tiny/run.json").read_text())["run_id"]
    mlflow = client(workdir)
    assert mlflow.get_run(run_id).info.status == "KILLED"
    epoch = backed_up_epoch(metadata)
    assert epoch >= 2

    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"MLflow run {run_id} (resumed)" in done.stdout
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert_resumed_after(mlflow, run_id, epoch, killed_at)


def test_sigterm_during_tuning_resumes_the_trial_from_its_epoch(workdir, image_folder):
    config = write_config(workdir, tiny_overrides(image_folder, **{
        "tune.tuner": "random", "tune.max_trials": 1, "tune.epochs": EPOCHS,
        "tune.hyperparameters": {**SPACE, "filters": 4}, "tune.final": "restore",
        "train.insights": False, "export.enabled": False}))
    command = [sys.executable, "-m", "pipeline", "tune", "--config", str(config)]
    metadata = workdir / "tuning/tiny/trial_0/backup0/training_metadata.json"
    stderr = terminate_after_epoch(command, workdir, metadata, 2)
    killed_at = time.time() * 1000
    assert "resume the search" in stderr and "Traceback" not in stderr
    mlflow = client(workdir)
    [parent] = [r for r in runs_of(mlflow) if "sweep.name" in r.data.tags]
    [trial] = [r for r in runs_of(mlflow) if "kerastuner.trial_id" in r.data.tags]
    assert parent.info.status == "KILLED" and trial.info.status == "KILLED"
    epoch = backed_up_epoch(metadata)

    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial 0 resumed" in done.stdout
    runs = runs_of(mlflow)
    assert [r.info.run_id for r in runs if "sweep.name" in r.data.tags] == [parent.info.run_id]
    assert mlflow.get_run(parent.info.run_id).info.status == "FINISHED"
    assert mlflow.get_run(trial.info.run_id).info.status == "FINISHED"
    assert_resumed_after(mlflow, trial.info.run_id, epoch, killed_at)
