"""End to end: one real server process, REST and gRPC against in-process SavedModel outputs.

The server serves three models from one models.config: `demo` (versions 1 and 2, labels
stable/canary, warmup requests in v1), `half_plus_two` (classify/regress signatures) and
`swap` (latest policy; the hot-swap test drops new versions into it while requests run).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import orjson
import pytest

from serving.bench.demo_model import sample_pixels
from serving.client import ClientError, GrpcClient, RestClient
from tests.serving.serving_fixtures import copy_version, pixel_request, write_warmup


@pytest.fixture(scope="module")
def server(model_store, start_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    demo_v1 = copy_version(model_store["demo_v1"], root / "demo", 1) if (root / "demo").mkdir() is None else None
    copy_version(model_store["demo_v1"], root / "demo", 2)
    write_warmup(demo_v1, [pixel_request("demo", sample_pixels(2, seed=5))])
    (root / "half_plus_two").mkdir()
    copy_version(model_store["hpt_v1"], root / "half_plus_two", 1)
    (root / "swap").mkdir()
    copy_version(model_store["demo_v1"], root / "swap", 1)
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "demo" base_path: "{root / 'demo'}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "half_plus_two" base_path: "{root / 'half_plus_two'}" model_platform: "tensorflow" }}
  config {{ name: "swap" base_path: "{root / 'swap'}" model_platform: "tensorflow" }}
}}
""")
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }')
    process = start_server([
        f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
        f"--monitoring_config_file={monitoring}", "--file_system_poll_wait_seconds=1",
        "--max_request_bytes=1000000", "--max_num_load_retries=0",
    ])
    process.root = root
    yield process
    assert process.stop() == 0, process.log()


def rest(server, method: str, path: str, body: bytes | str | None = None):
    """Return (status, content type, body bytes) of one REST request."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def rest_error(server, method, path, body=None) -> tuple[int, str]:
    status, content_type, payload = rest(server, method, path, body)
    assert content_type == "application/json"
    return status, json.loads(payload)["error"]


def reference(demo_function, signature: str, **inputs) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = demo_function[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def assert_same_probabilities(served: np.ndarray, expected: np.ndarray) -> None:
    """The server computes with TensorFlow's own CPU kernels (as TF Serving's build does);
    this process may use oneDNN's, which sum in another order: equal to float32 rounding."""
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ predictions
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


# ----------------------------------------------------------------------------- REST errors
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


def test_model_status_and_metadata_over_rest(server):
    status, _, body = rest(server, "GET", "/v1/models/demo/labels/canary")
    assert status == 200
    assert json.loads(body) == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}
    status, _, body = rest(server, "GET", "/v1/models/half_plus_two/versions/1/metadata")
    metadata = json.loads(body)
    assert metadata["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"
    assert signatures["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"


def test_model_metadata_over_grpc(server):
    signatures = GrpcClient("127.0.0.1", server.grpc_port).metadata("demo", version=1)
    assert {"serving_default", "predict_image_bytes", "classify"} <= set(signatures)
    assert signatures["predict_image_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"


def test_warmup_ran_and_metrics_are_exported(server):
    status, content_type, page = rest(server, "GET", "/monitoring/prometheus/metrics")
    assert (status, content_type) == (200, "text/plain")
    text = page.decode()
    demo_v1 = str(server.root / "demo" / "1")
    assert f':tensorflow:serving:model_warmup_latency_count{{model_path="{demo_v1}",status="OK"}} 1.0' in text
    assert ':tensorflow:serving:request_count{model_name="demo",status="OK"}' in text
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST",le="10"' in text


# -------------------------------------------------------------------------------- hot swap
def test_new_version_swaps_in_with_zero_failed_requests(server, model_store):
    clients = [GrpcClient("127.0.0.1", server.grpc_port), RestClient("127.0.0.1", server.rest_port)]
    pixels = sample_pixels(1)
    failures, seen, stop = [], set(), threading.Event()
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))

    def hammer(client):
        while not stop.is_set():
            try:
                client.predict("swap", {"image": pixels})
                seen.add(stub.Predict(pixel_request("swap", pixels), timeout=30).model_spec.version.value)
            except Exception as error:  # any failure at all is what this test counts
                failures.append(repr(error))

    threads = [threading.Thread(target=hammer, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        half_written = server.root / "swap" / "3"
        half_written.mkdir()
        (half_written / "variables").mkdir()  # a copy in progress: no saved_model.pb yet
        copy_version(model_store["demo_v1"], server.root / "swap", 2)
        deadline = time.monotonic() + 60
        while 2 not in seen and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert seen >= {1, 2}
    states = dict(GrpcClient("127.0.0.1", server.grpc_port).status("swap"))
    assert states == {2: "AVAILABLE", 1: "END"}  # version 3 never loaded half-written


def test_broken_new_version_leaves_the_old_one_serving(server, model_store):
    base = server.root / "half_plus_two"
    broken = base / ".tmp-broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    broken.rename(base / "5")
    client = GrpcClient("127.0.0.1", server.grpc_port)
    deadline = time.monotonic() + 30
    while dict(client.status("half_plus_two")).get(5) != "END" and time.monotonic() < deadline:
        time.sleep(0.2)
    status, _, body = rest(server, "GET", "/v1/models/half_plus_two")
    versions = {entry["version"]: entry for entry in json.loads(body)["model_version_status"]}
    assert versions["5"]["state"] == "END"
    assert versions["5"]["status"]["error_code"] == "DATA_LOSS"
    assert "as binary proto" in versions["5"]["status"]["error_message"]
    assert versions["1"]["state"] == "AVAILABLE"
    status, _, body = rest(server, "POST", "/v1/models/half_plus_two:predict", '{"instances": [[2.0]]}')
    assert (status, json.loads(body)) == (200, {"predictions": [[3.0]]})


def test_server_survived_everything(server):
    assert GrpcClient("127.0.0.1", server.grpc_port).status("demo")[0] == (2, "AVAILABLE")
    assert server.process.poll() is None
