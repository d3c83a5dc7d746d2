"""The tuning stage: a KerasTuner search tracked in MLflow, then its best model as challenger.

MLflow tree: one parent run per sweep (config, search space, best values, trial table and
plots), one nested run per trial (see pipeline/fitting/tracked_tuner.py), and one nested run
for the best model, retrained (or restored from its best checkpoint), evaluated, exported
and registered with the alias `challenger` (pipeline/stages/tune_results.py).

Resume: the KerasTuner project (`tuning/<name>/`) holds the search; `mlflow.json` beside it
holds the parent run. Running the same command again reloads both: finished trials stay
finished, the interrupted one resumes from its last epoch. `tune.overwrite` starts afresh.

Distributed: KerasTuner's chief/worker mode. With `tune.workers` > 1 this process starts a
chief and that many workers on loopback and waits; any process started with
KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set takes that role
(on other machines too), and workers log their trials under the parent run named by
TFPIPE_PARENT_RUN_ID (or found in the project folder or, failing that, in MLflow).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt

from models import get_family
from pipeline.config import ConfigError, RunConfig, dump_config
from pipeline.fitting.callbacks import monitor_mode
from pipeline.fitting.hardware import configured
from pipeline.fitting.hypermodel import FamilyHyperModel, declare_overrides
from pipeline.fitting.tracked_tuner import make_tuner
from pipeline.stages import publish
from pipeline.stages.data import make_datasets
from pipeline.stages.tune_results import TuneResult, conclude
from pipeline.tracking import Run, Tracker
from serving.common import free_port

PARENT_ENV = "TFPIPE_PARENT_RUN_ID"
SWEEP_TAG = "sweep.name"
STATE_FILE = "mlflow.json"
DEFAULT_MAX_TRIALS = 10  # random and bayesian, when tune.max_trials is unset


class SweepFinished(Exception):
    """The project's sweep already finished: nothing to resume."""

    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id


def _role() -> str | None:
    """Return None (a standalone search), "chief", or this worker's tuner id."""
    return os.environ.get("KERASTUNER_TUNER_ID") if os.environ.get("KERASTUNER_ORACLE_IP") else None


def sweep_fingerprint(config: RunConfig) -> str:
    """Return a digest of what defines the search (not how many workers run it)."""
    tune = config.tune.model_dump(mode="json", exclude={"workers", "overwrite"})
    digest = hashlib.sha256(json.dumps(tune, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.fingerprint()}-{digest}"


def _project(config: RunConfig) -> Path:
    return config.tune.directory / config.name


def _parent_run(config: RunConfig, tracker: Tracker, role: str | None) -> tuple[Run, bool]:
    """Return the sweep's parent run and whether it is a new one (see the module docstring)."""
    project = _project(config)
    state_path = project / STATE_FILE
    fingerprint = sweep_fingerprint(config)
    run_id = os.environ.get(PARENT_ENV)
    if not run_id and state_path.exists():
        state = json.loads(state_path.read_text())
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"{project} holds a sweep of another config; set "
                              "tune.overwrite (OVERWRITE=1) to start a new one there")
        run_id = state["parent_run_id"]
    if not run_id and role not in (None, "chief"):
        run_id = tracker.latest_running(SWEEP_TAG, config.name)
        if not run_id:
            raise ConfigError(f"worker {role}: no running sweep {config.name!r}; start the "
                              f"chief first or set {PARENT_ENV}")
    if run_id:
        if role is None and tracker.status(run_id) == "FINISHED":
            raise SweepFinished(run_id)
        return tracker.open_run(config.name, resume_run_id=run_id), False
    run = tracker.open_run(f"{config.name} · {config.model.family} · sweep ({config.tune.tuner})",
                           tags={SWEEP_TAG: config.name,
                                 "sweep.tuner": config.tune.tuner})
    project.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"parent_run_id": run.run_id, "fingerprint": fingerprint}))
    return run, True


def _objective(config: RunConfig) -> kt.Objective:
    return kt.Objective(config.tune.objective, monitor_mode(config.tune.objective))


def _tuner(config: RunConfig, hypermodel: FamilyHyperModel, tracker: Tracker, parent: Run,
           examples_per_epoch: int, log):
    tune = config.tune
    common = dict(
        hypermodel=hypermodel, objective=_objective(config), seed=config.seed,
        hyperparameters=declare_overrides(tune.hyperparameters), tune_new_entries=True,
        allow_new_entries=True, executions_per_trial=tune.executions_per_trial,
        max_consecutive_failed_trials=tune.max_consecutive_failed_trials,
        directory=str(tune.directory), project_name=config.name, overwrite=False,
        tracker=tracker, parent_run_id=parent.run_id, log=log,
        fit_config=config.train.model_copy(update={
            "monitor": tune.objective, "early_stopping_patience": None}),
        examples_per_epoch=examples_per_epoch)
    if tune.tuner == "hyperband":
        # Without a trial budget Hyperband sizes itself (its brackets, once); with one, it
        # runs further iterations of its brackets until the budget is spent.
        iterations = tune.hyperband_iterations or (None if tune.max_trials else 1)
        return make_tuner("hyperband", max_trials=tune.max_trials, max_epochs=tune.epochs,
                          factor=tune.hyperband_factor, hyperband_iterations=iterations,
                          **common)
    return make_tuner(tune.tuner, max_trials=tune.max_trials or DEFAULT_MAX_TRIALS, **common)


