"""models.config from the registry: aliases become version labels, plain data in, TF Serving's text out.

The registry (MLflow, read by `pipeline/tracking/`) says which versions of a model carry
an alias; this module turns that into TF Serving's ModelServerConfig without knowing
MLflow: a `specific` version policy holding the aliased versions, and `version_labels`
mapping each alias to its version, plus the names TF Serving's docs use, `stable` for the
champion and `canary` for the challenger. A model with no alias gets TF Serving's default
policy (the highest version). The same file starts `tensorflow_model_server`.

`rollout_steps` orders a change the way TF Serving requires (a label may only point at a
version already AVAILABLE): load the new versions beside the old, move the labels, then
drop what is no longer aspired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serving.server.management import config as config_lib

# The registry's aliases and the labels TF Serving's documentation gives the same roles.
ALIAS_LABELS = {"champion": "stable", "challenger": "canary"}


@dataclass(frozen=True)
class ServedModel:
    """One model to serve: its name, its base path, and {alias: version} from the registry."""

    name: str
    base_path: Path
    aliases: Mapping[str, int] = field(default_factory=dict)

    def labels(self) -> dict[str, int]:
        """Return {label: version}: every alias, plus `stable`/`canary` for champion/challenger."""
        labels = {alias: int(version) for alias, version in self.aliases.items()}
        for alias, label in ALIAS_LABELS.items():
            if alias in self.aliases:
                labels[label] = int(self.aliases[alias])
        return labels


def build_config(models: list[ServedModel]) -> config_lib.ModelServerConfig:
    """Return the ModelServerConfig serving `models` (aliased versions and their labels)."""
    config = config_lib.ModelServerConfig()
    for model in models:
        config_lib.check_model_name(model.name)
        entry = config.model_config_list.config.add(
            name=model.name, base_path=str(_absolute(model.base_path)),
            model_platform=config_lib.TENSORFLOW_PLATFORM)
        labels = model.labels()
        if labels:
            entry.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
            for label, version in sorted(labels.items()):
                entry.version_labels[label] = version
    return config


def _absolute(path: Path) -> Path:
    # A container's path (/models/<name>) is written as it is, never resolved on this host.
    path = Path(path)
    return path if path.is_absolute() else path.resolve()


def has_labels(config: config_lib.ModelServerConfig) -> bool:
    """Return whether any model of `config` has a version label."""
    return any(model.version_labels for model in config.model_config_list.config)


def specific_versions(model: config_lib.ModelConfig) -> set[int] | None:
    """Return the versions of a `specific` policy, None for the other policies."""
    if model.model_version_policy.WhichOneof("policy_choice") != "specific":
        return None
    return set(model.model_version_policy.specific.versions)


def rollout_steps(current: config_lib.ModelServerConfig, target: config_lib.ModelServerConfig,
                  loaded: Mapping[str, set[int]]) -> list[config_lib.ModelServerConfig]:
    """Return the configs to send in order to go from `current` to `target` without a gap.

    `loaded` is {model: versions AVAILABLE now}. 1: every model keeps its loaded versions
    and labels and adds the target's versions (wait for them before going on); 2: the labels
    move to the target's; 3: the target itself, which unloads the versions it drops. Steps
    that change nothing are left out, so a no-op change sends nothing.
    """
    before = {model.name: model for model in current.model_config_list.config}
    loading = config_lib.ModelServerConfig()
    moving = config_lib.ModelServerConfig()
    for model in target.model_config_list.config:
        wanted = specific_versions(model)
        old = before.get(model.name)
        for step in (loading, moving):
            entry = step.model_config_list.config.add()
            entry.CopyFrom(model)
        if old is None or wanted is None:
            continue  # a new model, or the default policy: loaded and labelled in one reload
        keep = set(loaded.get(model.name, set()))
        for entry in (loading.model_config_list.config[-1], moving.model_config_list.config[-1]):
            del entry.model_version_policy.specific.versions[:]
            entry.model_version_policy.specific.versions.extend(sorted(wanted | keep))
        entry = loading.model_config_list.config[-1]
        entry.version_labels.clear()
        for label, version in old.version_labels.items():
            if version in keep:
                entry.version_labels[label] = version
    steps, previous = [], current
    for step in (loading, moving, target):
        if step != previous:
            steps.append(step)
            previous = step
    return steps
