"""`python -m serving.deploy_check` (`make deploy-check`): the files in deploy/, checked offline.

- deploy/k8s/: the kustomization is rendered as kustomize renders the parts it uses
  (resources and bases, configMapGenerator, images) and every object is validated against
  the Kubernetes OpenAPI schemas that kubernetes-validate bundles, strictly: a field that
  Kubernetes does not know fails, as `kubectl apply` would refuse it.
- deploy/compose.yaml: validated against the Compose specification's JSON schema (the copy
  that check-jsonschema ships, taken from github.com/compose-spec/compose-spec).
- Every TF Serving file either of them hands to `tensorflow_model_server`
  (--model_config_file, --batching_parameters_file, --monitoring_config_file) is found
  through its mount and parsed with TF Serving's messages; the model that health checks ask
  for must be in models.config, and Prometheus must scrape the path monitoring.config sets.
Each problem is one line naming the file, the object and the field; the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from google.protobuf import text_format

from serving.server import protos
from serving.server.core.errors import ServingError
from serving.server.management import config as config_lib

KUBERNETES_VERSION = "1.28"  # bundled by every kubernetes-validate from 1.28 on
RENDERED_FIELDS = {"apiVersion", "kind", "resources", "images", "configMapGenerator"}
# Kustomize's other fields: accepted by kustomize but not applied here, so refused.
KUSTOMIZE_FIELDS = RENDERED_FIELDS | {
    "metadata", "components", "secretGenerator", "generatorOptions", "namespace", "namePrefix",
    "nameSuffix", "labels", "commonLabels", "commonAnnotations", "patches", "replacements",
    "replicas", "crds", "openapi", "buildMetadata", "helmCharts", "transformers", "generators",
    "validators", "configurations", "sortOptions"}
CONFIG_FLAGS = {"model_config_file": "ModelServerConfig",
                "batching_parameters_file": "BatchingParameters",
                "monitoring_config_file": "MonitoringConfig"}
_FLAG = re.compile(r"^--([a-z_.]+)=(.+)$")
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


class Check:
    """The problems found so far, and what the TF Serving files hold (for cross-checks)."""

    def __init__(self):
        self.problems: list[str] = []
        self.model_names: set[str] = set()
        self.metrics_paths: set[str] = set()
        self.parsed: list[Path] = []

    def fail(self, where: object, message: str) -> None:
        self.problems.append(f"{_shown(where)}: {message}")

    def parse_flag_file(self, flag: str, path: Path, where: str) -> None:
        """Parse the file behind --<flag> with TF Serving's message; remember what it holds."""
        if not path.is_file():
            self.fail(where, f"--{flag} names {_shown(path)}, which does not exist")
            return
        message = (config_lib.ModelServerConfig() if flag == "model_config_file"
                   else protos.message_class(CONFIG_FLAGS[flag])())
        try:
            text_format.Parse(path.read_text(), message)
            if flag == "model_config_file":
                config_lib.validate(message)
        except text_format.ParseError as error:
            self.fail(path, f"not a valid tensorflow.serving.{CONFIG_FLAGS[flag]}: {error}")
            return
        except ServingError as error:
            self.fail(path, error.message)
            return
        self.parsed.append(path)
        if flag == "model_config_file":
            self.model_names.update(model.name for model in message.model_config_list.config)
        elif flag == "monitoring_config_file" and message.prometheus_config.enable:
            self.metrics_paths.add(message.prometheus_config.path or "/monitoring/prometheus/metrics")


def _shown(where: object) -> str:
    path = Path(str(where))
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(where)


def _yaml_documents(path: Path, check: Check) -> list[dict]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, yaml.YAMLError) as error:
        check.fail(path, f"cannot be read as YAML: {error}".splitlines()[0])
        return []


# --- Kubernetes ----------------------------------------------------------------------------

