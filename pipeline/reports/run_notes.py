"""What a reviewer reads first in the MLflow UI: a training run's Description and its
registered version's description, as Markdown.

Links are relative to the UI's own address (`#/experiments/...`), so they work wherever
the UI is served from. Pure functions of plain values: the training stage collects them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Lineage:
    """Where a model came from, for the run note and the version description."""

    model_name: str
    family: str
    experiment_id: str
    run_id: str
    run_name: str
    config_fingerprint: str
    data: str  # origin, name and version or checksum of the data set
    host: str  # CPU model and cores
    export_path: Path | None
    version: int | None
    model_id: str | None
    parent_run_id: str | None = None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _metric(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else "—"


def host_line(cpu_model: str, cores: int | None) -> str:
    """Return `hostname: CPU model, N cores` for the result tables."""
    return f"{socket.gethostname()}: {cpu_model}, {cores} cores"


def _links(lineage: Lineage) -> list[str]:
    experiment = f"#/experiments/{lineage.experiment_id}"
    links = []
    if lineage.export_path is not None:
        links.append(f"export `{lineage.export_path}`")
    if lineage.version is not None:
        links.append(f"registered [{lineage.model_name} version {lineage.version}]"
                     f"(#/models/{lineage.model_name}/versions/{lineage.version})")
    if lineage.model_id is not None:
        links.append(f"logged model [{lineage.model_id}]({experiment}/models/{lineage.model_id})")
    if lineage.parent_run_id is not None:
        links.append(f"sweep [parent run]({experiment}/runs/{lineage.parent_run_id})")
    return links


def run_note(lineage: Lineage, metrics: dict[str, float], seconds: float | None) -> str:
    """Return the training run's Description: its result table, then links to its outputs."""
    lines = [
        f"**{lineage.model_name}** ({lineage.family}) trained on {lineage.data}.",
        "",
        "| test accuracy | test macro-F1 | test loss | training time | host |",
        "|---:|---:|---:|---:|---|",
        f"| {_metric(metrics, 'test_accuracy')} | {_metric(metrics, 'test_macro_f1')} "
        f"| {_metric(metrics, 'test_loss')} | {_duration(seconds)} | {lineage.host} |",
        "",
        " · ".join(_links(lineage)) or "not exported",
        "",
        "Figures: `evaluation/` (learning curves, confusion matrix) and `insights/` under "
        "Artifacts; per-epoch curves under Model metrics.",
    ]
    return "\n".join(lines) + "\n"


def version_note(lineage: Lineage, metrics: dict[str, float]) -> str:
    """Return a registered version's description: its test metrics and where it came from."""
    experiment = f"#/experiments/{lineage.experiment_id}"
    lines = [
        f"test accuracy **{_metric(metrics, 'test_accuracy')}** · macro-F1 "
        f"{_metric(metrics, 'test_macro_f1')} · test loss {_metric(metrics, 'test_loss')}",
        "",
        f"- trained by run [{lineage.run_name}]({experiment}/runs/{lineage.run_id}) "
        f"({lineage.family}, config fingerprint `{lineage.config_fingerprint}`)",
        f"- data: {lineage.data}",
        f"- host: {lineage.host}",
        *(f"- {link}" for link in _links(lineage) if not link.startswith("registered")),
    ]
    return "\n".join(lines) + "\n"
