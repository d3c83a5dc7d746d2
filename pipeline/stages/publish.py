"""After training: evaluate the float32 serving copy, then export, register and describe it.

Training (train.py), the character LM (charlm.py) and a sweep's best model (tune_results.py)
all end here. The SavedModel is staged, checked for parity, logged and registered, then
renamed into saved_models/<name>/<version>/; a failure on the way removes the staged
folder, the registered version and the logged model, so nothing is left half-published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from models import get_family
from models.test_time import flip_averaged
from pipeline.config import ConfigError, RunConfig
from pipeline.fitting.hardware import serving_copy
from pipeline.reports.insights import log_insights
from pipeline.reports.run_notes import (
    CLASSIFIER,
    Lineage,
    NoteKind,
    host_line,
    run_note,
    version_note,
)
from pipeline.stages import baseline, evaluate
from pipeline.stages.data import Datasets
from pipeline.tracking import PARENT_TAG, Run, Tracker
from serving import export
from serving.common import cpu_description


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    tracking_uri: str
    experiment: str
    metrics: dict[str, float]
    export_path: Path | None
    model_version: int | None
    resumed: bool
    # Wall time per part, named as logged in MLflow: data_seconds, fit_seconds,
    # publish_seconds (evaluation and export), total_seconds.
    seconds: dict[str, float] = field(default_factory=dict)


def run(model: keras.Model, data: Datasets, config: RunConfig, tracker: Tracker,
           mlflow_run: Run, log=print) -> TrainResult:
    """Evaluate a trained model, log insights, export and register it; return the result.

    Everything after training uses the float32 serving copy (with `export.test_time_flip`,
    wrapped to average each image's answer with its mirror's), so the test metrics in MLflow
    and the registry are those of the SavedModel that gets served.
    """
    serving_model = _serving_model(model, data, config, mlflow_run)
    served = flip_averaged(serving_model) if config.export.test_time_flip else serving_model
    metrics = evaluate.run(served, data, mlflow_run)
    if config.train.baseline != "none":
        metrics.update(baseline.run(data, mlflow_run))
    if config.train.insights:  # the network itself: its layers, features and gradients
        _log_insights(serving_model, data, mlflow_run, log)
    export_path, version, model_id = _export(served, data, config, tracker, mlflow_run,
                                             metrics, log)
    describe(config, data.identity, tracker, mlflow_run, metrics, export_path, version,
             model_id)
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


def check_test_time_flip(config: RunConfig, data: Datasets) -> None:
    """Fail before training if `export.test_time_flip` is set for inputs that are not images."""
    if config.export.test_time_flip and data.input_spec.kind != "image":
        raise ConfigError(f"export.test_time_flip mirrors images; {config.name}'s inputs are "
                          f"{data.input_spec.kind}: set it to false")


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
    """Stage and verify the SavedModel, then publish it (see `publish_staged`)."""
    if not config.export.enabled:
        return None, None, None
    count = max(config.export.parity_examples, *config.export.warmup_batch_sizes)
    sample_inputs, _ = data.examples("test", count)
    staged = export.stage(
        model, model_dir=config.export.base_dir / config.name, model_name=config.name,
        input_spec=data.input_spec, class_names=data.class_names, sample_inputs=sample_inputs,
        warmup_batch_sizes=config.export.warmup_batch_sizes,
        parity_tolerance=config.export.parity_tolerance)
    return publish_staged(staged, config, tracker, mlflow_run, metrics, log,
                          parity=staged.parity_max_abs_diff)


def publish_staged(staged: export.StagedExport, config: RunConfig, tracker: Tracker,
                   mlflow_run: Run, metrics: dict[str, float], log,
                   parity: float | None = None) -> tuple[Path, int, str]:
    """Log a staged SavedModel (artifact and MLflow logged model), register it, write its
    lineage and rename it into saved_models/<name>/<version>; return (folder, version,
    logged model id). A failure on the way undoes every step and re-raises."""
    registered: int | None = None
    model_id: str | None = None
    try:
        if parity is not None:
            mlflow_run.log_metrics({"export_parity_max_abs_diff": parity})
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
    log(f"exported {path}" + (f" (parity max |diff| {parity:.2g})" if parity is not None else ""))
    return path, version, model_id


def describe(config: RunConfig, identity: dict, tracker: Tracker, mlflow_run: Run,
             metrics: dict[str, float], export_path: Path | None, version: int | None,
             model_id: str | None, kind: NoteKind = CLASSIFIER) -> None:
    """Write the run's Description and its registered version's, for review in the UI.

    `identity` is the data set's (origin, name, version or checksum); `kind` picks the
    headline metrics (a classifier's accuracy, a language model's bits per character).
    """
    recorded = mlflow_run.fetch()
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
    mlflow_run.set_description(
        run_note(lineage, metrics, recorded.data.metrics.get("fit_seconds"), kind))
    if lineage.version is not None:
        tracker.describe_version(config.name, lineage.version,
                                 version_note(lineage, metrics, kind))
