"""MonitoringConfig and BatchingParameters, which the tensorflow-serving-api wheel lacks.

TF Serving reads both from text-format files (--monitoring_config_file,
--batching_parameters_file). MonitoringConfig is declared here with the same package,
names, field numbers and types as tensorflow_serving/config/monitoring_config.proto;
BatchingParameters is TF Serving's own declaration (proto/session_bundle_config.proto,
compiled by protoc), so the same files parse identically.
"""

from __future__ import annotations

import errno
import functools
import logging
import re

import grpc
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
)

from serving.server.core import errors
from serving.server.proto import session_bundle_config_pb2

log = logging.getLogger("serving.server")
_FIELD = descriptor_pb2.FieldDescriptorProto
_FILE_NAME = "serving/server/compat_config.proto"


def _field(message, name, number, kind, type_name=None, repeated=False):
    field = message.field.add(name=name, number=number, type=kind)
    field.label = _FIELD.LABEL_REPEATED if repeated else _FIELD.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name


@functools.cache
def _classes() -> dict[str, type]:
    """Return the generated message classes, building their descriptors once."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_FILE_NAME)
    except KeyError:
        pool.Add(_file_descriptor())
    names = ("PrometheusConfig", "MonitoringConfig")
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in names
    }
    return {**classes, "BatchingParameters": session_bundle_config_pb2.BatchingParameters}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE_NAME, package="tensorflow.serving", syntax="proto3",
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _FIELD.TYPE_BOOL)
    _field(prometheus, "path", 2, _FIELD.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    _field(monitoring, "prometheus_config", 1, _FIELD.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    return proto


def read_text_proto(path: str, message):
    """Return `message` filled from the text-format file at `path`, as ParseProtoTextFile does.

    A file that cannot be read is TF's IOError ('NOT_FOUND: <path>; No such file or
    directory'); one that does not parse logs protobuf's complaint ('Error parsing
    text-format tensorflow.serving.X: line:column: ...') and is INVALID_ARGUMENT
    "Invalid protobuf file: '<path>'".
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        code = grpc.StatusCode.NOT_FOUND if error.errno == errno.ENOENT else grpc.StatusCode.UNKNOWN
        raise errors.ServingError(code, f"{path}; {error.strerror}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        detail = re.sub(r"^(\d+):(\d+) : ", r"\1:\2: ", str(error))
        log.error("Error parsing text-format %s: %s", message.DESCRIPTOR.full_name, detail)
        raise errors.invalid_argument(f"Invalid protobuf file: '{path}'") from None
    return message


def message_class(message_name: str) -> type:
    """Return the class of tensorflow.serving.<message_name> (MonitoringConfig, BatchingParameters)."""
    return _classes()[message_name]


def parse_text_file(path: str, message_name: str):
    """Return the text-format file at `path` parsed as tensorflow.serving.<message_name>."""
    return read_text_proto(path, message_class(message_name)())