def render_kustomization(folder: Path, check: Check, files: dict) -> list[tuple[Path, dict]]:
    """Return [(source file, object)] that `kustomize build folder` would produce.

    `files` collects {(ConfigMap name, key): file} for the generated ConfigMaps. Files a
    generator reads must lie under its kustomization's folder (kustomize's load restrictor).
    """
    path = folder / "kustomization.yaml"
    documents = _yaml_documents(path, check)
    spec = documents[0] if documents else {}
    for field in sorted(set(spec) - RENDERED_FIELDS):
        check.fail(path, f"unknown kustomize field '{field}'" if field not in KUSTOMIZE_FIELDS
                   else f"'{field}' is not rendered by serving/deploy_check.py; extend it first")
    objects: list[tuple[Path, dict]] = []
    for entry in spec.get("resources", []):
        resource = folder / entry
        if (resource / "kustomization.yaml").is_file():
            objects += render_kustomization(resource, check, files)
        elif resource.is_file():
            objects += [(resource, doc) for doc in _yaml_documents(resource, check)]
        else:
            check.fail(path, f"resources: {entry} is neither a file nor a kustomization folder")
    for generator in spec.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
        for item in generator.get("files", []):
            key, _, name = item.rpartition("=")
            source = (folder / name).resolve()
            if not source.is_relative_to(folder.resolve()):
                check.fail(path, f"configMapGenerator {generator['name']}: {name} is outside "
                           f"{_shown(folder)} (kustomize refuses to load it)")
            elif not source.is_file():
                check.fail(path, f"configMapGenerator {generator['name']}: {name} does not exist")
            else:
                data[key or source.name] = source.read_text()
                files[(generator["name"], key or source.name)] = source
        objects.append((path, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": generator["name"]}, "data": data}))
    _set_images(spec.get("images", []), objects, check, path)
    return objects


def _pod_spec(obj: dict) -> dict | None:
    return obj.get("spec", {}).get("template", {}).get("spec") if isinstance(obj, dict) else None


def _containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def _set_images(images: list[dict], objects, check: Check, path: Path) -> None:
    for image in images:
        matched = False
        for _, obj in objects:
            for container in _containers(_pod_spec(obj) or {}):
                current = str(container.get("image", ""))
                name = current.rsplit(":", 1)[0] if ":" in current.rsplit("/", 1)[-1] else current
                if name == image.get("name"):
                    tag = image.get("newTag", current[len(name) + 1:] or "latest")
                    container["image"] = f"{image.get('newName', name)}:{tag}"
                    matched = True
        if not matched:
            check.fail(path, f"images: no container uses the image '{image.get('name')}'")


def check_kubernetes(folder: Path, check: Check, version: str = KUBERNETES_VERSION) -> int:
    """Validate the rendered kustomization in `folder`; return how many objects it has."""
    files: dict[tuple[str, str], Path] = {}
    objects = render_kustomization(folder, check, files)
    config_maps = {obj["metadata"]["name"]: obj for _, obj in objects if obj.get("kind") == "ConfigMap"}
    for source, obj in objects:
        label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            field = ".".join(str(part) for part in error.absolute_path) or "(top level)"
            check.fail(source, f"{label}: {field}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, KeyError) as error:
            check.fail(source, f"{label}: {getattr(error, 'message', error)}")
        if _pod_spec(obj):
            _check_pod(source, label, _pod_spec(obj), obj, config_maps, files, check)
    for source, obj in objects:
        if obj.get("kind") == "ConfigMap" and "MODEL_NAME" in obj["data"]:
            _check_model_name(obj["data"]["MODEL_NAME"], f"ConfigMap/{obj['metadata']['name']}",
                              source, check)
    return len(objects)


def _check_pod(source, label, pod, obj, config_maps, files, check: Check) -> None:
    """Every ConfigMap a pod reads exists; every TF Serving flag file is mounted and parses."""
    volumes = {volume["name"]: volume.get("configMap", {}).get("name") for volume in pod.get("volumes", [])}
    for name in filter(None, volumes.values()):
        if name not in config_maps:
            check.fail(source, f"{label}: volume uses ConfigMap '{name}', which is not generated")
    for container in _containers(pod):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref.get("key") not in config_maps.get(ref.get("name"), {}).get("data", {}):
                check.fail(source, f"{label}: env {env['name']}: no key '{ref.get('key')}' in "
                           f"ConfigMap '{ref.get('name')}'")
        for flag, value in _flags(container.get("command", []) + container.get("args", [])):
            if flag not in CONFIG_FLAGS:
                continue
            mount = next((m for m in container.get("volumeMounts", [])
                          if value.startswith(m["mountPath"].rstrip("/") + "/")), None)
            key = (volumes.get(mount["name"]) if mount else None,
                   value[len(mount["mountPath"].rstrip("/")) + 1:] if mount else "")
            if key not in files:
                check.fail(source, f"{label}: --{flag}={value} is not a file of a mounted ConfigMap")
            else:
                check.parse_flag_file(flag, files[key], f"{_shown(source)}: {label}")
    annotated = obj["spec"]["template"].get("metadata", {}).get("annotations", {}).get("prometheus.io/path")
    if annotated and check.metrics_paths and annotated not in check.metrics_paths:
        check.fail(source, f"{label}: prometheus.io/path {annotated} is not the monitoring "
                   f"config's path {sorted(check.metrics_paths)}")


def _flags(arguments: list) -> list[tuple[str, str]]:
    return [match.groups() for match in map(_FLAG.match, map(str, arguments)) if match]


def _check_model_name(name: str, where: str, source: Path, check: Check) -> None:
    if check.model_names and name not in check.model_names:
        check.fail(source, f"{where}: MODEL_NAME '{name}' is not in models.config "
                   f"({', '.join(sorted(check.model_names))})")


# --- Docker Compose ------------------------------------------------------------------------

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
    documents = _yaml_documents(path, check)
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
        for flag, value in _flags(arguments):
            file = _inside(value, mounts)
            if flag in CONFIG_FLAGS or flag == "config.file":
                if file is None:
                    check.fail(path, f"services.{name}: --{flag}={value} is not in a bind mount")
                elif flag == "config.file":
                    scraped[name] = file
                else:
                    check.parse_flag_file(flag, file, f"{_shown(path)}: services.{name}")
        environment = (service or {}).get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment if "=" in item)
        if "MODEL_NAME" in environment:
            _check_model_name(_interpolated(str(environment["MODEL_NAME"])),
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
    documents = _yaml_documents(file, check)
    for job in (documents[0] if documents else {}).get("scrape_configs", []):
        hosts = {str(target).split(":")[0] for group in job.get("static_configs", [])
                 for target in group.get("targets", [])}
        path = job.get("metrics_path", "/metrics")
        if hosts & serving and path not in check.metrics_paths:
            check.fail(file, f"{where}: job {job.get('job_name')} scrapes {path}, not the "
                       f"monitoring config's {sorted(check.metrics_paths)}")


def main(argv: list[str] | None = None) -> int:
    """Check deploy/; print what was checked, or one line per problem; return 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m serving.deploy_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("deploy"))
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    check = Check()
    compose = args.deploy_dir / "compose.yaml"
    if not compose.is_file() or not (args.deploy_dir / "k8s" / "kustomization.yaml").is_file():
        print(f"error: {args.deploy_dir} has no compose.yaml or k8s/kustomization.yaml", file=sys.stderr)
        return 1
    services = check_compose(compose, check)
    objects = check_kubernetes(args.deploy_dir / "k8s", check, args.kubernetes_version)
    for problem in dict.fromkeys(check.problems):  # a file two servers mount: once
        print(f"error: {problem}", file=sys.stderr)
    if check.problems:
        return 1
    print(f"{_shown(compose)}: {services} services valid against the Compose specification")
    print(f"{_shown(args.deploy_dir / 'k8s')}: {objects} objects valid against the Kubernetes "
          f"{args.kubernetes_version} schemas (strict)")
    parsed = sorted({_shown(path) for path in check.parsed})
    print(f"TF Serving files parsed with its protos: {', '.join(parsed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
