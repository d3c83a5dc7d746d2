"""Reading a run's configuration: YAML file, then dotted overrides, into one RunConfig.

Config flows one way: Make variable -> CLI flag or `--set section.field=value` -> the YAML
file's mapping with the overrides applied -> `RunConfig` (validated once) -> explicit
keyword arguments into builders. `dump_config` writes a config back as YAML that loads to
the same object.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.run_config import RunConfig, describe_validation_error
from pipeline.config.sections import ConfigError

# What `make` and `python -m pipeline` use when no config is named: one default, not two.
DEFAULT_CONFIG = Path("configs/fashion_cnn.yaml")


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2's booleans: only true/false are; a bare on/off/yes/no stays a word.

    YAML 1.1 reads `off` as false, so `train.mixed_precision: off` would be refused as not
    one of its words; pydantic still takes "on"/"off"/"yes"/"no" where a field is a bool.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader: no Python objects


def default_config_path() -> Path:
    """Return configs/fashion_cnn.yaml of the working folder, else of this checkout."""
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    beside_code = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG
    if beside_code.is_file():
        return beside_code
    raise ConfigError(f"no config given and no {DEFAULT_CONFIG} here; pass --config FILE")


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                origins: dict[str, str] | None = None) -> RunConfig:
    """Return the validated config from a YAML file with dotted-key overrides applied.

    `overrides` maps `section.field` (e.g. `train.epochs`) to a value; None values are
    skipped, so unset CLI flags keep the file's value. `origins` names where an override
    came from (`--set model.filters=16`): an error in that field names it, not the file.
    """
    source = str(path) if path else "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = _read_yaml(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"{path} is a folder; --config takes a YAML file, e.g. "
                              f"{DEFAULT_CONFIG}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config file {path}: "
                              f"{getattr(error, 'strerror', None) or error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        message = describe_validation_error(error)
    except ValueError as error:  # an unknown model family, raised before field validation
        message = str(error)
    raise ConfigError(f"{_blamed(message, origins or {}) or source}: {message}")


def _blamed(message: str, origins: dict[str, str]) -> str | None:
    """Return the origin of the override whose field `message` names first, if any."""
    field = message.split(":", 1)[0].strip()
    for dotted, origin in origins.items():
        if field == dotted or field.startswith(f"{dotted}.") or dotted.startswith(f"{field}."):
            return origin
    return None


def parse_override(assignment: str) -> tuple[str, Any]:
    """Return (dotted key, value) from `key=value`; the value is parsed as YAML."""
    key, separator, text = assignment.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"--set expects section.field=value, got {assignment!r}")
    return key.strip(), _read_yaml(text)


def dump_config(config: RunConfig) -> str:
    """Return `config` as YAML (every default filled in) that `load_config` reads back."""
    return yaml.safe_dump(config.plain(), sort_keys=False)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
        node = child
    node[leaf] = value
