"""End to end, refusals: TF Serving's HTTP statuses, gRPC codes and error messages, word for word."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from serving.bench.demo_model import sample_pixels
from serving.client import ClientError, GrpcClient
from tests.serving.server.end_to_end.calls import (
    rest,
    rest_error,
)


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/nope:predict", '{"instances": [1]}', 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/demo/versions/99:predict", '{"instances": [1]}', 404,
     "Servable not found for request: Specific(demo, 99)"),
    ("POST", "/v1/models/demo/labels/nope:predict", '{"instances": [1]}', 400,
     "Unrecognized servable version label: nope"),
    ("POST", "/v1/models/demo:predict", '{"signature_name": "nope", "instances": [1]}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/demo:predict", "", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/demo:predict", "instances = [1, 2]", 400, "JSON Parse error: Invalid value. at offset: 0"),
    ("POST", "/v1/models/demo:predict", '{"signature_name": 100}', 400,
     "JSON Value: {\n    \"signature_name\": 100\n} not formatted correctly. 'signature_name' key must be a string value."),
    ("POST", "/v1/models/demo:predict", '{"instances": ["x"]}', 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"x\" "
     "Type: String is not of expected type: uint8"),
    ("POST", "/v1/models/demo:predict", '{"instances": [1], "inputs": [1]}', 400, "Not formatted correctly expecting only"),
    ("POST", "/v1/models/demo:predict", '{"foo": 1}', 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/demo:predict", '{"instances": []}', 400, "No values in 'instances' array"),
    ("POST", "/v1/models/demo:predict", '{"inputs": [[1, 2], [3]]}', 400,
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    # Shapes are the kernels' business, as in TF Serving: their message, no Python traceback.
    ("POST", "/v1/models/demo:predict", '{"inputs": [[[[1]]]]}', 400,
     "Input to reshape is a tensor with 0 values, but the requested shape has 784\n\t [[{{node "),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("PUT", "/v1/models/demo", "", 400, "Malformed request: PUT /v1/models/demo"),
    ("POST", "/v1/models/demo/metadata", "", 400, "Malformed request: POST /v1/models/demo/metadata"),
    ("POST", "/v1/models/demo:PREDICT", "{}", 400, "Malformed request: POST /v1/models/demo:PREDICT"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/demo/versions/7", None, 404, "Could not find version 7 of model demo"),
    ("POST", "/v1/models/half_plus_two:regress", '{"examples": []}', 400, "'examples' value is an empty array"),
    ("POST", "/v1/models/half_plus_two:classify", '{"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}',
     400, 'Expected classification signature outputs to contain at least one of "classes" or "scores"'),
    ("POST", "/v1/models/half_plus_two:regress", '{"examples": [{"x": [[1]]}]}', 400,
     "Feature: x has element with unexpected JSON type: Array"),
    ("POST", "/v1/models/..%2F..%2Fetc:predict", '{"instances": [1]}', 404,
     "Servable not found for request: Latest(../../etc)"),
])
def test_rest_errors_have_tf_serving_status_and_message(server, method, path, body, status, message):
    got_status, error = rest_error(server, method, path, body)
    assert got_status == status
    assert message in error


def test_half_plus_two_answers_the_rest_api_docs_examples(server):
    # api_rest.md and http_rest_api_handler_test.cc: `x` is [-1, 1], yet TF Serving feeds
    # the Session whatever shape comes and the graph computes it elementwise.
    for body, expected in [
        ('{"instances": [1.0, 2.0, 5.0]}', {"predictions": [2.5, 3.0, 4.5]}),
        ('{"instances": [[1.0, 2.0], [3.0, 4.0]]}', {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
        ('{"inputs": [3.0, 4.0]}', {"outputs": [3.5, 4.0]}),
        ('{"inputs": {"x": [[1.0], [2.0]]}}', {"outputs": [[2.5], [3.0]]}),
    ]:
        status, _, payload = rest(server, "POST", "/v1/models/half_plus_two:predict", body)
        assert (status, json.loads(payload)) == (200, expected), body
    response = GrpcClient("127.0.0.1", server.grpc_port).predict(
        "half_plus_two", {"x": np.array([2.0], np.float32)})
    np.testing.assert_array_equal(response["y"], [3.0])


def test_unparsable_version_gets_400_with_an_empty_body(server):
    # http_rest_api_handler.cc returns ParseModelInfo's error before writing a JSON body.
    status, content_type, body = rest(
        server, "POST", "/v1/models/demo/versions/18446744073709551615:regress", "{}")
    assert (status, content_type, body) == (400, "application/json", b"")


def test_unknown_paths_get_libevent_404_and_large_bodies_413(server):
    status, content_type, body = rest(server, "GET", "/index.html")
    assert (status, content_type) == (404, "text/html")
    assert b"<TITLE>404 Not Found</TITLE>" in body
    status, error = rest_error(server, "POST", "/v1/models/demo:predict", b"[" + b"1," * 600_000 + b"1]")
    assert status == 413
    assert "exceeds the limit of 1000000 bytes" in error
    with pytest.raises(ClientError) as raised:
        GrpcClient("127.0.0.1", server.grpc_port).predict("demo", {"image": np.zeros((1500, 28, 28, 1), np.uint8)})
    assert raised.value.code == "RESOURCE_EXHAUSTED"


def test_grpc_requests_without_a_model_spec_are_refused(server):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    for call, request in [(stub.Predict, predict_pb2.PredictRequest()),
                          (stub.Regress, regression_pb2.RegressionRequest())]:
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=30)
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_extra_tensor_values_are_cut_to_the_shape_as_tensor_from_proto_does(server):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    x = request.inputs["x"]
    x.dtype = tf.float32.as_datatype_enum
    x.tensor_shape.dim.add(size=1)
    x.tensor_shape.dim.add(size=1)
    x.float_val.extend([1.0, 5.0, 7.0])  # three values for a [1, 1] tensor
    response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5]]

    x.tensor_shape.dim[0].size = x.tensor_shape.dim[1].size = 2**40  # 2**80 elements: TensorShape overflows
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x")


def test_grpc_errors_have_tf_serving_codes(server):
    client = GrpcClient("127.0.0.1", server.grpc_port)
    cases = [
        (lambda: client.predict("nope", {"image": sample_pixels(1)}), "NOT_FOUND",
         "Servable not found for request: Latest(nope)"),
        (lambda: client.predict("demo", {"image": np.zeros((1, 28, 28, 1), np.float32)}), "INVALID_ARGUMENT",
         "Expects arg[0] to be uint8 but float is provided"),
        (lambda: client.predict("demo", {"pixels": sample_pixels(1)}), "INVALID_ARGUMENT",
         "Signature input alias: image(feed name: serving_default_image:0) not found in request"),
        (lambda: client.predict("demo", {"image": sample_pixels(1), "extra": sample_pixels(1)}),
         "INVALID_ARGUMENT", "input size does not match signature: 2!=1 len({extra,image}) != len({image}). "
         "Sent extra: {extra}. Missing but required: {}."),
        (lambda: client.predict("demo", {"image": sample_pixels(1)}, signature_name="nope"), "FAILED_PRECONDITION",
         'Serving signature key "nope" not found.'),
        (lambda: client.status("nope"), "NOT_FOUND", "Could not find any versions of model nope"),
    ]
    for call, code, message in cases:
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.code == code
        assert message in raised.value.message
