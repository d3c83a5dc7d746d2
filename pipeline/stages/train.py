"""The training stage: data -> model -> fit -> evaluate -> export, all in one MLflow run.

What follows the fit (evaluate, export, register, describe) is publish.py.

A run killed part-way leaves its MLflow run RUNNING or KILLED and its last epoch in
`checkpoints/<name>/backup`; the same command (same config) then reopens that MLflow run and
continues from that epoch instead of starting again.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras

from models import get_family
from pipeline.config import RunConfig
from pipeline.fitting import multi_worker
from pipeline.fitting.callbacks import fit_callbacks
from pipeline.fitting.hardware import (
    Hardware,
    configured,
    for_accelerators,
    host_description,
    set_jit_compile,
)
from pipeline.stages import publish
from pipeline.stages.data import Datasets, make_datasets
from pipeline.tracking import RESUMABLE_TAG, Run, Tracker
from serving.common import free_port

STATE_FILE = "run.json"


@dataclass(frozen=True)
class RunState:
    """The MLflow run a checkpoint folder belongs to, the config that made it, its parent."""

    run_id: str
    fingerprint: str
    parent_run_id: str | None = None

    @classmethod
    def load(cls, folder: Path) -> RunState | None:
        try:
            return cls(**json.loads((folder / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).write_text(json.dumps(self.__dict__))


def run(config: RunConfig, log=print, callbacks: Sequence[keras.callbacks.Callback] = (),
        parent_run_id: str | None = None, run_name: str | None = None) -> publish.TrainResult:
    """Train, evaluate, export and register one model; return where everything went.

    `callbacks` are extra Keras callbacks, run after the stage's own (backup, checkpoint).
    `parent_run_id` nests the MLflow run under another (a sweep retraining its best model).
    `run_name` names a new MLflow run (default: `<name> · <family> · train`).
    """
    if config.model.family == "charlm":  # a language model: its own measure and signature
        from pipeline.stages import charlm

        return charlm.run(config, log)
    with configured(config.train, config.seed) as hardware:
        if hardware.worker is None or hardware.worker.is_chief:
            return _train(config, hardware, log, callbacks, parent_run_id, run_name)
        # A non-chief worker: the same steps, its writes in a folder that goes with it.
        with tempfile.TemporaryDirectory(prefix=f"tfpipe-worker{hardware.worker.index}-") as folder:
            return _train(multi_worker.worker_paths(config, Path(folder)), hardware, log,
                          callbacks, parent_run_id, run_name,
                          chief_workdir=config.train.checkpoint_dir / config.name)


def run_workers(config: RunConfig, count: int, log=print) -> int:
    """Run this command as `count` workers on loopback (see multi_worker.launch); return
    the exit status. A failed worker marks the chief's MLflow run FAILED, resumable."""
    with tempfile.TemporaryDirectory(prefix="tfpipe-workers-") as folder:
        return multi_worker.launch(
            multi_worker.worker_command(), count, Path(folder), free_port,
            on_failure=lambda reason: mark_failed(config, reason), log=log)


def mark_failed(config: RunConfig, reason: str) -> None:
    """Close the run a (killed) chief left in its checkpoint folder FAILED with `reason`,
    tagged resumable: its backup is intact, so the same command continues it."""
    state = RunState.load(config.train.checkpoint_dir / config.name)
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    if state is None or tracker.status(state.run_id) not in ("RUNNING", "KILLED", "FAILED"):
        return
    run = Run(tracker.client, state.run_id)
    tracker.close_run(run, "FAILED", reason)
    run.set_tags({RESUMABLE_TAG: "true"})


def _train(config: RunConfig, hardware: Hardware, log, callbacks, parent_run_id,
           run_name: str | None, chief_workdir: Path | None = None) -> publish.TrainResult:
    """Run the stage; `chief_workdir` is set on a non-chief worker, whose own paths are
    temporary: it resumes from the chief's backup and ends with its best weights."""
    started = time.perf_counter()
    config = for_accelerators(config, hardware)
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    workdir = config.train.checkpoint_dir / config.name
    resume_id = _resumable_run(config, tracker, workdir, parent_run_id)
    if resume_id is None:
        shutil.rmtree(workdir, ignore_errors=True)
    publish.check_version_free(config, tracker)
    tags = {"model_name": config.name, "model_family": config.model.family,
            "config_fingerprint": config.fingerprint()}
    # Data first: data that cannot be found or read leaves no FAILED run behind.
    data = make_datasets(config.data, config.seed)
    seconds = {"data_seconds": time.perf_counter() - started}
    publish.check_test_time_flip(config, data)
    if hardware.worker:
        data = replace(data, train=multi_worker.shard_by_data(data.train),
                       validation=multi_worker.shard_by_data(data.validation),
                       test=multi_worker.shard_by_data(data.test))
    run_name = run_name or f"{config.name} · {config.model.family} · train"
    with tracker.run(run_name, resume_run_id=resume_id, parent_run_id=parent_run_id,
                     tags=tags) as mlflow_run:
        RunState(mlflow_run.run_id, config.fingerprint(), parent_run_id).save(workdir)
        log(f"MLflow run {mlflow_run.run_id} ({'resumed' if resume_id else 'new'}) "
            f"in {tracker.tracking_uri}")
        if resume_id is None:
            mlflow_run.log_params(config.flat())
        _log_data(mlflow_run, data)
        log(f"data: {data.identity.get('origin')} {data.identity.get('name')} | "
            + ", ".join(f"{name} {size}" for name, size in data.sizes.items())
            + f" | {hardware.describe()}")
        with hardware.strategy.scope():
            model = get_family(config.model.family).build(
                data.input_spec, data.num_classes, **config.model.params)
            if hardware.worker:
                multi_worker.build_for_fit(model, hardware.strategy, data.train)
        _log_hardware(mlflow_run, hardware, set_jit_compile(model, config.train.jit_compile))
        mlflow_run.log_text(_summary(model), "model_summary.txt")
        mlflow_run.log_metrics({"parameters": model.count_params()})
        seconds["fit_seconds"] = _fit(model, data, config, mlflow_run, workdir, log,
                                      callbacks, hardware, chief_workdir)
        mlflow_run.log_metrics(seconds)  # data and fit so far; the run note reads fit_seconds
        publish_started = time.perf_counter()
        result = publish.run(model, data, config, tracker, mlflow_run, log)
        seconds["publish_seconds"] = time.perf_counter() - publish_started
        seconds["total_seconds"] = time.perf_counter() - started
        mlflow_run.log_metrics({name: seconds[name] for name in ("publish_seconds",
                                                                 "total_seconds")})
    shutil.rmtree(workdir, ignore_errors=True)
    return replace(result, resumed=resume_id is not None, seconds=seconds)


