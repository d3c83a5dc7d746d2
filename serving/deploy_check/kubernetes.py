"""deploy/k8s/: the kustomization rendered as kustomize would, and each object validated
against the Kubernetes OpenAPI schemas kubernetes-validate bundles (strict)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate

from serving.deploy_check.common import (
    CONFIG_FLAGS,
    Check,
    check_model_name,
    flags,
    shown,
    yaml_documents,
)

KUBERNETES_VERSION = "1.28"  # bundled by every kubernetes-validate from 1.28 on
RENDERED_FIELDS = {"apiVersion", "kind", "resources", "images", "configMapGenerator"}
# Kustomize's other fields: accepted by kustomize but not applied here, so refused.
KUSTOMIZE_FIELDS = RENDERED_FIELDS | {
    "metadata", "components", "secretGenerator", "generatorOptions", "namespace", "namePrefix",
    "nameSuffix", "labels", "commonLabels", "commonAnnotations", "patches", "replacements",
    "replicas", "crds", "openapi", "buildMetadata", "helmCharts", "transformers", "generators",
    "validators", "configurations", "sortOptions"}


def render_kustomization(folder: Path, check: Check, files: dict) -> list[tuple[Path, dict]]:
    """Return [(source file, object)] that `kustomize build folder` would produce.

    `files` collects {(ConfigMap name, key): file} for the generated ConfigMaps. Files a
    generator reads must lie under its kustomization's folder (kustomize's load restrictor).
    """
    path = folder / "kustomization.yaml"
    documents = yaml_documents(path, check)
    spec = documents[0] if documents else {}
    for field in sorted(set(spec) - RENDERED_FIELDS):
        check.fail(path, f"unknown kustomize field '{field}'" if field not in KUSTOMIZE_FIELDS
                   else f"'{field}' is not rendered by serving/deploy_check/kubernetes.py; extend it first")
    objects: list[tuple[Path, dict]] = []
    for entry in spec.get("resources", []):
        resource = folder / entry
        if (resource / "kustomization.yaml").is_file():
            objects += render_kustomization(resource, check, files)
        elif resource.is_file():
            objects += [(resource, doc) for doc in yaml_documents(resource, check)]
        else:
            check.fail(path, f"resources: {entry} is neither a file nor a kustomization folder")
    for generator in spec.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
        for item in generator.get("files", []):
            key, _, name = item.rpartition("=")
            source = (folder / name).resolve()
            if not source.is_relative_to(folder.resolve()):
                check.fail(path, f"configMapGenerator {generator['name']}: {name} is outside "
                           f"{shown(folder)} (kustomize refuses to load it)")
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
            check_model_name(obj["data"]["MODEL_NAME"], f"ConfigMap/{obj['metadata']['name']}",
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
        for flag, value in flags(container.get("command", []) + container.get("args", [])):
            if flag not in CONFIG_FLAGS:
                continue
            mount = next((m for m in container.get("volumeMounts", [])
                          if value.startswith(m["mountPath"].rstrip("/") + "/")), None)
            key = (volumes.get(mount["name"]) if mount else None,
                   value[len(mount["mountPath"].rstrip("/")) + 1:] if mount else "")
            if key not in files:
                check.fail(source, f"{label}: --{flag}={value} is not a file of a mounted ConfigMap")
            else:
                check.parse_flag_file(flag, files[key], f"{shown(source)}: {label}")
    annotated = obj["spec"]["template"].get("metadata", {}).get("annotations", {}).get("prometheus.io/path")
    if annotated and check.metrics_paths and annotated not in check.metrics_paths:
        check.fail(source, f"{label}: prometheus.io/path {annotated} is not the monitoring "
                   f"config's path {sorted(check.metrics_paths)}")


