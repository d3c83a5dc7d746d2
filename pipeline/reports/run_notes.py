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


@dataclass(frozen=True)
class NoteKind:
    """What a kind of model is judged by: (label, metric key) columns, the first in bold
    in the version note, and where its figures are among the run's artifacts."""

    columns: tuple[tuple[str, str], ...]
    figures: str


CLASSIFIER = NoteKind(
    columns=(("test accuracy", "test_accuracy"), ("test macro-F1", "test_macro_f1"),
             ("test loss", "test_loss")),
    figures="Figures: `evaluation/` (learning curves, confusion matrix) and `insights/` under "
            "Artifacts; per-epoch curves under Model metrics.")
LANGUAGE_MODEL = NoteKind(
    columns=(("test bits/char", "test_bits_per_char"),
             ("5-gram bits/char", "baseline_test_bits_per_char")),
    figures="Per-epoch curves under Model metrics; the SavedModel's `generate` signature "
            "writes text from a prompt.")


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


def run_note(lineage: Lineage, metrics: dict[str, float], seconds: float | None,
             kind: NoteKind = CLASSIFIER) -> str:
    """Return the training run's Description: its result table, then links to its outputs."""
    labels = [label for label, _ in kind.columns]
    values = [_metric(metrics, key) for _, key in kind.columns]
    lines = [
        f"**{lineage.model_name}** ({lineage.family}) trained on {lineage.data}.",
        "",
        "| " + " | ".join([*labels, "training time", "host"]) + " |",
        "|" + "---:|" * (len(labels) + 1) + "---|",
        "| " + " | ".join([*values, _duration(seconds), lineage.host]) + " |",
        "",
        " · ".join(_links(lineage)) or "not exported",
        "",
        kind.figures,
    ]
    return "\n".join(lines) + "\n"


def version_note(lineage: Lineage, metrics: dict[str, float],
                 kind: NoteKind = CLASSIFIER) -> str:
    """Return a registered version's description: its test metrics and where it came from."""
    experiment = f"#/experiments/{lineage.experiment_id}"
    (first_label, first_key), *rest = kind.columns
    headline = " · ".join([f"{first_label} **{_metric(metrics, first_key)}**",
                           *(f"{label} {_metric(metrics, key)}" for label, key in rest)])
    lines = [
        headline,
        "",
        f"- trained by run [{lineage.run_name}]({experiment}/runs/{lineage.run_id}) "
        f"({lineage.family}, config fingerprint `{lineage.config_fingerprint}`)",
        f"- data: {lineage.data}",
        f"- host: {lineage.host}",
        *(f"- {link}" for link in _links(lineage) if not link.startswith("registered")),
    ]
    return "\n".join(lines) + "\n"