def _resumable_run(config: RunConfig, tracker: Tracker, workdir: Path,
                   parent_run_id: str | None = None) -> str | None:
    """The run a killed training left in `workdir`, if this one continues it.

    It must come from the same config and belong to the same parent: a new sweep's
    retraining never continues an abandoned sweep's.
    """
    state = RunState.load(workdir)
    if not (config.train.resume and state and state.fingerprint == config.fingerprint()
            and state.parent_run_id == parent_run_id):
        return None
    return state.run_id if tracker.resumable(state.run_id) else None


def _log_data(mlflow_run: Run, data: Datasets) -> None:
    mlflow_run.log_params({f"dataset.{key}": value for key, value in data.identity.items()})
    mlflow_run.log_params({f"dataset.{name}_examples": size for name, size in data.sizes.items()})
    mlflow_run.log_dict({**data.identity, "sizes": data.sizes,
                         "class_names": list(data.class_names)}, "data/identity.json")
    if data.manifest:
        mlflow_run.log_text("\n".join(data.manifest) + "\n", "data/manifest.tsv")
    mlflow_run.log_dataset(data.identity, data.sizes)


def _log_hardware(mlflow_run: Run, hardware: Hardware, jit_compile: bool) -> None:
    """Tag the run with what its speed depends on: CPU, vector units, precision, XLA."""
    host = host_description()
    mlflow_run.set_tags({
        "hardware.cpu": host["cpu_model"], "hardware.cores": host["cores"],
        "hardware.instruction_sets": host["instruction_sets"],
        "hardware.devices": ", ".join(hardware.devices),
        "hardware.precision": f"mixed_{hardware.precision}" if hardware.precision else "float32",
        "hardware.precision_reason": hardware.precision_reason,
        "hardware.jit_compile": jit_compile, "hardware.onednn": host["onednn"]})


def _summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def make_callbacks(model: keras.Model, data: Datasets, config: RunConfig, mlflow_run: Run,
                   workdir: Path, chief_workdir: Path | None = None
                   ) -> list[keras.callbacks.Callback]:
    """Return the stage's callbacks (see `fit_callbacks`), backing up under `workdir`.

    A non-chief worker (`chief_workdir` set) resumes from the chief's backup and keeps no
    best-epoch checkpoint of its own: it loads the chief's after the fit.
    """
    sample = (data.examples("train", config.train.gradient_monitor_examples)
              if config.train.gradient_monitor else None)
    return fit_callbacks(
        config.train, mlflow_run=mlflow_run, backup_dir=workdir / "backup",
        base_learning_rate=float(model.optimizer.learning_rate.numpy()),
        examples_per_epoch=data.sizes["train"],
        best_weights=None if chief_workdir else workdir / "best.weights.h5",
        restore_dir=chief_workdir / "backup" if chief_workdir else None,
        monitor_sample=sample)


def _fit(model: keras.Model, data: Datasets, config: RunConfig, mlflow_run: Run,
         workdir: Path, log, extra: Sequence[keras.callbacks.Callback],
         hardware: Hardware, chief_workdir: Path | None) -> float:
    """Fit, then load the best epoch's weights; return the fit's wall time in seconds."""
    callbacks = make_callbacks(model, data, config, mlflow_run, workdir, chief_workdir) + list(extra)
    if hardware.worker:  # the chief has decided whether to resume (and cleared its folder if not)
        multi_worker.barrier(hardware.strategy)
    started = time.perf_counter()
    model.fit(data.train, validation_data=data.validation, epochs=config.train.epochs,
              callbacks=callbacks, shuffle=False,  # tf.data shuffles, seeded
              verbose=1 if _interactive() else 2)
    fit_seconds = time.perf_counter() - started
    if hardware.worker:  # the chief's best-epoch weights are written
        multi_worker.barrier(hardware.strategy)
    best_weights = (chief_workdir or workdir) / "best.weights.h5"
    if best_weights.exists():
        model.load_weights(str(best_weights))
        log(f"restored the best epoch's weights ({config.train.monitor})")
    return fit_seconds


def _interactive() -> bool:
    return sys.stdout.isatty()


def describe(result: publish.TrainResult) -> dict[str, Any]:
    """Return the result as plain values, for printing and JSON."""
    summary = {"run_id": result.run_id, "tracking_uri": result.tracking_uri,
               "experiment": result.experiment, "resumed": result.resumed,
               "export_path": str(result.export_path) if result.export_path else None,
               "model_version": result.model_version, **result.metrics}
    # Where this command's time went (the import of TensorFlow aside), as logged in MLflow.
    summary.update({name: round(value, 1) for name, value in result.seconds.items()})
    return summary
