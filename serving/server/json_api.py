"""REST JSON <-> tensors, tf.Example protos and results, following util/json_tensor.cc.

Requests: row ("instances") or columnar ("inputs") tensors, `{"b64": ...}` for binary
strings, "examples"/"context" for classify and regress. Responses: "predictions" or
"outputs" (matching the request format) and "results", laid out by `json_writer`.
Numeric tensors take a numpy fast path; whenever it cannot prove the input well-formed,
the exact element-by-element path runs and produces TF Serving's error message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping

import numpy as np
import orjson
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2

from serving.server import errors
from serving.server.json_writer import PrettyWriter, debug_string, format_floats, quote
from serving.server.tensors import MAX_RANK, dtype_name, numpy_dtype

TensorInfoMap = Mapping[str, meta_graph_pb2.TensorInfo]

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
# Python's json messages mapped onto RapidJSON's GetParseError_En wording.
_PARSE_ERRORS = (
    ("Expecting value", "Invalid value."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':'", "Missing a colon after a name of object member."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
)


# ---------------------------------------------------------------------------------- parsing
def parse_document(body: bytes) -> dict:
    """Return the request's top-level JSON object, or TF Serving's parse error.

    Like RapidJSON with kParseNanAndInfFlag and kParseStopWhenDoneFlag, NaN/Infinity are
    accepted and anything after the first complete value is ignored.
    """
    if not body:
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = _lenient_parse(body)
    if not isinstance(document, dict):
        raise errors.invalid_argument(f"JSON Value: {debug_string(document)} Is not object")
    return document


def _lenient_parse(body: bytes):
    text = body.decode("utf-8", "surrogateescape")
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    if not stripped:
        raise errors.invalid_argument(f"JSON Parse error: The document is empty. at offset: {offset}")
    try:
        document, _ = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as error:
        message = next((rapid for python, rapid in _PARSE_ERRORS if error.msg.startswith(python)),
                       "Missing a comma or a closing bracket.")
        raise errors.invalid_argument(
            f"JSON Parse error: {message} at offset: {offset + error.pos}"
        ) from None
    except RecursionError:
        raise errors.invalid_argument(
            "JSON Parse error: The document is nested too deeply. at offset: 0"
        ) from None
    return document


def signature_name_of(document: dict) -> str:
    """Return the optional "signature_name" ('' when absent), which must be a string."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def _type_error(value, dtype: int) -> errors.ServingError:
    return errors.invalid_argument(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} is not of expected type: "
        f"{dtype_name(dtype)}"
    )


def _json_type(value) -> str:
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
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
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
        if len(shape) > MAX_RANK:
            raise errors.invalid_argument(f"JSON value nests lists deeper than {MAX_RANK} levels")
        if not value:
            break
        value = value[0]
    return shape


