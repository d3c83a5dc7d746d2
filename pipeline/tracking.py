"""MLflow tracking: the only module that imports mlflow.

Runs are driven through an explicit `MlflowClient` bound to one tracking URI (no global
fluent state), so tests point it at a temp dir and the tuner can log trials from threads.
Default store: SQLite under ./mlruns/ with artifacts beside it; $MLFLOW_TRACKING_URI (a
shared server) wins over the default, and a configured URI wins over both.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    Metric,
    Param,
    RunTag,
)
from mlflow.exceptions import MlflowException

from pipeline.interrupts import ShieldedCalls

DEFAULT_STORE = Path("mlruns")
PARENT_TAG = "mlflow.parentRunId"
RESUMABLE_TAG = "resumable"  # on a FAILED run that the same command may continue
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch request
# Opens the experiment in the UI's model-training view (runs, charts, models), not GenAI's.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# The same view for a browser that last showed GenAI (the UI remembers the last one chosen).
UI_VIEW = "?workflowType=machine_learning"
NOTE_TAG = "mlflow.note.content"  # the run's (and the experiment's) Description in the UI


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

    def set_description(self, markdown: str) -> None:
        """Set the run's Description (Markdown), shown on its page in the MLflow UI."""
        self.set_tags({NOTE_TAG: markdown})

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """Return (step, value) of a metric in step order; the last value logged per step wins."""
        by_step = {}
        for metric in sorted(self.client.get_metric_history(self.run_id, key),
                             key=lambda m: m.timestamp):
            by_step[metric.step] = metric.value
        return sorted(by_step.items())

    def fetch(self):
        """Return the run as MLflow stores it now (info, data.tags, data.metrics)."""
        return self.client.get_run(self.run_id)

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
            if EXPERIMENT_KIND[0] not in found.tags:  # made before the tag, or by hand
                self.client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_artifact_location(self.tracking_uri),
                tags=dict([EXPERIMENT_KIND]))
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
        # FINISHED and FAILED runs are closed; a crash leaves RUNNING, Ctrl-C leaves KILLED,
        # a lost worker FAILED and tagged resumable (its backup is intact).
        open_ = run.info.status in ("RUNNING", "KILLED") or (
            run.info.status == "FAILED" and run.data.tags.get(RESUMABLE_TAG) == "true")
        return (run.info.experiment_id == self.experiment_id and open_
                and run.info.lifecycle_stage == "active")

    def open_run(self, run_name: str, *, resume_run_id: str | None = None,
                 parent_run_id: str | None = None, tags: dict[str, Any] | None = None) -> Run:
        """Return a new RUNNING run (nested under `parent_run_id`), or reopen `resume_run_id`."""
        if resume_run_id:
            self.client.update_run(resume_run_id, status="RUNNING")
            self.client.set_tag(resume_run_id, RESUMABLE_TAG, "false")
            return Run(self.client, resume_run_id)
        all_tags = {**source_tags(), **{key: str(value) for key, value in (tags or {}).items()}}
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
                 tags: dict[str, str] | None = None, model_id: str | None = None) -> int:
        """Register `artifact_path` of `run` as a new version of `model_name`; return it.

        `model_id` links the version to its MLflow logged model (see `log_model`).
        """
        try:
            self.client.create_registered_model(model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # MLflow 3's link: the version's source is the logged model, and the logged model's
        # `mlflow.modelVersions` tag lists the versions made from it (as mlflow.register_model).
        source = f"models:/{model_id}" if model_id else f"{run.artifact_uri}/{artifact_path}"
        with _default_tracking_uri(self.tracking_uri):
            version = self.client.create_model_version(
                model_name, source=source, run_id=run.run_id, tags=tags, model_id=model_id)
        if model_id:
            self.client.set_logged_model_tags(model_id, {"mlflow.modelVersions": json.dumps(
                [{"name": model_name, "version": str(version.version)}])})
        return int(version.version)

    def log_model(self, run: Run, folder: Path, name: str, *, metrics: dict[str, float],
                  params: dict[str, Any], model_type: str) -> str:
        """Log `folder` (a SavedModel) as an MLflow logged model of `run`; return its id.

        The UI lists it under the run's and the experiment's logged models, with `metrics`
        on its model-metrics tab.
        """
        model = self.client.create_logged_model(
            self.experiment_id, name=name, source_run_id=run.run_id, model_type=model_type,
            params={key: str(value)[:6000] for key, value in params.items()})
        try:
            self.client.log_model_artifacts(model.model_id, str(folder))
            now = int(time.time() * 1000)
            self.client.log_batch(run.run_id, metrics=[
                Metric(key, float(value), now, 0, model_id=model.model_id)
                for key, value in metrics.items()])
            self.client.log_outputs(run.run_id, [LoggedModelOutput(model.model_id, 0)])
        except BaseException:
            self.client.finalize_logged_model(model.model_id, "FAILED")
            raise
        self.client.finalize_logged_model(model.model_id, "READY")
        return model.model_id

    def describe_version(self, model_name: str, version: int, markdown: str) -> None:
        """Set a registered version's description (Markdown), shown on its registry page."""
        self.client.update_model_version(model_name, str(version), description=markdown)

    def set_model_tags(self, model_id: str, tags: dict[str, Any]) -> None:
        self.client.set_logged_model_tags(model_id, {k: str(v) for k, v in tags.items()})

    def delete_model(self, model_id: str) -> None:
        self.client.delete_logged_model(model_id)

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

    def registered_model_names(self) -> list[str]:
        """Return the names of every registered model, sorted."""
        return sorted(model.name for model in self.client.search_registered_models(max_results=1000))

    def served_versions(self, model_name: str) -> dict[int, list[str]]:
        """Return {version: its aliases} for the versions carrying an alias; without any
        alias, {latest version: []} (nothing when the model has no version)."""
        try:
            aliases = self.client.get_registered_model(model_name).aliases or {}
        except MlflowException:  # no such model
            return {}
        versions: dict[int, list[str]] = {}
        for alias, version in sorted(aliases.items()):
            versions.setdefault(int(version), []).append(alias)
        latest = self.latest_version(model_name)
        return versions or ({latest: []} if latest else {})

    def download_version(self, model_name: str, version: int, destination: Path) -> Path:
        """Download a registered version's files into `destination`; return that folder."""
        source = self.client.get_model_version(model_name, str(version)).source
        return Path(download_artifacts(artifact_uri=source, dst_path=str(destination),
                                       tracking_uri=self.tracking_uri))

    # --- the registry as plain data, for serving (serving/ never sees MLflow objects) ------

    def registered_models(self) -> list[dict[str, Any]]:
        """Return [{"name", "aliases": {alias: version}, "tags": {...}}] for every model."""
        found = self.client.search_registered_models(max_results=1000)
        return [{"name": model.name,
                 "aliases": {alias: int(version) for alias, version in (model.aliases or {}).items()},
                 "tags": dict(model.tags or {})} for model in found]

    def model_versions(self, model_name: str) -> list[dict[str, Any]]:
        """Return [{"version", "run_id", "aliases", "tags", "test_accuracy"}], newest first."""
        try:
            found = self.client.search_model_versions(f"name = '{model_name}'")
            aliases = self.client.get_registered_model(model_name).aliases or {}
        except MlflowException:
            return []
        rows = []
        for version in found:
            try:
                metrics = self.client.get_run(version.run_id).data.metrics if version.run_id else {}
            except MlflowException:
                metrics = {}
            rows.append({"version": int(version.version), "run_id": version.run_id,
                         # Searches leave a version's aliases out; the model lists them all.
                         "aliases": sorted(alias for alias, number in aliases.items()
                                           if str(number) == str(version.version)),
                         "tags": dict(version.tags or {}),
                         "test_accuracy": metrics.get("test_accuracy")})
        return sorted(rows, key=lambda row: row["version"], reverse=True)

    def model_tag(self, model_name: str, key: str) -> str | None:
        """Return a tag of the registered model (not of a version), None if unset."""
        try:
            return self.client.get_registered_model(model_name).tags.get(key)
        except MlflowException:
            return None

    def set_model_tag(self, model_name: str, key: str, value: str) -> None:
        self.client.set_registered_model_tag(model_name, key, value)


@contextmanager
def _default_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's default client at `uri` for one call.

    MLflow's SQL registry resolves a `models:/<id>` version source through a client made
    with no arguments, i.e. the global tracking URI, which this module never sets. Only
    the module variable is swapped: $MLFLOW_TRACKING_URI, which MLflow's own
    `set_tracking_uri` would overwrite and then unset, stays as the user set it.
    """
    from mlflow.tracking._tracking_service import utils

    saved = utils._tracking_uri
    utils._tracking_uri = uri
    try:
        yield
    finally:
        utils._tracking_uri = saved


def source_tags() -> dict[str, str]:
    """Return the MLflow tags that fill a run's Source: the command, the git commit if any."""
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if command == "__main__.py":  # python -m package: name the package, as the user typed it
        command = f"python -m {Path(sys.argv[0]).parent.name}"
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": command,
            "mlflow.user": getpass.getuser(),
            "command": shlex.join([command, *sys.argv[1:]])[:5000]}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return tags
    if commit.returncode == 0 and commit.stdout.strip():
        tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def ui_links(tracking_uri: str | None, experiment: str, ui_url: str) -> list[str]:
    """Return lines naming the experiment and its latest top-level run, with their UI URLs.

    Read-only: an experiment that does not exist yet is said to be empty, not created.
    """
    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    try:
        found = client.get_experiment_by_name(experiment)
    except MlflowException as error:  # a tracking server that does not answer
        return [f"cannot read {client.tracking_uri}: {str(error).splitlines()[0][:300]}"]
    if found is None:
        return [f"no experiment {experiment!r} in {client.tracking_uri} yet: make train first"]
    base = f"{ui_url.rstrip('/')}/#/experiments/{found.experiment_id}"
    lines = [f"experiment {experiment}: {base}{UI_VIEW}"]
    latest = client.search_runs([found.experiment_id],
                                filter_string=f"tags.`{PARENT_TAG}` IS NULL",
                                max_results=1, order_by=["attributes.start_time DESC"])
    if latest:
        run = latest[0]
        lines.append(f"latest run {run.info.run_name} ({run.info.status}): "
                     f"{base}/runs/{run.info.run_id}{UI_VIEW}")
    return lines


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """Yield a temporary folder for files that are logged as artifacts, then removed."""
    with tempfile.TemporaryDirectory(prefix="tfpipe-") as folder:
        yield Path(folder)
