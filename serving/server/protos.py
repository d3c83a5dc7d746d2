"""MonitoringConfig and BatchingParameters, which the tensorflow-serving-api wheel lacks.

TF Serving reads both from text-format files (--monitoring_config_file,
--batching_parameters_file). The message types are declared here with the same package,
names, field numbers and types as tensorflow_serving/config/monitoring_config.proto and
servables/tensorflow/session_bundle_config.proto, so the same files parse identically.
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
    wrappers_pb2,  # noqa: F401  (registers google/protobuf/wrappers.proto)
)

from serving.server.core import errors

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
    names = ("PrometheusConfig", "MonitoringConfig", "BatchingParameters")
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in names
    }


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE_NAME, package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _FIELD.TYPE_BOOL)
    _field(prometheus, "path", 2, _FIELD.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    _field(monitoring, "prometheus_config", 1, _FIELD.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    batching = proto.message_type.add(name="BatchingParameters")
    int64_value, string_value = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    for name, number, type_name in (
        ("max_batch_size", 1, int64_value),
        ("batch_timeout_micros", 2, int64_value),
        ("max_enqueued_batches", 3, int64_value),
        ("num_batch_threads", 4, int64_value),
        ("thread_pool_name", 5, string_value),
        ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, int64_value),
    ):
        _field(batching, name, number, _FIELD.TYPE_MESSAGE, type_name)
    _field(batching, "allowed_batch_sizes", 6, _FIELD.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _FIELD.TYPE_BOOL)
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
