"""MLflow tracking: the only module that imports mlflow.

Runs are driven through an explicit `MlflowClient` bound to one tracking URI (no global
fluent state), so tests point it at a temp dir and the tuner can log trials from threads.
Default store: SQLite under ./mlruns/ with artifacts beside it; $MLFLOW_TRACKING_URI (a
shared server) wins over the default, and a configured URI wins over both.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from pipeline.interrupts import ShieldedCalls

DEFAULT_STORE = Path("mlruns")
PARENT_TAG = "mlflow.parentRunId"
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch request


def resolve_tracking_uri(configured: str | None = None) -> str:
    """Return the tracking URI to use: configured, else $MLFLOW_TRACKING_URI, else mlruns/."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = DEFAULT_STORE.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Keep artifacts of a local SQLite store under its folder (MLflow's default is ./mlartifacts)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


class Run:
    """One MLflow run: log params, metrics, tags and artifacts to it."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_series(self, key: str, values: list[float], first_step: int = 0) -> None:
        """Log `values` as one metric whose step is the position (a curve over t, not time)."""
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, first_step + index)
                 for index, value in enumerate(values)]
        for start in range(0, len(items), 1000):  # MLflow's limit per log_batch
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(key, str(value)[:5000]) for key, value in tags.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + _BATCH])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, file_name: str) -> None:
        self.client.log_text(self.run_id, text, file_name)

    def log_dict(self, value: dict[str, Any], file_name: str) -> None:
        self.client.log_dict(self.run_id, value, file_name)

    def log_figure(self, figure, file_name: str) -> None:
        """Log a matplotlib figure as a PNG artifact, then free it."""
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, file_name)
        plt.close(figure)

    def log_dataset(self, identity: dict[str, Any], sizes: dict[str, int]) -> None:
        """Record the data set as the run's input (MLflow's Datasets panel), per split."""
        digest = str(identity.get("sha256") or identity.get("version") or "unknown")[:36]
        dataset = Dataset(
            name=str(identity.get("name", "data")), digest=digest,
            source_type=str(identity.get("origin", "local")),
            source=json.dumps({k: v for k, v in identity.items() if k != "sha256"}),
            profile=json.dumps(sizes),
        )
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", split)])
                  for split in sizes]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """Return (step, value) of a metric in step order; the last value logged per step wins."""
        by_step = {}
        for metric in sorted(self.client.get_metric_history(self.run_id, key),
                             key=lambda m: m.timestamp):
            by_step[metric.step] = metric.value
        return sorted(by_step.items())

    @property
    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    @property
    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status


class MetricsCallback(keras.callbacks.Callback):
    """Log every epoch's metrics (loss, accuracy, val_*, learning_rate) at step = epoch + 1."""

    def __init__(self, run: Run, prefix: str = ""):
        super().__init__()
        self.run = run
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {f"{self.prefix}{key}": float(value) for key, value in (logs or {}).items()}
        self.run.log_metrics(values, step=epoch + 1)


