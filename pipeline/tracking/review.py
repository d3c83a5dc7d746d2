# Owns reading runs back for review: the MLflow UI addresses of an experiment and its latest run.
"""Where to look at runs: UI links, read-only (nothing is created by asking)."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.tracking.store import PARENT_TAG, UI_VIEW, resolve_tracking_uri


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
