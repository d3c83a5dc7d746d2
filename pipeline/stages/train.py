"""The training stage: data -> model -> fit -> evaluate -> export, all in one MLflow run.

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
import numpy as np

from models import get_family
from pipeline.config import RunConfig
from pipeline.fitting import multi_worker
from pipeline.fitting.callbacks import fit_callbacks
from pipeline.fitting.hardware import (
    Hardware,
    configured,
    for_accelerators,
    host_description,
    serving_copy,
    set_jit_compile,
)
from pipeline.reports.insights import log_insights
from pipeline.reports.run_notes import Lineage, host_line, run_note, version_note
from pipeline.stages import baseline, evaluate
from pipeline.stages.data import Datasets, make_datasets
from pipeline.tracking import PARENT_TAG, RESUMABLE_TAG, Run, Tracker
from serving import export
from serving.common import cpu_description, free_port

STATE_FILE = "run.json"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    tracking_uri: str
    experiment: str
    metrics: dict[str, float]
    export_path: Path | None
    model_version: int | None
    resumed: bool


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
        parent_run_id: str | None = None, run_name: str | None = None) -> TrainResult:
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
           run_name: str | None, chief_workdir: Path | None = None) -> TrainResult:
    """Run the stage; `chief_workdir` is set on a non-chief worker, whose own paths are
    temporary: it resumes from the chief's backup and ends with its best weights."""
    config = for_accelerators(config, hardware)
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    workdir = config.train.checkpoint_dir / config.name
    resume_id = _resumable_run(config, tracker, workdir, parent_run_id)
    if resume_id is None:
        shutil.rmtree(workdir, ignore_errors=True)
    check_version_free(config, tracker)
    tags = {"model_name": config.name, "model_family": config.model.family,
            "config_fingerprint": config.fingerprint()}
    # Data first: data that cannot be found or read leaves no FAILED run behind.
    data = make_datasets(config.data, config.seed)
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
        _fit(model, data, config, mlflow_run, workdir, log, callbacks, hardware, chief_workdir)
        result = finish(model, data, config, tracker, mlflow_run, log)
    shutil.rmtree(workdir, ignore_errors=True)
    return replace(result, resumed=resume_id is not None)


def finish(model: keras.Model, data: Datasets, config: RunConfig, tracker: Tracker,
           mlflow_run: Run, log=print) -> TrainResult:
    """Evaluate a trained model, log insights, export and register it; return the result.

    Everything after training uses the float32 serving copy, so the test metrics in MLflow
    and the registry are those of the SavedModel that gets served.
    """
    serving_model = _serving_model(model, data, config, mlflow_run)
    metrics = evaluate.run(serving_model, data, mlflow_run)
    if config.train.baseline != "none":
        metrics.update(baseline.run(data, mlflow_run))
    if config.train.insights:
        _log_insights(serving_model, data, mlflow_run, log)
    export_path, version, model_id = _export(serving_model, data, config, tracker, mlflow_run,
                                             metrics, log)
    _describe(config, data, tracker, mlflow_run, metrics, export_path, version, model_id)
    return TrainResult(run_id=mlflow_run.run_id, tracking_uri=tracker.tracking_uri,
                       experiment=config.tracking.experiment, metrics=metrics,
                       export_path=export_path, model_version=version, resumed=False)


def _log_insights(model: keras.Model, data: Datasets, mlflow_run: Run, log) -> None:
    """Log the insight figures; a failure is a warning and a run tag, never a lost model."""
    try:
        log_insights(model, data, mlflow_run)
    except Exception as error:  # diagnostics must not throw away a finished training
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        mlflow_run.set_tags({"insights_error": reason})
        log(f"warning: insights not logged ({reason})")


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


def check_version_free(config: RunConfig, tracker: Tracker) -> None:
    """Fail before training if the version this run will export to is already on disk."""
    if not (config.export.enabled and config.tracking.register_model):
        return
    version = tracker.latest_version(config.name) + 1
    target = config.export.base_dir / config.name / str(version)
    if target.exists():
        raise export.ExportError(
            f"{target} exists but the MLflow registry at {tracker.tracking_uri} would number "
            f"this export {version}; move {target} away or point MLFLOW_TRACKING_URI at the "
            "store that registered it")


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
         hardware: Hardware, chief_workdir: Path | None) -> None:
    callbacks = make_callbacks(model, data, config, mlflow_run, workdir, chief_workdir) + list(extra)
    if hardware.worker:  # the chief has decided whether to resume (and cleared its folder if not)
        multi_worker.barrier(hardware.strategy)
    started = time.perf_counter()
    model.fit(data.train, validation_data=data.validation, epochs=config.train.epochs,
              callbacks=callbacks, shuffle=False,  # tf.data shuffles, seeded
              verbose=1 if _interactive() else 2)
    mlflow_run.log_metrics({"fit_seconds": time.perf_counter() - started})
    if hardware.worker:  # the chief's best-epoch weights are written
        multi_worker.barrier(hardware.strategy)
    best_weights = (chief_workdir or workdir) / "best.weights.h5"
    if best_weights.exists():
        model.load_weights(str(best_weights))
        log(f"restored the best epoch's weights ({config.train.monitor})")


