"""models.config: TF Serving's text-format ModelServerConfig, parsed with its real proto.

The same file works for tensorflow_model_server and for this server. Validation follows
ServerCore (unique names, absolute base paths, the 'tensorflow' platform), plus one check
of our own: a model name must not be able to name a path outside its base directory.
"""

from __future__ import annotations

import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.server import protos
from serving.server.core import errors

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig
TENSORFLOW_PLATFORM = "tensorflow"

# Names end up in URLs and, in launch.py, in paths: no separators, no '..', no controls.
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]|^\.{1,2}$")


def parse_config_text(text: str, source: str = "model config") -> model_server_config_pb2.ModelServerConfig:
    """Return `text` parsed as a ModelServerConfig; INVALID_ARGUMENT naming `source` if not."""
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise errors.invalid_argument(f"{source} is not a valid ModelServerConfig: {error}") from None
    return config


def read_config_file(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Return the ModelServerConfig in the text-format file at `path` (TF's errors if not)."""
    return protos.read_text_proto(path, ModelServerConfig())


def single_model_config(model_name: str, model_base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """Return the one-model config TF Serving builds from --model_name/--model_base_path."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def check_model_name(name: str) -> None:
    """Raise INVALID_ARGUMENT if `name` is empty or could be used to leave a base path."""
    if not name or _UNSAFE_NAME.search(name):
        raise errors.invalid_argument(
            f"invalid model name {name!r}: names may not be empty, '.', '..', or contain path "
            "separators or control characters"
        )


def _platform(model: model_server_config_pb2.ModelConfig) -> str:
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise errors.invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            raise errors.invalid_argument(
                f"ModelServerConfig::model_type choice {model.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    if not model.model_platform:
        raise errors.invalid_argument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {model.name}"
        )
    return model.model_platform


def validate(config: model_server_config_pb2.ModelServerConfig, previous=None) -> None:
    """Raise TF Serving's errors for a config ServerCore would refuse to load."""
    if config.WhichOneof("config") == "custom_model_config":
        raise errors.invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
            "ModelConfigList is currently supported"
        )
    names: set[str] = set()
    for model in config.model_config_list.config:
        check_model_name(model.name)
        if model.name in names:
            raise errors.invalid_argument(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not os.path.isabs(model.base_path):
            raise errors.invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; got "
                f"base_path()={model.base_path}"
            )
        _platform(model)
    # ServerCore::ReloadConfig refuses a platform change before it routes any model to its
    # platform's loader (CreateStoragePathRoutes, which refuses unknown platforms).
    if previous is not None:
        old = {model.name: _platform(model) for model in previous.model_config_list.config}
        for model in config.model_config_list.config:
            if model.name in old and old[model.name] != _platform(model):
                raise errors.invalid_argument(
                    f"Illegal to change a model's platform. For model {model.name} platform was "
                    f"{old[model.name]} and new platform requested is {_platform(model)}"
                )
    for model in config.model_config_list.config:
        platform = _platform(model)
        if platform != TENSORFLOW_PLATFORM:
            raise errors.invalid_argument(f"Model {model.name} requests unsupported platform {platform}")


def to_text(config: model_server_config_pb2.ModelServerConfig) -> str:
    """Return `config` in the text format both servers read."""
    return text_format.MessageToString(config)
