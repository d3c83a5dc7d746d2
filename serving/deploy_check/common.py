"""What the deploy/ checks share: the problem list, file readers, TF Serving's flag files."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from google.protobuf import text_format

from serving.server import protos
from serving.server.core.errors import ServingError
from serving.server.management import config as config_lib

CONFIG_FLAGS = {"model_config_file": "ModelServerConfig",
                "batching_parameters_file": "BatchingParameters",
                "monitoring_config_file": "MonitoringConfig"}
_FLAG = re.compile(r"^--([a-z_.]+)=(.+)$")


class Check:
    """The problems found so far, and what the TF Serving files hold (for cross-checks)."""

    def __init__(self):
        self.problems: list[str] = []
        self.model_names: set[str] = set()
        self.metrics_paths: set[str] = set()
        self.parsed: list[Path] = []

    def fail(self, where: object, message: str) -> None:
        self.problems.append(f"{shown(where)}: {message}")

    def parse_flag_file(self, flag: str, path: Path, where: str) -> None:
        """Parse the file behind --<flag> with TF Serving's message; remember what it holds."""
        if not path.is_file():
            self.fail(where, f"--{flag} names {shown(path)}, which does not exist")
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


def shown(where: object) -> str:
    path = Path(str(where))
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(where)


def yaml_documents(path: Path, check: Check) -> list[dict]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, yaml.YAMLError) as error:
        check.fail(path, f"cannot be read as YAML: {error}".splitlines()[0])
        return []

def flags(arguments: list) -> list[tuple[str, str]]:
    return [match.groups() for match in map(_FLAG.match, map(str, arguments)) if match]


def check_model_name(name: str, where: str, source: Path, check: Check) -> None:
    if check.model_names and name not in check.model_names:
        check.fail(source, f"{where}: MODEL_NAME '{name}' is not in models.config "
                   f"({', '.join(sorted(check.model_names))})")


