"""The registry drives what is served: models.config from its aliases, live moves, status.

`served_models` reads the registry (through pipeline/tracking/) and the export folders
into plain `ServedModel`s; serving/release/registry_config.py writes TF Serving's config from them.
`move_aliases` is how promotion and rollback change an alias: when `make serve` runs a
server from the registry, the server is moved first (serving/release/rollout.py: load, wait, move
labels, unload), and only then the registry, so a refused reload leaves both unchanged.
`status` sets what the registry says beside what the running server has loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from pipeline.config import ConfigError, RunConfig
from pipeline.tracking import Tracker
from serving.export import version_dirs
from serving.launch import discover_models
from serving.release import rollout, server_record
from serving.release.registry_config import ServedModel, build_config
from serving.server.core.errors import ServingError
from serving.server.management import config as config_lib

CONFIG_FILE = "models.config"


def config_path(config: RunConfig) -> Path:
    """Return where `make serve` keeps the registry's models.config: <export dir>/models.config."""
    return config.export.base_dir / CONFIG_FILE


def served_models(config: RunConfig, tracker: Tracker, log=print) -> list[ServedModel]:
    """Return every model with versions under the export dir, with its registry aliases.

    An alias whose version has no folder here is left out, with a warning.
    """
    base_dir = config.export.base_dir
    aliases = {model["name"]: model["aliases"] for model in tracker.registered_models()}
    models = []
    for name, base_path in discover_models(base_dir).items():
        present = set(version_dirs(base_path))
        kept = {}
        for alias, version in sorted(aliases.get(name, {}).items()):
            if version in present:
                kept[alias] = version
            else:
                log(f"warning: {name} alias {alias!r} names version {version}, which has no "
                    f"folder under {base_path}; it is not served")
        models.append(ServedModel(name, base_path, kept))
    return models


def write_config(path: Path, models: list[ServedModel]) -> config_lib.ModelServerConfig:
    """Write the models.config for `models` to `path` (atomically); return it."""
    config = build_config(models)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(config_lib.to_text(config))
    staging.replace(path)  # a server polling the file never reads half of it
    return config


def write_serving_config(config: RunConfig, path: Path | None = None, log=print,
                         base_path_root: str | None = None) -> Path:
    """Write the registry's models.config (default: <export dir>/models.config); return its path.

    `base_path_root` writes each base path as <root>/<name>, where a container mounts the
    exports (deploy/: /models), instead of the local export folder.
    """
    if base_path_root is not None and not PurePosixPath(base_path_root).is_absolute():
        raise ConfigError(f"--base-path-root must be an absolute path, such as /models "
                          f"(got {base_path_root!r})")
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    models = served_models(config, tracker, log)
    if not models:
        raise rollout.RolloutError(
            f"no models under {config.export.base_dir}/ (expected <name>/<version>/saved_model.pb); "
            "`make train` exports one")
    if base_path_root is not None:
        models = [replace(model, base_path=PurePosixPath(base_path_root) / model.name)
                  for model in models]
    target = path or config_path(config)
    write_config(target, models)
    for model in models:
        labels = ", ".join(f"{label} -> {version}" for label, version in sorted(model.labels().items()))
        log(f"{model.name}: " + (f"versions {sorted(set(model.aliases.values()))}, labels {labels}"
                                 if labels else "no alias in the registry: the highest version"))
    return target.resolve()


def move_aliases(config: RunConfig, tracker: Tracker, name: str, changes: dict[str, int],
                 log=print) -> None:
    """Set `changes` ({alias: version}) on `name`: on the running server first, then the registry."""
    models = [replace(model, aliases={**model.aliases, **changes}) if model.name == name else model
              for model in served_models(config, tracker, log=lambda line: None)]
    record = server_record.read_record(config.export.base_dir)
    path = config_path(config)
    if record is not None and not record.from_registry:
        log(f"note: the server at {record.address} serves its own config "
            f"({record.config_path}); it was not reloaded")
        record = None
    if record is None:
        _set_aliases(tracker, name, changes)
        write_config(path, models)
        return
    connection = rollout.ServerConnection(record.address)
    try:
        try:
            current = config_lib.read_config_file(record.config_path)
        except ServingError as error:
            raise rollout.RolloutError(f"cannot read the running server's config: {error.message}") from None
        target = build_config(models)
        steps = rollout.apply(connection, current, target)
        try:
            _set_aliases(tracker, name, changes)
        except BaseException:
            rollout.apply(connection, target, current)
            raise
        write_config(Path(record.config_path), models)
    finally:
        connection.close()
    moved = ", ".join(f"{alias} -> version {version}" for alias, version in changes.items())
    log(f"live: the server at {record.address} now serves {name} with {moved} "
        f"({steps} config reload(s))")


def _set_aliases(tracker: Tracker, name: str, changes: dict[str, int]) -> None:
    for alias, version in changes.items():
        tracker.set_alias(name, alias, version)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    versions: list[dict]  # registry rows (Tracker.model_versions) + "served" state
    labels: dict[str, tuple[int | None, int | None]]  # label -> (registry says, server has)
    server: str | None  # the server's address, None when none runs
    agree: bool


def status(config: RunConfig, log=print) -> list[ModelStatus]:
    """Return, per served model, the registry's versions and aliases beside the server's state."""
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    record = server_record.read_record(config.export.base_dir)
    connection = rollout.ServerConnection(record.address, timeout=10) if record else None
    results = []
    try:
        for model in served_models(config, tracker, log):
            expected = model.labels()
            try:
                states = connection.status(model.name) if connection else {}
                served = {label: connection.label_version(model.name, label) if connection
                          else None for label in expected}
            except rollout.RolloutError as error:  # the registry is still worth showing
                log(f"warning: {error}")
                states, served = {}, dict.fromkeys(expected)
            labels = {label: (version, served[label]) for label, version in sorted(expected.items())}
            rows = [{**row, "served": states.get(row["version"], ("", ""))[0]}
                    for row in tracker.model_versions(model.name)]
            wanted = set(expected.values()) or ({max(version_dirs(model.base_path))}
                                                if version_dirs(model.base_path) else set())
            available = {version for version, (state, _) in states.items() if state == "AVAILABLE"}
            agree = connection is not None and available == wanted and all(
                registry == served for registry, served in labels.values())
            results.append(ModelStatus(model.name, rows, labels,
                                       record.address if record else None, agree))
    finally:
        if connection:
            connection.close()
    return results