def _fill_leaves(value, level: int, shape: list[int], dtype: int, leaves: list) -> None:
    """Append the leaves of `value` to `leaves`, validating it is dense with `shape`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise errors.invalid_argument(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {rank}"
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


def _fast_array(value, dtype: int, lenient_types: bool) -> np.ndarray | None:
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
    if bounds is None or kind != "i" or array.size == 0:
        return None
    if array.min() < bounds[0] or array.max() > bounds[1]:
        return None
    return array.astype(numpy_dtype(dtype))


def json_to_array(value, dtype: int, lenient_types: bool = True) -> np.ndarray:
    """Return one JSON tensor (scalar, nested list, or b64 object) as a numpy array."""
    shape = dense_shape(value)
    fast = _fast_array(value, dtype, lenient_types)
    if fast is not None and list(fast.shape) == shape:
        return fast
    leaves: list = []
    _fill_leaves(value, 0, shape, dtype, leaves)
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array.reshape(shape)
    # Values past the dtype's range wrap as TF's int_val -> uint8/int8/int16 casts do.
    return np.array(leaves, dtype=np.int64 if dtype in _INT_RANGES else None).astype(
        numpy_dtype(dtype)
    ).reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _instance_tensor(name: str, items: list, dtype: int, lenient: bool) -> np.ndarray:
    """Return the batched tensor of one input across all instances (AddInstanceItem)."""
    fast = _fast_array(items, dtype, lenient)
    first_shape = dense_shape(items[0])
    if fast is not None and list(fast.shape) == [len(items), *first_shape]:
        return fast
    arrays, size, shape = [], None, None
    for item in items:
        array = json_to_array(item, dtype, lenient)
        if size is None:
            size, shape = array.size, array.shape
        elif array.size != size:
            raise errors.invalid_argument(f"Expecting tensor size: {size} but got: {array.size}")
        elif array.shape != shape:
            raise errors.invalid_argument(
                f"Expecting shape {_shape_text(shape)} but got: {_shape_text(array.shape)}"
            )
        arrays.append(array)
    return np.stack(arrays)


def _instances(instances: list, infos: TensorInfoMap, lenient: bool) -> dict[str, np.ndarray]:
    """Return the input tensors of a row-format ("instances") request."""
    def is_named(value):
        return isinstance(value, dict) and not is_base64_object(value)

    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    named = is_named(instances[0])
    names = sorted(infos)
    for index, element in enumerate(instances):
        if named and not is_named(element):
            raise errors.invalid_argument(f"Expecting object but got list at item {index} of input list")
        if not named and is_named(element):
            raise errors.invalid_argument(
                f"Expecting value/list but got object at item {index} of input list"
            )
        if named:
            for key in element:
                if key not in infos:
                    raise errors.invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                    )
            if sorted(element) != names:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(element)} keys must be equal to: {','.join(names)}"
                )
    if not named:
        name = next(iter(infos))
        return {name: _wrap_element_error(name, instances, infos[name].dtype, lenient, None)}
    return {
        name: _wrap_element_error(name, [element[name] for element in instances],
                                  infos[name].dtype, lenient, name)
        for name in names
    }


def _wrap_element_error(name, items, dtype, lenient, key) -> np.ndarray:
    """Return the batched tensor, prefixing errors with the failing element as TF does."""
    try:
        return _instance_tensor(name, items, dtype, lenient)
    except errors.ServingError as error:
        index = _first_bad_element(items, dtype, lenient)
        where = f"{index} key: {key}" if key is not None else f"{index}"
        raise errors.invalid_argument(
            f"Failed to process element: {where} of 'instances' list. Error: {error.status_string()}"
        ) from None


def _first_bad_element(items, dtype, lenient) -> int:
    size = shape = None
    for index, item in enumerate(items):
        try:
            array = json_to_array(item, dtype, lenient)
        except errors.ServingError:
            return index
        if size is None:
            size, shape = array.size, array.shape
        elif array.size != size or array.shape != shape:
            return index
    return len(items) - 1


def _columnar(inputs, infos: TensorInfoMap, lenient: bool) -> dict[str, np.ndarray]:
    """Return the input tensors of a columnar ("inputs") request."""
    if not isinstance(inputs, dict) or is_base64_object(inputs):
        if len(infos) > 1:
            raise errors.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        name = next(iter(infos))
        return {name: json_to_array(inputs, infos[name].dtype, lenient)}
    tensors = {}
    for name in sorted(infos):
        if name not in inputs:
            raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = json_to_array(inputs[name], infos[name].dtype, lenient)
    return tensors


def parse_predict(
    body: bytes, input_infos: Callable[[str], TensorInfoMap]
) -> tuple[str, dict[str, np.ndarray], bool]:
    """Return (signature_name, input arrays, row_format) for a :predict body.

    `input_infos(signature_name)` returns the signature's input TensorInfos (or raises).
    """
    document = parse_document(body)
    signature_name = signature_name_of(document)
    infos = input_infos(signature_name)
    if not infos:
        raise errors.invalid_argument(
            f"Failed to get input map for signature: {signature_name or 'DEFAULT'}"
        )
    lenient = b"true" in body or b"false" in body
    if "instances" in document and "inputs" in document:
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(document)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise errors.invalid_argument(
                f"JSON Value: {debug_string(document)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise errors.invalid_argument(
                f"JSON Value: {debug_string(document)} No values in 'instances' array"
            )
        return signature_name, _instances(instances, infos, lenient), True
    if "inputs" in document:
        return signature_name, _columnar(document["inputs"], infos, lenient), False
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


# -------------------------------------------------------------------- classify and regress
def _feature_kind_error(name: str, feature: feature_pb2.Feature) -> errors.ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind"), "UNKNOWN"
    )
    return errors.invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_feature_value(value, name: str, feature: feature_pb2.Feature) -> None:
    """Append one JSON value to a Feature, choosing its kind as json_tensor.cc does."""
    kind = feature.WhichOneof("kind")

    def require(wanted: str):
        if kind not in (None, wanted):
            raise _feature_kind_error(name, feature)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_base64_object(value)):
        raise errors.invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    if isinstance(value, bool):
        require("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        require("bytes_list")
        feature.bytes_list.value.append(decode_base64(value))
    elif isinstance(value, str):
        require("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", "surrogateescape"))
    elif isinstance(value, float) or value >= 2**64 or value < -(2**63):
        require("float_list")
        feature.float_list.value.append(float(value))
    else:
        require("int64_list")
        if value >= 2**63:
            raise errors.invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        feature.int64_list.value.append(value)


def example_from_json(value, example: example_pb2.Example) -> None:
    """Fill a tf.Example from a JSON object of feature name -> value or list of values."""
    if not isinstance(value, dict):
        raise errors.invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def parse_examples(body: bytes, method: str) -> tuple[str, input_pb2.Input]:
    """Return (signature_name, Input proto) for a :classify or :regress body."""
    document = parse_document(body)
    signature_name = signature_name_of(document)
    model_input = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        example_from_json(document["context"], model_input.example_list_with_context.context)
    examples = document.get("examples")
    if "examples" not in document:
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(document)} When method is {method}, key 'examples' is "
            "expected and was not found"
        )
    if not isinstance(examples, list):
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(document)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise errors.invalid_argument(
            f"JSON Value: {debug_string(document)} 'examples' value is an empty array"
        )
    target = (model_input.example_list_with_context if has_context else model_input.example_list)
    for value in examples:
        example_from_json(value, target.examples.add())
    return signature_name, model_input


# -------------------------------------------------------------------------------- responses
_BYTES_SUFFIX = "_bytes"
_INT_KINDS = "iu"


def _leaf_tokens(name: str, array: np.ndarray) -> list[bytes]:
    """Return the JSON tokens of every element of `array`, flattened in row-major order."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype in (np.float32, np.float64):
        return [text.encode() for text in format_floats(array)]
    if kind == "b":
        return [b"true" if value else b"false" for value in array.ravel().tolist()]
    if kind in _INT_KINDS and array.dtype != np.uint16:
        return [str(value).encode() for value in array.ravel().tolist()]
    if kind == "O":
        values = array.ravel().tolist()
        if name.endswith(_BYTES_SUFFIX):
            return [b'{"b64": "' + base64.b64encode(value) + b'"}' for value in values]
        return [quote(value) for value in values]
    raise errors.invalid_argument(
        f"Failed to write JSON value for tensor type: {_numpy_type_name(array)}"
    )