class Tracker:
    """Open runs in one experiment of one tracking store, and reach its model registry."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        # Every MLflow call finishes before Ctrl-C/SIGTERM is raised (see interrupts).
        self.client = ShieldedCalls(
            MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri))
        self.experiment_id = self._experiment_id(experiment)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_artifact_location(self.tracking_uri)
            )
        except MlflowException:  # created meanwhile by a concurrent process
            return self.client.get_experiment_by_name(name).experiment_id

    def resumable(self, run_id: str | None) -> bool:
        """Return whether `run_id` exists here and did not finish (so it can continue)."""
        if not run_id:
            return False
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        # FINISHED and FAILED runs are closed; a crash leaves RUNNING, Ctrl-C leaves KILLED.
        return (run.info.experiment_id == self.experiment_id
                and run.info.status in ("RUNNING", "KILLED")
                and run.info.lifecycle_stage == "active")

    def open_run(self, run_name: str, *, resume_run_id: str | None = None,
                 parent_run_id: str | None = None, tags: dict[str, Any] | None = None) -> Run:
        """Return a new RUNNING run (nested under `parent_run_id`), or reopen `resume_run_id`."""
        if resume_run_id:
            self.client.update_run(resume_run_id, status="RUNNING")
            return Run(self.client, resume_run_id)
        all_tags = {key: str(value) for key, value in (tags or {}).items()}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        created = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        return Run(self.client, created.info.run_id)

    def close_run(self, run: Run, status: str, error: BaseException | str | None = None) -> None:
        """End a run FINISHED, FAILED or KILLED; a FAILED run keeps the error as a tag."""
        if error is not None:
            message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            run.set_tags({"error": message})
        self.client.set_terminated(run.run_id, status)

    @contextmanager
    def run(self, run_name: str, *, resume_run_id: str | None = None,
            parent_run_id: str | None = None, tags: dict[str, Any] | None = None
            ) -> Iterator[Run]:
        """Yield `open_run(...)`; end it FINISHED, or FAILED on an error, KILLED on Ctrl-C.

        An exception marks the run FAILED with the error as the `error` tag and propagates;
        Ctrl-C marks it KILLED, so that the same command later resumes it.
        """
        run = self.open_run(run_name, resume_run_id=resume_run_id,
                            parent_run_id=parent_run_id, tags=tags)
        try:
            yield run
        except KeyboardInterrupt:
            self.close_run(run, "KILLED")
            raise
        except BaseException as error:
            self.close_run(run, "FAILED", error)
            raise
        else:
            self.close_run(run, "FINISHED")

    def status(self, run_id: str) -> str | None:
        """Return a run's status (RUNNING, FINISHED, FAILED, KILLED), None if unknown."""
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:
            return None

    def latest_running(self, tag: str, value: str) -> str | None:
        """Return the newest RUNNING run whose `tag` is `value`, if any."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'RUNNING'",
            max_results=1, order_by=["attributes.start_time DESC"])
        return found[0].info.run_id if found else None

    def find_child(self, parent_run_id: str, tag: str, value: str) -> str | None:
        """Return the id of the child run of `parent_run_id` whose `tag` is `value`, if any."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{tag}` = '{value}'",
            max_results=1, order_by=["attributes.start_time ASC"])
        return found[0].info.run_id if found else None

    def children(self, parent_run_id: str) -> list[Any]:
        """Return the child runs of `parent_run_id` (MLflow Run objects)."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=10_000)

    # --- model registry -------------------------------------------------------------------

    def latest_version(self, model_name: str) -> int:
        """Return the highest registered version of `model_name`, 0 if none."""
        try:
            versions = self.client.search_model_versions(f"name = '{model_name}'")
        except MlflowException:
            return 0
        return max((int(version.version) for version in versions), default=0)

    def register(self, model_name: str, run: Run, artifact_path: str,
                 tags: dict[str, str] | None = None) -> int:
        """Register `artifact_path` of `run` as a new version of `model_name`; return it."""
        try:
            self.client.create_registered_model(model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            model_name, source=f"{run.artifact_uri}/{artifact_path}", run_id=run.run_id,
            tags=tags,
        )
        return int(version.version)

    def delete_version(self, model_name: str, version: int) -> None:
        self.client.delete_model_version(model_name, str(version))

    def set_alias(self, model_name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(model_name, alias, str(version))

    def tag_version(self, model_name: str, version: int, key: str, value: str) -> None:
        self.client.set_model_version_tag(model_name, str(version), key, value)

    def version_for_alias(self, model_name: str, alias: str) -> int | None:
        """Return the version holding `alias`, or None."""
        try:
            return int(self.client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            return None


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """Yield a temporary folder for files that are logged as artifacts, then removed."""
    with tempfile.TemporaryDirectory(prefix="tfpipe-") as folder:
        yield Path(folder)
