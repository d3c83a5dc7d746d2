"""deploy/compose.yaml: the Compose specification's JSON schema, and the files it mounts."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import jsonschema

from serving.deploy_check.common import (
    CONFIG_FLAGS,
    Check,
    check_model_name,
    flags,
    shown,
    yaml_documents,
)

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose_schema() -> dict:
    """Return the Compose specification's JSON schema, as check-jsonschema vendors it."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())


def _interpolated(value: str) -> str:
    """Return `value` with ${VAR}, ${VAR:-default} replaced as Compose would (environment first)."""
    return _VARIABLE.sub(lambda match: os.environ.get(match.group(1)) or match.group(2) or "", value)


def _mounts(service: dict, folder: Path) -> list[tuple[str, Path]]:
    """Return [(path in the container, path here)] of a service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source"), volume.get("target")
        else:
            source, _, rest = str(volume).partition(":")
            target = rest.split(":")[0]
        if source and target and source.startswith((".", "/", "$")):  # not a named volume
            mounts.append((target.rstrip("/"), (folder / _interpolated(source)).resolve()))
    return mounts


def _inside(value: str, mounts: list[tuple[str, Path]]) -> Path | None:
    for target, source in mounts:
        if value == target:
            return source
        if value.startswith(target + "/"):
            return source / value[len(target) + 1:]
    return None


def check_compose(path: Path, check: Check) -> int:
    """Validate a compose file and the files its services' flags name; return its services."""
    documents = yaml_documents(path, check)
    compose = documents[0] if documents else {}
    validator_class = jsonschema.validators.validator_for(compose_schema())
    for error in validator_class(compose_schema()).iter_errors(compose):
        field = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        check.fail(path, f"{field}: {error.message}")
    services = compose.get("services", {}) if isinstance(compose, dict) else {}
    scraped: dict[str, Path] = {}
    for name, service in services.items():
        mounts = _mounts(service or {}, path.parent)
        arguments = [_interpolated(str(item)) for key in ("entrypoint", "command")
                     for item in _as_list((service or {}).get(key))]
        for flag, value in flags(arguments):
            file = _inside(value, mounts)
            if flag in CONFIG_FLAGS or flag == "config.file":
                if file is None:
                    check.fail(path, f"services.{name}: --{flag}={value} is not in a bind mount")
                elif flag == "config.file":
                    scraped[name] = file
                else:
                    check.parse_flag_file(flag, file, f"{shown(path)}: services.{name}")
        environment = (service or {}).get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment if "=" in item)
        if "MODEL_NAME" in environment:
            check_model_name(_interpolated(str(environment["MODEL_NAME"])),
                              f"services.{name}", path, check)
    for name, file in scraped.items():
        _check_scrape_paths(file, services, check, f"services.{name}")
    return len(services)


def _as_list(value) -> list:
    return [] if value is None else value.split() if isinstance(value, str) else list(value)


def _check_scrape_paths(file: Path, services: dict, check: Check, where: str) -> None:
    """Prometheus jobs that scrape a TF Serving service use the monitoring config's path."""
    serving = {name for name, service in services.items()
               if any("monitoring_config_file" in str(item) for item in _as_list(service.get("command")))}
    documents = yaml_documents(file, check)
    for job in (documents[0] if documents else {}).get("scrape_configs", []):
        hosts = {str(target).split(":")[0] for group in job.get("static_configs", [])
                 for target in group.get("targets", [])}
        path = job.get("metrics_path", "/metrics")
        if hosts & serving and path not in check.metrics_paths:
            check.fail(file, f"{where}: job {job.get('job_name')} scrapes {path}, not the "
                       f"monitoring config's {sorted(check.metrics_paths)}")