def _interactive() -> bool:
    return sys.stdout.isatty()


def _serving_model(model: keras.Model, data: Datasets, config: RunConfig,
                   mlflow_run: Run) -> keras.Model:
    """Return the float32 model to evaluate and export (`model` itself unless mixed)."""
    serving_model = serving_copy(model, lambda: get_family(config.model.family).build(
        data.input_spec, data.num_classes, **config.model.params))
    if serving_model is not model:  # trained in mixed precision: how far float32 moves it
        sample_inputs, _ = data.examples("test", config.export.parity_examples)
        difference = np.max(np.abs(np.asarray(model(sample_inputs, training=False), np.float32)
                                   - np.asarray(serving_model(sample_inputs, training=False))))
        mlflow_run.log_metrics({"export_float32_max_abs_diff": float(difference)})
    return serving_model


def _export(model: keras.Model, data: Datasets, config: RunConfig, tracker: Tracker,
            mlflow_run: Run, metrics: dict[str, float], log
            ) -> tuple[Path | None, int | None, str | None]:
    """Stage, verify, log, register and publish the SavedModel; return (folder, version,
    MLflow logged model id)."""
    if not config.export.enabled:
        return None, None, None
    count = max(config.export.parity_examples, *config.export.warmup_batch_sizes)
    sample_inputs, _ = data.examples("test", count)
    staged = export.stage(
        model, model_dir=config.export.base_dir / config.name, model_name=config.name,
        input_spec=data.input_spec, class_names=data.class_names, sample_inputs=sample_inputs,
        warmup_batch_sizes=config.export.warmup_batch_sizes,
        parity_tolerance=config.export.parity_tolerance)
    registered: int | None = None
    model_id: str | None = None
    try:
        mlflow_run.log_metrics({"export_parity_max_abs_diff": staged.parity_max_abs_diff})
        mlflow_run.log_artifact(staged.path, "saved_model")
        model_id = tracker.log_model(
            mlflow_run, staged.path, config.name, metrics=metrics, model_type=config.model.family,
            params={"config_fingerprint": config.fingerprint(), **config.model.params})
        if config.tracking.register_model:
            registered = tracker.register(config.name, mlflow_run, "saved_model",
                                          model_id=model_id)
            version = registered
        else:
            version = max(export.version_dirs(staged.model_dir), default=0) + 1
        lineage = export.write_lineage(staged, model_name=config.name, version=version,
                                       run_id=mlflow_run.run_id,
                                       registered=registered is not None)
        mlflow_run.log_artifact(lineage, "saved_model/assets.extra")
        path = export.publish(staged, version)
    except BaseException:
        export.discard(staged)
        if registered is not None:
            tracker.delete_version(config.name, registered)
        if model_id is not None:
            tracker.delete_model(model_id)
        raise
    mlflow_run.set_tags({"export_path": str(path.resolve()), "model_version": version})
    tracker.set_model_tags(model_id, {"export_path": str(path.resolve()),
                                      "model_version": version})
    if registered is not None:  # the registry links the version to the folder that is served
        tracker.tag_version(config.name, registered, "export_path", str(path.resolve()))
    log(f"exported {path} (parity max |diff| {staged.parity_max_abs_diff:.2g})")
    return path, version, model_id


def _describe(config: RunConfig, data: Datasets, tracker: Tracker, mlflow_run: Run,
              metrics: dict[str, float], export_path: Path | None, version: int | None,
              model_id: str | None) -> None:
    """Write the run's Description and its registered version's, for review in the UI."""
    recorded = mlflow_run.fetch()
    identity = data.identity
    cpu = cpu_description()
    lineage = Lineage(
        model_name=config.name, family=config.model.family,
        experiment_id=tracker.experiment_id, run_id=mlflow_run.run_id,
        run_name=recorded.info.run_name, config_fingerprint=config.fingerprint(),
        data=" ".join(str(part) for part in (
            identity.get("origin"), identity.get("name"),
            identity.get("version") or str(identity.get("sha256", ""))[:12]) if part),
        host=host_line(str(cpu["cpu_model"]), cpu["cores"]), export_path=export_path,
        version=version if config.tracking.register_model else None, model_id=model_id,
        parent_run_id=recorded.data.tags.get(PARENT_TAG))
    mlflow_run.set_description(run_note(lineage, metrics, recorded.data.metrics.get("fit_seconds")))
    if lineage.version is not None:
        tracker.describe_version(config.name, lineage.version, version_note(lineage, metrics))


def describe(result: TrainResult) -> dict[str, Any]:
    """Return the result as plain values, for printing and JSON."""
    return {"run_id": result.run_id, "tracking_uri": result.tracking_uri,
            "experiment": result.experiment, "resumed": result.resumed,
            "export_path": str(result.export_path) if result.export_path else None,
            "model_version": result.model_version, **result.metrics}
