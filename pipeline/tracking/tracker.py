# Owns experiments and the run lifecycle: open, resume, close, find runs; the registry is mixed in.
"""MLflow tracking: `Tracker` opens runs in one experiment of one tracking store.

Runs are driven through an explicit `MlflowClient` bound to one tracking URI (no global
fluent state), so tests point it at a temp dir and the tuner can log trials from threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.interrupts import ShieldedCalls
from pipeline.tracking.registry import ModelRegistry
from pipeline.tracking.run import Run
from pipeline.tracking.store import (
    EXPERIMENT_KIND,
    PARENT_TAG,
    RESUMABLE_TAG,
    artifact_location,
    resolve_tracking_uri,
    source_tags,
    store_creation_lock,
)


class Tracker(ModelRegistry):
    """Open runs in one experiment of one tracking store, and reach its model registry."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        # Every MLflow call finishes before Ctrl-C/SIGTERM is raised (see interrupts).
        # A new SQLite store's tables are created by the first calls of its tracking and
        # registry stores: one process at a time.
        with store_creation_lock(self.tracking_uri):
            self.client = ShieldedCalls(
                MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri))
            self.experiment_id = self._experiment_id(experiment)
            self.client.search_registered_models(max_results=1)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if EXPERIMENT_KIND[0] not in found.tags:  # made before the tag, or by hand
                self.client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=artifact_location(self.tracking_uri),
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
