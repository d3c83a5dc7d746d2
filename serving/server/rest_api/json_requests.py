"""REST request bodies -> tensors and Example protos, following util/json_tensor.cc.

:predict takes row ("instances") or columnar ("inputs") tensors; :classify and :regress
take "examples" (and an optional shared "context") turned into tf.Example protos.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2

from serving.server.core import errors
from serving.server.rest_api.json_values import (
    decode_base64,
    dense_shape,
    fast_array,
    is_base64_object,
    json_to_array,
    json_type,
    parse_document,
    signature_name_of,
    value_error,
)
from serving.server.rest_api.json_writer import debug_string

TensorInfoMap = Mapping[str, meta_graph_pb2.TensorInfo]


def _is_named(value) -> bool:
    """Return whether an "instances" element is an object of named inputs (not b64 data)."""
    return isinstance(value, dict) and not is_base64_object(value)


def _instance_tensor(items: list, dtype: int, lenient: bool) -> np.ndarray:
    """Return the batched tensor of one input across all instances (AddInstanceItem)."""
    fast = fast_array(items, dtype, lenient)
    first_shape = dense_shape(items[0])
    if fast is not None and list(fast.shape) == [len(items), *first_shape]:
        return fast
    arrays: list[np.ndarray] = []
    for item in items:
        array = json_to_array(item, dtype, lenient)
        if arrays:
            _check_like_first(arrays[0], array)
        arrays.append(array)
    return np.stack(arrays)


def _check_like_first(first: np.ndarray, array: np.ndarray) -> None:
    if array.size != first.size:
        raise errors.invalid_argument(f"Expecting tensor size: {first.size} but got: {array.size}")
    if array.shape != first.shape:
        raise errors.invalid_argument(
            f"Expecting shape {errors.shape_string(first.shape)} but got: {errors.shape_string(array.shape)}"
        )


def _instances(instances: list, infos: TensorInfoMap, lenient: bool) -> dict[str, np.ndarray]:
    """Return the input tensors of a row-format ("instances") request.

    Tensors are built one input at a time (fast); only when that fails does
    `_instances_error` walk the request in TF Serving's order to report its first error.
    """
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    named, names = _is_named(instances[0]), sorted(infos)
    if all(_is_named(element) == named and (not named or sorted(element) == names) for element in instances):
        try:
            if not named:
                name = next(iter(infos))
                return {name: _instance_tensor(instances, infos[name].dtype, lenient)}
            return {name: _instance_tensor([element[name] for element in instances], infos[name].dtype,
                                           lenient) for name in names}
        except errors.ServingError as error:
            raise _instances_error(instances, infos, lenient) or error from None
    raise _instances_error(instances, infos, lenient)  # finds the element that does not fit


def _instances_error(instances: list, infos: TensorInfoMap, lenient: bool) -> errors.ServingError | None:
    """Return the error TF Serving reports for a bad "instances" list (None if it finds none).

    FillTensorMapFromInstancesList converts element after element and, inside an object,
    member after member in document order, so that order decides which error is reported.
    """
    named = _is_named(instances[0])
    firsts: dict[str, np.ndarray] = {}
    for index, element in enumerate(instances):
        if named != _is_named(element):
            found, expected = ("list", "object") if named else ("object", "value/list")
            return errors.invalid_argument(f"Expecting {expected} but got {found} at item {index} of input list")
        members = element.items() if named else [(next(iter(infos)), element)]
        for name, value in members:
            try:
                _add_instance_item(name, value, infos, firsts, lenient)
            except errors.ServingError as error:
                where = f"{index} key: {name}" if named else f"{index}"
                return errors.invalid_argument(
                    f"Failed to process element: {where} of 'instances' list. Error: {error.status_string()}"
                )
        if named and sorted(element) != sorted(infos):
            return errors.invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{debug_string(element)} keys must be equal to: {','.join(sorted(infos))}"
            )
    return None


def _add_instance_item(name: str, value, infos: TensorInfoMap, firsts: dict, lenient: bool) -> None:
    """Convert one input of one instance, checking it against that input's first instance."""
    if name not in infos:
        raise errors.invalid_argument(f"JSON object: does not have named input: {name}")
    array = json_to_array(value, infos[name].dtype, lenient)
    if name in firsts:
        _check_like_first(firsts[name], array)
    else:
        firsts[name] = array


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
        raise value_error(document, "Not formatted correctly expecting only one of 'inputs' or "
                                    "'instances' keys to exist ")
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise value_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise value_error(document, "No values in 'instances' array")
        return signature_name, _instances(instances, infos, lenient), True
    if "inputs" in document:
        return signature_name, _columnar(document["inputs"], infos, lenient), False
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


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
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
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
        raise errors.invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def parse_examples(body: bytes) -> tuple[str, input_pb2.Input]:
    """Return (signature_name, Input proto) for a :classify or :regress body.

    TF Serving's message for a missing "examples" says "classify" for :regress too.
    """
    document = parse_document(body)
    signature_name = signature_name_of(document)
    model_input = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        example_from_json(document["context"], model_input.example_list_with_context.context)
    examples = document.get("examples")
    if "examples" not in document:
        raise value_error(document, "When method is classify, key 'examples' is expected and was "
                                    "not found")
    if not isinstance(examples, list):
        raise value_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise value_error(document, "'examples' value is an empty array")
    target = (model_input.example_list_with_context if has_context else model_input.example_list)
    for value in examples:
        example_from_json(value, target.examples.add())
    return signature_name, model_input
