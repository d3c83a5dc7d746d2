"""RapidJSON-exact parsing and error text, checked against RapidJSON 1.1.0 itself.

The expected messages and offsets below are what RapidJSON 1.1.0 (TF Serving's version)
reports when parsing with TF Serving's flags (iterative, NaN/Inf, stop when done).
"""

from __future__ import annotations

import math

import pytest
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.server.core.errors import ServingError
from serving.server.rest_api import json_reader, json_requests
from serving.server.rest_api.json_values import parse_document
from serving.server.rest_api.json_writer import debug_string


def parse_error(body: bytes) -> str:
    with pytest.raises(ServingError) as raised:
        json_reader.parse(body)
    assert raised.value.code_name == "INVALID_ARGUMENT"
    return raised.value.message


@pytest.mark.parametrize("body, message", [
    (b"instances = [1, 2]", "Invalid value. at offset: 0"),
    (b'{"instances": [1,}', "Invalid value. at offset: 17"),
    (b'{"instances": [1,2', "Missing a comma or ']' after an array element. at offset: 18"),
    (b"   ", "The document is empty. at offset: 3"),
    (b"]", "The document is empty. at offset: 0"),
    (b'{"instances": [1] "x": 2}', "Missing a comma or '}' after an object member. at offset: 18"),
    (b'{"instances" [1]}', "Missing a colon after a name of object member. at offset: 13"),
    (b"{'instances': [1]}", "Missing a name for object member. at offset: 1"),
    (b'{"instances": [01]}', "Missing a comma or ']' after an array element. at offset: 16"),
    (b'{"instances": [1.]}', "Miss fraction part in number. at offset: 17"),
    (b'{"instances": [1e+]}', "Miss exponent in number. at offset: 18"),
    (b'{"instances": [-x]}', "Invalid value. at offset: 16"),
    (b'{"instances": [Infin]}', "Invalid value. at offset: 20"),
    (b'{"instances": [1e309]}', "Number too big to be stored in double. at offset: 15"),
    (b'{"a": "\\ud800"}', "The surrogate pair in string is invalid. at offset: 7"),
    (b'{"a": "\\u12"}', "Incorrect hex digit after \\u escape in string. at offset: 7"),
    (b'{"a": "\\x"}', "Invalid escape character in string. at offset: 7"),
    (b'{"a": "abc', "Missing a closing quotation mark in string. at offset: 10"),
    (b'{"a": "a\x01"}', "Invalid escape character in string. at offset: 8"),
    (b'{"a": tru}', "Invalid value. at offset: 9"),
    (b'{"a":1,}', "Missing a name for object member. at offset: 7"),
    (b'{"a": [1, 2]\x00, "b": 1}', "Missing a comma or '}' after an object member. at offset: 12"),
    (b'\xef\xbb\xbf{"a": [1,]}', "Invalid value. at offset: 12"),
])
def test_malformed_json_gets_rapidjson_message_and_offset(body, message):
    assert parse_error(body) == f"JSON Parse error: {message}"


def test_values_are_typed_as_rapidjson_types_them():
    parsed = json_reader.parse(
        b'{"f": [NaN, -NaN, Inf, -Inf, Infinity, -Infinity, 1.5, -0.0, 1e2], '
        b'"i": [-0, 18446744073709551615, -9223372036854775808], '
        b'"d": [18446744073709551616, -9223372036854775809], "s": "\xff\\udc00\\u00e9"} trailing'
    )
    floats = parsed["f"]
    assert math.isnan(floats[0]) and math.isnan(floats[1])
    assert floats[2:] == [math.inf, -math.inf, math.inf, -math.inf, 1.5, -0.0, 100.0]
    assert all(isinstance(value, float) for value in floats)
    assert parsed["i"] == [0, 2**64 - 1, -(2**63)] and all(isinstance(v, int) for v in parsed["i"])
    assert all(isinstance(value, float) for value in parsed["d"])  # past 64 bits: doubles
    assert parsed["s"].encode("utf-8", "surrogateescape") == b"\xff\xed\xb0\x80\xc3\xa9"


def test_deep_nesting_parses_iteratively_up_to_the_depth_limit():
    depth = json_reader.MAX_DEPTH - 1
    deep = b'{"instances": [1], "nested": ' + b"[" * depth + b"]" * depth + b"}"
    assert parse_document(deep)["instances"] == [1]
    malformed = b'{"signature_name": ' + b"[" * depth + b"]" * depth + b"}"
    infos = {"x": meta_graph_pb2.TensorInfo(dtype=types_pb2.DT_INT32)}
    with pytest.raises(ServingError, match="'signature_name' key must be a string value"):
        json_requests.parse_predict(malformed, lambda signature: infos)
    # RapidJSON would read on; no request can use such a document, so it is refused early.
    deeper = b'{"instances": [1], "nested": ' + b"[" * 500_000 + b"]" * 500_000 + b"}"
    with pytest.raises(ServingError, match="Nesting deeper than 1024 levels. at offset: 1052"):
        parse_document(deeper)


@pytest.mark.parametrize("value, text", [
    (1e-05, "0.00001"), (1e-07, "1e-7"), (1e17, "100000000000000000.0"), (1e22, "1e22"),
    (1.5e300, "1.5e300"), (-0.0, "-0.0"), (2.5, "2.5"), (100.0, "100.0"), (5e-324, "5e-324"),
])
def test_debug_strings_write_doubles_like_rapidjson(value, text):
    assert debug_string(value) == text


def test_debug_strings_stop_at_non_finite_numbers_and_after_256_bytes():
    assert debug_string([1, math.nan, 2]) == "[1, "
    long = debug_string({"instances": list(range(1000))})
    assert long.startswith('{\n    "instances": [0, 1, 2') and len(long) == 256
    assert not long.endswith("]")


def predict_error(body: str, **dtypes) -> str:
    infos = {name: meta_graph_pb2.TensorInfo(dtype=dtype) for name, dtype in dtypes.items()}
    with pytest.raises(ServingError) as raised:
        json_requests.parse_predict(body.encode(), lambda signature: infos)
    return raised.value.message


def test_instances_errors_come_in_tf_serving_order():
    two = {"a": types_pb2.DT_INT32, "b": types_pb2.DT_INT32}
    # Members are converted in document order, before the keys are compared.
    assert predict_error('{"instances": [{"a": "bad", "c": 1}]}', **two).startswith(
        "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "bad" Type: String')
    # Element 0 is checked completely before element 1.
    assert predict_error('{"instances": [{"a": 1, "b": "x"}, {"a": "y", "c": 2}]}', **two).startswith(
        "Failed to process element: 0 key: b of 'instances' list.")
    assert predict_error('{"instances": [{"a": 1, "b": 2}, {"a": 3}]}', **two) == (
        "Failed to process element: 1 of 'instances' list. JSON object: {\n    \"a\": 3\n} "
        "keys must be equal to: a,b")
    assert predict_error('{"instances": ["x", [2, 3]]}', a=types_pb2.DT_INT32).startswith(
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"x\"")


def test_missing_examples_message_says_classify_for_regress_too():
    with pytest.raises(ServingError, match="When method is classify, key 'examples' is expected"):
        json_requests.parse_examples(b'{"signature_name": "regress_x_to_y"}')