def _numpy_type_name(array: np.ndarray) -> str:
    names = {"float16": "half", "complex64": "complex64", "complex128": "complex128"}
    return names.get(array.dtype.name, array.dtype.name)


def _write_tensor(writer: PrettyWriter, tokens: list[bytes], shape: tuple, dim: int, offset: int) -> int:
    """Write tokens[offset:] nested by shape[dim:] (AddTensorValues); return the new offset."""
    if dim >= len(shape):
        writer.raw(tokens[offset])
        return offset + 1
    writer.start_array()
    if dim == len(shape) - 1:
        writer.scalars(tokens[offset : offset + shape[dim]])
        offset += shape[dim]
    else:
        for _ in range(shape[dim]):
            offset = _write_tensor(writer, tokens, shape, dim + 1, offset)
    writer.end_array()
    return offset


def _b64_object_token(writer: PrettyWriter, token: bytes) -> None:
    """Write a {"b64": ...} value with PrettyWriter's object layout (it is not single-line)."""
    writer.start_object()
    writer.key("b64")
    writer.raw(token[len(b'{"b64": ') : -1])
    writer.end_object()


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """Return the :predict response body ("predictions" or "outputs"), TF Serving's layout."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    tokens = {name: _leaf_tokens(name, np.asarray(outputs[name])) for name in names}
    writer = _TensorWriter()
    writer.start_object()
    if row_format:
        _write_rows(writer, outputs, names, tokens)
    else:
        writer.key("outputs")
        multiple = len(names) > 1
        if multiple:
            writer.start_object()
        for name in names:
            if multiple:
                writer.key(name)
            writer.tensor(tokens[name], outputs[name].shape, 0, 0)
        if multiple:
            writer.end_object()
    writer.end_object()
    return writer.getvalue()


def _write_rows(writer, outputs, names, tokens) -> None:
    batch_size = None
    for name in names:
        shape = outputs[name].shape
        if not shape:
            raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and shape[0] != batch_size:
            raise errors.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch_size}"
            )
        batch_size = shape[0]
    writer.key("predictions")
    writer.start_array()
    multiple = len(names) > 1
    offsets = dict.fromkeys(names, 0)
    for _ in range(batch_size):
        if multiple:
            writer.start_object()
        writer.single_line_arrays = True
        for name in names:
            if multiple:
                writer.key(name)
            offsets[name] = writer.tensor(tokens[name], outputs[name].shape, 1, offsets[name])
        writer.single_line_arrays = False
        if multiple:
            writer.end_object()
    writer.end_array()


class _TensorWriter(PrettyWriter):
    """PrettyWriter that writes tensors, expanding b64 tokens into real objects."""

    def tensor(self, tokens: list[bytes], shape: tuple, dim: int, offset: int) -> int:
        if tokens and tokens[0].startswith(b"{"):
            return self._b64_tensor(tokens, shape, dim, offset)
        return _write_tensor(self, tokens, shape, dim, offset)

    def _b64_tensor(self, tokens, shape, dim, offset) -> int:
        if dim >= len(shape):
            _b64_object_token(self, tokens[offset])
            return offset + 1
        self.start_array()
        for _ in range(shape[dim]):
            offset = self._b64_tensor(tokens, shape, dim + 1, offset)
        self.end_array()
        return offset


def classify_response(result) -> bytes:
    """Return the :classify body: {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line_arrays = True
        writer.start_array()
        scores = np.array([entry.score for entry in classifications.classes], dtype=np.float32)
        for entry, score in zip(classifications.classes, format_floats(scores)):
            writer.start_array()
            writer.string(entry.label)
            writer.raw(score.encode())
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return writer.getvalue()


def regress_response(result) -> bytes:
    """Return the :regress body: {"results": [value, ...]}."""
    if not result.regressions:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = np.array([regression.value for regression in result.regressions], dtype=np.float32)
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True
    writer.start_array()
    writer.scalars([text.encode() for text in format_floats(values)])
    writer.end_array()
    writer.end_object()
    return writer.getvalue()
