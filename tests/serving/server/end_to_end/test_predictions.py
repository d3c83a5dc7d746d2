"""End to end, answers: Predict, Classify, Regress and MultiInference equal the SavedModel in process."""

from __future__ import annotations

import json

import grpc
import numpy as np
import orjson
import pytest

from serving.bench.demo_model import sample_pixels
from serving.client import GrpcClient, RestClient
from tests.serving.server.end_to_end.calls import (
    assert_same_probabilities,
    reference,
    rest,
)
from tests.serving.serving_fixtures import pixel_request


def test_rest_and_grpc_equal_the_in_process_savedmodel(server, demo_function):
    pixels = sample_pixels(3, seed=1)
    expected = reference(demo_function, "serving_default", image=pixels)
    via_grpc = GrpcClient("127.0.0.1", server.grpc_port).predict("demo", {"image": pixels})
    via_rest = RestClient("127.0.0.1", server.rest_port).predict("demo", {"image": pixels})
    for outputs in (via_grpc, via_rest):
        assert set(outputs) == {"probabilities", "class_id", "class_name"}
        assert_same_probabilities(outputs["probabilities"], expected["probabilities"])
        np.testing.assert_array_equal(outputs["class_id"], expected["class_id"])
        assert outputs["class_name"].tolist() == expected["class_name"].tolist()
    # One server, two transports: the same numbers, to the last bit.
    np.testing.assert_array_equal(via_rest["probabilities"], via_grpc["probabilities"])


def test_row_format_instances_give_predictions(server, demo_function):
    pixels = sample_pixels(2, seed=2)
    expected = reference(demo_function, "serving_default", image=pixels)
    status, _, body = rest(server, "POST", "/v1/models/demo:predict",
                           orjson.dumps({"instances": pixels.tolist()}))
    assert status == 200
    predictions = json.loads(body)["predictions"]
    assert [row["class_id"] for row in predictions] == expected["class_id"].tolist()
    assert_same_probabilities(
        np.array([row["probabilities"] for row in predictions], dtype=np.float32), expected["probabilities"]
    )
    # TF Serving's layout: one object per instance, keys sorted, arrays on one line.
    assert body.startswith(b'{\n    "predictions": [\n        {\n            "class_id": ')


def test_image_bytes_go_through_b64_over_rest_and_bytes_over_grpc(server, demo_function):
    from serving.client.cli import SAMPLE_IMAGE

    encoded = SAMPLE_IMAGE.read_bytes()
    batch = np.array([encoded], dtype=object)
    expected = reference(demo_function, "predict_image_bytes", image_bytes=batch)
    for client in (GrpcClient("127.0.0.1", server.grpc_port), RestClient("127.0.0.1", server.rest_port)):
        outputs = client.predict("demo", {"image_bytes": batch}, signature_name="predict_image_bytes")
        assert_same_probabilities(outputs["probabilities"], expected["probabilities"])
    import base64

    body = json.dumps({"signature_name": "predict_image_bytes",
                       "instances": [{"b64": base64.b64encode(encoded).decode()}]})
    status, _, payload = rest(server, "POST", "/v1/models/demo/labels/stable:predict", body)
    assert status == 200
    assert json.loads(payload)["predictions"][0]["class_id"] == int(expected["class_id"][0])


def test_versions_and_labels_route_to_the_named_version(server):
    client = GrpcClient("127.0.0.1", server.grpc_port)
    stub_request = pixel_request("demo", sample_pixels(1))
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    assert stub.Predict(stub_request, timeout=30).model_spec.version.value == 2  # latest
    stub_request.model_spec.version_label = "stable"
    response = stub.Predict(stub_request, timeout=30)
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (1, "serving_default")
    stub_request.model_spec.version.value = 2
    assert stub.Predict(stub_request, timeout=30).model_spec.version.value == 2
    assert client.status("demo") == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    status, _, _ = rest(server, "POST", "/v1/models/demo/versions/1:predict", '{"inputs": [[[[0]]]]}')
    assert status == 400  # reached version 1, rejected the shape


def test_classify_and_regress_over_rest_match_tf_serving(server):
    status, _, body = rest(server, "POST", "/v1/models/half_plus_two:regress",
                           '{"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}, {"x": 1.0}]}')
    assert (status, body) == (200, b'{\n    "results": [42.0, 2.5]\n}')
    status, _, body = rest(server, "POST", "/v1/models/half_plus_two:classify",
                           '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}')
    assert (status, body) == (200, b'{\n    "results": [[["", 12.0]]\n    ]\n}')
    status, _, body = rest(server, "POST", "/v1/models/half_plus_two:predict", '{"instances": [[1.0], [3.0]]}')
    assert json.loads(body) == {"predictions": [[2.5], [3.5]]}
    status, _, body = rest(server, "POST", "/v1/models/half_plus_two:predict", '{"inputs": {"x": [[1.0]]}}')
    assert json.loads(body) == {"outputs": [[2.5]]}


def test_classify_regress_and_multi_inference_over_grpc(server):
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(10.0)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    regress.input.example_list.examples.append(example)
    assert [r.value for r in stub.Regress(regress, timeout=30).result.regressions] == [7.0]
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
    classify.input.example_list.examples.append(example)
    result = stub.Classify(classify, timeout=30)
    assert [(c.label, c.score) for c in result.result.classifications[0].classes] == [("", 7.0)]
    assert result.model_spec.version.value == 1
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                              ("classify_x_to_y", "tensorflow/serving/classify")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "half_plus_two", signature
    multi.input.example_list.examples.append(example)
    results = stub.MultiInference(multi, timeout=30).results
    assert results[0].regression_result.regressions[0].value == 7.0
    assert results[1].classification_result.classifications[0].classes[0].score == 7.0
    regress.input.Clear()
    with pytest.raises(grpc.RpcError) as raised:
        stub.Regress(regress, timeout=30)
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
