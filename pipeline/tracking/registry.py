# Owns the model registry: logged models, versions, aliases, tags; the registry as plain data.
"""The MLflow model registry, as methods every `Tracker` has.

`ModelRegistry` is mixed into `Tracker` (tracker.py), which gives it `client` (an
`MlflowClient`), `tracking_uri` and `experiment_id`. Serving reads the registry through
`registered_models` and `model_versions`, as plain data: it never sees MLflow objects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.exceptions import MlflowException

from pipeline.tracking.run import Run


class ModelRegistry:
    """Register, label and read model versions in the tracking store's registry."""

    client: MlflowClient
    tracking_uri: str
    experiment_id: str

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
