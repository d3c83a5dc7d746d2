"""REST JSON <-> tensors, checked against the cases of TF Serving's json_tensor_test.cc."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.server.core.errors import ServingError
from serving.server.rest_api import json_requests, json_responses
from serving.server.rest_api.json_writer import format_float, format_floats


def infos(**dtypes) -> dict:
    return {name: meta_graph_pb2.TensorInfo(dtype=dtype) for name, dtype in dtypes.items()}


def parse(body: str, **dtypes):
    return json_requests.parse_predict(body.encode(), lambda signature: infos(**dtypes))


def error_of(body: str, **dtypes) -> str:
    with pytest.raises(ServingError) as raised:
        parse(body, **dtypes)
    return raised.value.message


# ---------------------------------------------------------------------------------- requests
def test_uint64_values_past_int64_parse():
    # json_tensor.cc: any value for which IsUint64() holds goes to uint64_val.
    _, tensors, _ = parse('{"instances": [9223372036854775808, 18446744073709551615, 1]}',
                          default=types_pb2.DT_UINT64)
    assert tensors["default"].dtype == np.uint64
    assert tensors["default"].tolist() == [2**63, 2**64 - 1, 1]


def test_single_unnamed_tensor_in_rows():
    signature, tensors, row_format = parse('{"instances": [[1,2],[3,4],[5,6]]}', default=types_pb2.DT_INT32)
    assert (signature, row_format) == ("", True)
    assert tensors["default"].dtype == np.int32
    np.testing.assert_array_equal(tensors["default"], [[1, 2], [3, 4], [5, 6]])


def test_mixed_ints_and_floats_for_float_and_trailing_bytes_ignored():
    _, tensors, _ = parse('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}X', default=types_pb2.DT_FLOAT)
    np.testing.assert_array_equal(tensors["default"], np.array([1, 2, 3, 4, 5.003, 0.007, 0], np.float32))
    _, tensors, _ = parse('{"instances": [1435774380]}', default=types_pb2.DT_FLOAT)
    assert tensors["default"][0] == np.float32(1435774380)


def test_nan_infinity_and_huge_values_for_floats():
    _, tensors, _ = parse('{"instances": [NaN, Infinity, -Infinity, 1e308]}', default=types_pb2.DT_FLOAT)
    values = tensors["default"]
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf and values[3] == np.inf


def test_base64_scalars_lists_and_named_columns():
    _, tensors, _ = parse('{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', default=types_pb2.DT_STRING)
    assert tensors["default"].tolist() == [b"hello", b"world"]
    _, tensors, _ = parse('{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', default=types_pb2.DT_STRING)
    assert tensors["default"].tolist() == [[b"hello"], [b"world"]]
    _, tensors, row_format = parse(
        '{"signature_name": "s", "inputs": {"int_tensor": [[1, 2]], "bin_tensor": {"b64": "aGVsbG8="}}}',
        int_tensor=types_pb2.DT_INT32, bin_tensor=types_pb2.DT_STRING,
    )
    assert not row_format
    assert tensors["bin_tensor"].shape == () and tensors["bin_tensor"].item() == b"hello"


def test_multiple_named_tensors_in_rows_are_batched():
    _, tensors, _ = parse(
        '{"instances": [{"i": [[1,2],[3,4]], "s": ["foo", "bar"]}, {"i": [[5,6],[7,8]], "s": ["baz", "bat"]}]}',
        i=types_pb2.DT_INT32, s=types_pb2.DT_STRING,
    )
    assert tensors["i"].shape == (2, 2, 2)
    assert tensors["s"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]


@pytest.mark.parametrize("body, message", [
    ("", "JSON Parse error: The document is empty"),
    ('{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}', "must be a string value"),
    ('{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}', "Not formatted correctly"),
    ('{"instances": [[1,2],[3,4],[5,6,7]]}', "Expecting tensor size: 2 but got: 3"),
    ('{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape [2] but got: [1,2]"),
    ('{"instances": [1, [1]]}', "Expecting shape [] but got: [1]"),
    ('{"instances": [[1,2],["a", "b"]]}', 'JSON Value: "a" Type: String is not of expected type: int32'),
    ('{"instances": [[1, true]]}', "JSON Value: true Type: True is not of expected type: int32"),
    ('{"instances": [[1, 2.5]]}', "JSON Value: 2.5 Type: Number is not of expected type: int32"),
    ('{"instances": [3000000000]}', "JSON Value: 3000000000 Type: Number is not of expected type: int32"),
    ('{"inputs": [[1], 2]}', "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ('{"inputs": [1, [2]]}', "Encountered list at unexpected level: 1 expected < 1"),
    ("[1, 2]", "Is not object"),
    ('{"instances": [1,}', "JSON Parse error: Invalid value. at offset: 17"),
])
def test_single_tensor_errors(body, message):
    assert message in error_of(body, default=types_pb2.DT_INT32)


def test_multiple_named_tensor_errors():
    two = {"i": types_pb2.DT_INT32, "s": types_pb2.DT_STRING}
    assert "Expecting object but got list at item 1" in error_of(
        '{"instances": [{"i": [1], "s": ["a"]}, [1, 20, 30]]}', **two)
    assert "keys must be equal to: i,s" in error_of('{"instances": [{"i": [1]}]}', **two)
    assert "Missing named input: s in 'inputs' object." in error_of('{"inputs": {"i": [1]}}', **two)
    assert "instances is a plain list, but expecting list of objects" in error_of('{"instances": [1]}', **two)
    assert "Expecting value/list but got object at item 1" in error_of(
        '{"instances": [["a"], {"s": ["b"]}]}', s=types_pb2.DT_STRING)
    assert "Unable to base64 decode" in error_of('{"instances": [{"b64": "%%%"}]}', s=types_pb2.DT_STRING)
    assert "to type: half" in error_of('{"instances": [1.0]}', h=types_pb2.DT_HALF)


def test_examples_with_context_and_feature_kinds():
    signature, model_input = json_requests.parse_examples(
        b'{"signature_name": "c", "context": {"lang": "en"}, '
        b'"examples": [{"x": 1.5, "n": [1, 2], "b": {"b64": "aGk="}, "t": true}]}')
    assert signature == "c"
    listed = model_input.example_list_with_context
    assert listed.context.features.feature["lang"].bytes_list.value == [b"en"]
    feature = listed.examples[0].features.feature
    assert feature["x"].float_list.value == [1.5]
    assert feature["n"].int64_list.value == [1, 2]
    assert feature["b"].bytes_list.value == [b"hi"]
    assert feature["t"].int64_list.value == [1]
    with pytest.raises(ServingError, match="Unexpected element type in feature: n expecting type: int64"):
        json_requests.parse_examples(b'{"examples": [{"n": [1, 2.5]}]}')
    with pytest.raises(ServingError, match="has uint64_t element"):
        json_requests.parse_examples(b'{"examples": [{"n": 18446744073709551615}]}')
    with pytest.raises(ServingError, match="key 'examples' is expected and was not found"):
        json_requests.parse_examples(b"{}")


# --------------------------------------------------------------------------------- responses
def test_float_formatting_matches_absl_six_digits_with_round_trip_fallback():
    values = np.array([9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5, np.nan, np.inf, -np.inf, 3], np.float32)
    assert format_floats(values) == [
        "9e+06", "999999.0", "0.5", "0.0003", "3e-05", "555557.5", "NaN", "Infinity", "-Infinity", "3.0"]
    assert format_float(float(np.float32(0.1) / 3), float32=True) == "0.0333333351"
    assert format_floats(np.array([0.1], np.float64)) == ["0.1"]


def test_row_and_columnar_responses_have_tf_serving_layout():
    outputs = {"int_tensor": np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], np.int32)}
    assert json_responses.predict_response(outputs, row_format=True) == (
        b'{\n    "predictions": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]\n    ]\n}')
    columnar = json_responses.predict_response({"x": np.array([1.0, 2.5], np.float32)}, row_format=False)
    assert columnar == b'{\n    "outputs": [\n        1.0,\n        2.5\n    ]\n}'
    assert json_responses.predict_response({"x": np.zeros((0, 2), np.float32)}, True) == b'{\n    "predictions": []\n}'


def test_multiple_named_outputs_and_bytes_in_rows():
    outputs = {
        "double_scalar_tensor": np.array([8.0, 9.0]),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
    }
    body = json_responses.predict_response(outputs, row_format=True)
    assert json.loads(body) == {"predictions": [
        {"double_scalar_tensor": 8.0, "str_tensor": ["foo", "bar"],
         "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]},
        {"double_scalar_tensor": 9.0, "str_tensor": ["baz", "bat"],
         "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]},
    ]}
    assert body.startswith(b'{\n    "predictions": [\n        {\n            "double_scalar_tensor": 8.0,\n')


def test_response_errors():
    with pytest.raises(ServingError, match="inconsistent batch size: 1 expecting: 2"):
        json_responses.predict_response({"a": np.zeros((2, 3)), "b": np.zeros((1, 3))}, True)
    with pytest.raises(ServingError, match="has no shape information"):
        json_responses.predict_response({"a": np.float32(1.0)}, True)
    with pytest.raises(ServingError, match="tensor type: complex64"):
        json_responses.predict_response({"a": np.zeros(2, np.complex64)}, True)
    with pytest.raises(ServingError, match="Cannot convert empty tensor map to JSON"):
        json_responses.predict_response({}, True)
