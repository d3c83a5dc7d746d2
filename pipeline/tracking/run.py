# Owns one run's writes and reads, and the Keras callback that logs every epoch to it.
"""One MLflow run, and the Keras callback that logs every epoch's metrics to it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from pipeline.tracking.store import NOTE_TAG

_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch request


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
