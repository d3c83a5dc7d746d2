"""TF Serving statuses: a gRPC status code plus the message TF Serving would give.

Every failure that reaches a client is a `ServingError`; the REST layer maps its code to an
HTTP status exactly as TF Serving's http_server.cc does.
"""

from __future__ import annotations

import functools
import re

import grpc

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# TF Serving truncates gRPC error messages (model_servers/grpc_status_util.cc).
_GRPC_MESSAGE_LIMIT = 1024


class ServingError(Exception):
    """A non-OK TF Serving status; `code` is a grpc.StatusCode, `message` the detail."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """Return the HTTP status TF Serving's REST API answers with for this code."""
        return _HTTP_STATUS.get(self.code, 500)

    @property
    def code_name(self) -> str:
        """Return the canonical code name, e.g. 'INVALID_ARGUMENT'."""
        return self.code.name

    def grpc_message(self) -> str:
        """Return the message as TF Serving sends it over gRPC (truncated past 1024 chars)."""
        if len(self.message) > _GRPC_MESSAGE_LIMIT:
            return self.message[:_GRPC_MESSAGE_LIMIT] + "...TRUNCATED"
        return self.message

    def status_string(self) -> str:
        """Return the status as absl::Status::ToString() prints it: 'CODE: message'."""
        return f"{self.code_name}: {self.message}"


# One constructor per status code the server raises: errors.invalid_argument("message").
invalid_argument = functools.partial(ServingError, grpc.StatusCode.INVALID_ARGUMENT)
not_found = functools.partial(ServingError, grpc.StatusCode.NOT_FOUND)
failed_precondition = functools.partial(ServingError, grpc.StatusCode.FAILED_PRECONDITION)
unavailable = functools.partial(ServingError, grpc.StatusCode.UNAVAILABLE)
unimplemented = functools.partial(ServingError, grpc.StatusCode.UNIMPLEMENTED)
unknown = functools.partial(ServingError, grpc.StatusCode.UNKNOWN)
internal = functools.partial(ServingError, grpc.StatusCode.INTERNAL)


def shape_string(shape) -> str:
    """Return a shape as TF's messages write it (TensorShape::DebugString): '[2,28,28,1]'."""
    return "[" + ",".join(str(size) for size in shape) + "]"


def code_from_number(number: int) -> grpc.StatusCode:
    """Return the grpc.StatusCode for a canonical code number (TF and gRPC share them)."""
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_exception(error: BaseException) -> ServingError:
    """Return `error` as a ServingError, keeping TensorFlow's own status code if it has one.

    TensorFlow raises OpError subclasses carrying the canonical code (InvalidArgumentError is
    3, and so on); anything else is an UNKNOWN status, as TF Serving reports a failed Session.
    """
    if isinstance(error, ServingError):
        return error
    error_code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if isinstance(error_code, int):
        return ServingError(code_from_number(error_code), kernel_message(message))
    return ServingError(grpc.StatusCode.UNKNOWN, message)


# What Python's eager runtime wraps around a kernel's status: a header, the Python stack
# where the failing op was defined, and the op that ran.
_GRAPH_ERROR_HEADER = "Graph execution error:"
_DETECTED_AT = re.compile(r"^Detected at node .* \(most recent call last\):$")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]( name: .*)?$")


def kernel_message(message: str) -> str:
    """Return a TensorFlow error message as the Session in TF Serving reports it.

    Drops what Python adds: 'Graph execution error:', the 'Detected at node ...' stack
    (server file paths), and the trailing ' [Op:__inference_...]'.
    """
    message = _OP_SUFFIX.sub("", message)
    if not message.startswith(_GRAPH_ERROR_HEADER):
        return message
    kept, in_stack = [], False
    for line in message[len(_GRAPH_ERROR_HEADER):].split("\n"):
        if _DETECTED_AT.match(line):
            in_stack = True
        elif in_stack and (not line or line.startswith("  ") or line == "<stack traces unavailable>"):
            continue
        else:
            in_stack = False
            kept.append(line)
    return "\n".join(kept).strip("\n")
