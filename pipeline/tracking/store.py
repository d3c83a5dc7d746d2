# Owns where runs are stored and what every run is tagged with; a scratch folder for artifacts.
"""The tracking store: which URI, the tags MLflow reads, and a scratch folder for artifacts.

Default store: SQLite under ./mlruns/ with artifacts beside it; $MLFLOW_TRACKING_URI (a
shared server) wins over the default, and a configured URI wins over both.
"""

from __future__ import annotations

import fcntl
import functools
import getpass
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.interrupts import shielded

DEFAULT_STORE = Path("mlruns")
PARENT_TAG = "mlflow.parentRunId"
RESUMABLE_TAG = "resumable"  # on a FAILED run that the same command may continue
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


def artifact_location(uri: str) -> str | None:
    """Keep artifacts of a local SQLite store under its folder (MLflow's default is ./mlartifacts)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


@contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store (no-op for other URIs).

    MLflow creates a new SQLite store's tables on first use; two processes doing it at once
    (two `make train` on a fresh clone) fail with "table experiments already exists".
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def source_tags() -> dict[str, str]:
    """Return the MLflow tags that fill a run's Source: the command, the git commit if any."""
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if command == "__main__.py":  # python -m package: name the package, as the user typed it
        command = f"python -m {Path(sys.argv[0]).parent.name}"
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": command,
            "mlflow.user": getpass.getuser(),
            "command": shlex.join([command, *sys.argv[1:]])[:5000]}
    with shielded():  # Ctrl-C during `git` waits for it (once per process, see below)
        commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


@functools.cache
def _git_commit() -> str | None:
    """Return the commit of this checkout, None outside git (asked once per process)."""
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                               timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """Yield a temporary folder for files that are logged as artifacts, then removed."""
    with tempfile.TemporaryDirectory(prefix="tfpipe-") as folder:
        yield Path(folder)
