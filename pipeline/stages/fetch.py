"""Fetching: the registry's served versions, downloaded to saved_models/<name>/<version>/.

A machine that did not train a model (a serving host, the Kubernetes init container in
deploy/k8s/, a colleague on the shared tracking server) needs its SavedModels on disk before
`make serve` or `make promote`. Fetched are the versions that carry an alias (champion,
challenger), or the latest version of a model without aliases: what a registry-driven
models.config serves. Each is downloaded to a staging folder and renamed into place, so a
server never sees half a version; a version already on disk is left as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.tracking import Tracker


def run(config: RunConfig, model_names: list[str] | None = None,
        destination: Path | None = None, log=print) -> list[Path]:
    """Download the served versions of `model_names` (default: every registered model)
    into `destination`/<name>/<version> (default export.base_dir); return their folders."""
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    destination = destination or config.export.base_dir
    names = model_names or sorted(model["name"] for model in tracker.registered_models())
    if not names:
        raise ConfigError(f"no registered model in {tracker.tracking_uri}; `make train` registers one")
    folders = []
    for name in names:
        versions = served_versions(tracker.model_versions(name))
        if not versions:
            raise ConfigError(f"model {name!r} has no registered version in {tracker.tracking_uri}")
        for version, aliases in versions.items():
            folder = destination / name / str(version)
            label = f"{name} version {version}" + (f" ({', '.join(aliases)})" if aliases else "")
            if (folder / "saved_model.pb").exists():
                log(f"{label}: already in {folder}")
            else:
                _download(tracker, name, version, folder)
                log(f"{label}: downloaded to {folder}")
            folders.append(folder)
    return folders


def served_versions(rows: list[dict]) -> dict[int, list[str]]:
    """Return {version: its aliases} for the registry rows carrying an alias; without any
    alias, {latest version: []} (nothing when there is no row).

    `rows` are `Tracker.model_versions`, newest first.
    """
    aliased = {row["version"]: row["aliases"] for row in sorted(rows, key=lambda row: row["version"])
               if row["aliases"]}
    return aliased or ({rows[0]["version"]: []} if rows else {})


def _download(tracker: Tracker, name: str, version: int, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A hidden sibling: the server skips dot-folders, and the rename stays on one filesystem.
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=folder.parent))
    try:
        downloaded = tracker.download_version(name, version, staging)
        if not (downloaded / "saved_model.pb").exists():
            raise ConfigError(f"model {name!r} version {version} in {tracker.tracking_uri} holds "
                              f"no saved_model.pb (source is not a SavedModel export)")
        shutil.rmtree(folder, ignore_errors=True)  # a folder without saved_model.pb
        downloaded.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