def run(config: RunConfig, log=print) -> TuneResult | None:
    """Search, report, and (unless this process is a worker) publish the best model."""
    role = _role()
    if config.tune.workers > 1 and role is None:
        return launch_local_cluster(config, log)
    if config.tune.overwrite and role is None:
        shutil.rmtree(_project(config), ignore_errors=True)
    with configured(config.train, config.seed):
        return _search(config, role, log)


def _search(config: RunConfig, role: str | None, log) -> TuneResult | None:
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    trial_data = make_datasets(
        config.data.model_copy(update={"max_examples": config.tune.trial_train_examples
                                       or config.data.max_examples}), config.seed)
    publish.check_test_time_flip(config, trial_data)  # before the search, not after it
    hypermodel = FamilyHyperModel(get_family(config.model.family), trial_data.input_spec,
                                  trial_data.num_classes, config.model.params,
                                  config.tune.hyperparameters)
    try:
        parent, is_new = _parent_run(config, tracker, role)
    except SweepFinished as finished:
        log(f"sweep {config.name} already finished in MLflow run {finished.run_id}; "
            "set tune.overwrite (OVERWRITE=1) to search again")
        return None
    worker = role not in (None, "chief")
    log(f"sweep {config.name}: MLflow parent run {parent.run_id} "
        f"({'new' if is_new else 'resumed'}) in {tracker.tracking_uri}"
        + (f" [{role}]" if role else ""))
    try:
        tuner = _tuner(config, hypermodel, tracker, parent, trial_data.sizes["train"], log)
        if is_new:
            parent.log_params(config.flat())
        if not worker:
            parent.log_dict(tuner.oracle.get_space().get_config(), "sweep/search_space.json")
        tuner.search(trial_data.train, validation_data=trial_data.validation,
                     epochs=config.tune.epochs, shuffle=False, verbose=0)
        if worker:
            return None
        return conclude(config, tuner, tracker, parent, _project(config), log)
    except KeyboardInterrupt:
        if "tuner" in locals():
            tuner.mark_interrupted()
        if not worker:
            tracker.close_run(parent, "KILLED")
        raise
    except BaseException as error:
        if not worker:
            tracker.close_run(parent, "FAILED", error)
        raise


def launch_local_cluster(config: RunConfig, log=print) -> None:
    """Run a chief and `tune.workers` workers on this machine; return when all have ended."""
    project = _project(config)
    if config.tune.overwrite:
        shutil.rmtree(project, ignore_errors=True)
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    parent, is_new = _parent_run(config, tracker, None)
    if is_new:
        parent.log_params(config.flat())
    workers = config.tune.workers
    single = config.model_copy(update={"tune": config.tune.model_copy(
        update={"workers": 1, "overwrite": False})})
    config_file = project / "cluster_config.yaml"
    config_file.write_text(dump_config(single))
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(free_port()), PARENT_ENV: parent.run_id,
           "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1",
           "MLFLOW_TRACKING_URI": tracker.tracking_uri}
    command = [sys.executable, "-m", "pipeline", "tune", "--config", str(config_file)]
    log(f"starting a chief and {workers} workers on 127.0.0.1:{env['KERASTUNER_ORACLE_PORT']}")
    processes = {role: subprocess.Popen(command, env={**env, "KERASTUNER_TUNER_ID": role})
                 for role in ["chief", *(f"tuner{i}" for i in range(workers))]}
    try:
        _wait_all(processes)
    except KeyboardInterrupt:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait()
        raise


def _wait_all(processes: dict[str, subprocess.Popen]) -> None:
    """Wait for every process; if one fails, stop the others and raise."""
    while any(process.poll() is None for process in processes.values()):
        failed = [role for role, process in processes.items()
                  if process.poll() not in (None, 0)]
        if failed:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            raise RuntimeError(f"tuning process {failed[0]} exited with "
                               f"{processes[failed[0]].returncode}; the others were stopped")
        time.sleep(0.5)
    failed = [role for role, process in processes.items() if process.returncode != 0]
    if failed:
        raise RuntimeError(f"tuning process {failed[0]} exited with "
                           f"{processes[failed[0]].returncode}")
