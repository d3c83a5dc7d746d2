"""JSON request documents and values -> numpy arrays, with RapidJSON's rules and messages.

TF Serving parses REST bodies with RapidJSON (NaN/Infinity allowed, trailing bytes after the
document ignored) and converts each value with its Is*() type tests (util/json_tensor.cc).
Numeric tensors take a numpy fast path; whenever numpy alone cannot prove a value
well-formed, the exact element-by-element path runs and produces TF Serving's message.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import orjson
from tensorflow.core.framework import types_pb2

from serving.codec import MAX_ARRAY_RANK, dtype_name, numpy_dtype
from serving.server.core import errors
from serving.server.rest_api import json_reader
from serving.server.rest_api.json_writer import debug_string

_INT_RANGES = {
    types_pb2.DT_INT32: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT16: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT8: (-(2**31), 2**31 - 1),
    types_pb2.DT_UINT8: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_FLOATS = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)


def value_error(value, detail: str) -> errors.ServingError:
    """Return INVALID_ARGUMENT quoting a JSON value as TF Serving does: 'JSON Value: <v> ...'."""
    return errors.invalid_argument(f"JSON Value: {debug_string(value)} {detail}")


def parse_document(body: bytes) -> dict:
    """Return the request's top-level JSON object, or TF Serving's parse error.

    orjson parses strict JSON fast; anything it refuses (NaN/Infinity, trailing bytes, deep
    nesting, bytes that are not UTF-8, malformed text) goes to `json_reader`, which accepts
    and rejects exactly what RapidJSON does, with its messages.
    """
    if not body:
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = json_reader.parse(body)
    if not isinstance(document, dict):
        raise value_error(document, "Is not object")
    return document


def signature_name_of(document: dict) -> str:
    """Return the optional "signature_name" ('' when absent), which must be a string."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise value_error(document, "not formatted correctly. 'signature_name' key must be a string "
                                    "value.")
    return name


def _type_error(value, dtype: int) -> errors.ServingError:
    return value_error(value, f"Type: {json_type(value)} is not of expected type: "
                              f"{dtype_name(dtype)}")


def json_type(value) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def is_base64_object(value) -> bool:
    """Return whether `value` is {"b64": "<string>"} and nothing else."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_base64(value) -> bytes:
    """Return the bytes of a {"b64": ...} object, or TF Serving's errors."""
    if not is_base64_object(value):
        raise value_error(value, "not formatted correctly for base64 data")
    text = value["b64"]
    # absl::Base64Unescape: the standard alphabet, padding optional.
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument("Unable to base64 decode") from None


def _scalar(value, dtype: int):
    """Return one leaf converted for `dtype`, applying RapidJSON's Is*() type tests."""
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, dict):
            return decode_base64(value)
        raise _type_error(value, dtype)
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_BOOL:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype in _FLOATS:
        return float(value)
    bounds = _INT_RANGES.get(dtype)
    if bounds is None:
        raise errors.unimplemented(
            f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}"
        )
    if not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise _type_error(value, dtype)
    return value


def dense_shape(value) -> list[int]:
    """Return the shape implied by following the first element of each nested list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_ARRAY_RANK:
            raise errors.invalid_argument(f"JSON value nests lists deeper than {MAX_ARRAY_RANK} levels")
        if not value:
            break
        value = value[0]
    return shape


def _fill_leaves(value, level: int, shape: list[int], dtype: int, leaves: list) -> None:
    """Append the leaves of `value` to `leaves`, validating it is dense with `shape`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise value_error(
                value, f"found at incorrect level: {level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        leaves.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise errors.invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}"
        )
    if len(value) != shape[level]:
        raise errors.invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill_leaves(item, level + 1, shape, dtype, leaves)


def fast_array(value, dtype: int, lenient_types: bool) -> np.ndarray | None:
    """Return `value` as an array when numpy alone can prove it valid for `dtype`, else None.

    `lenient_types` says the body may hold true/false somewhere; numpy would silently turn
    them into numbers, so numeric dtypes then take the exact path.
    """
    if dtype == types_pb2.DT_STRING or (lenient_types and dtype != types_pb2.DT_BOOL):
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    kind = array.dtype.kind
    if dtype == types_pb2.DT_BOOL:
        return array if kind == "b" else None
    if dtype in _FLOATS and kind in "if":
        with np.errstate(over="ignore"):  # out-of-range doubles become +-inf, as GetFloat() does
            return array.astype(numpy_dtype(dtype))
    bounds = _INT_RANGES.get(dtype)
    if bounds is None or kind not in "iu" or array.size == 0:  # "u": past int64, into uint64
        return None
    if array.min() < bounds[0] or array.max() > bounds[1]:
        return None
    return array.astype(numpy_dtype(dtype))


def json_to_array(value, dtype: int, lenient_types: bool = True) -> np.ndarray:
    """Return one JSON tensor (scalar, nested list, or b64 object) as a numpy array."""
    shape = dense_shape(value)
    fast = fast_array(value, dtype, lenient_types)
    if fast is not None and list(fast.shape) == shape:
        return fast
    leaves: list = []
    _fill_leaves(value, 0, shape, dtype, leaves)
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    # Values past the dtype's range wrap as TF's int_val -> uint8/int8/int16 casts do; uint64
    # values may lie past int64's.
    wide = np.uint64 if dtype == types_pb2.DT_UINT64 else np.int64 if dtype in _INT_RANGES else None
    return np.array(leaves, dtype=wide).astype(numpy_dtype(dtype)).reshape(shape)
