"""TF Serving behaviour at the edges of the REST API, against one real server process.

Each test names the TF Serving source that shows the behaviour: RapidJSON's iterative
parser (util/json_tensor.cc: ParseJson), libevent's method check (evhttp_server.cc),
net_http's gzip request bodies (evhttp_request.cc), http_server.cc's request metrics,
protobuf's JSON printer and the output checks of classifier.cc / regressor.cc.
"""

from __future__ import annotations

import gzip
import http.client
import json

import pytest

from tests.serving.serving_fixtures import export_half_plus_two


def export_double_outputs(base, version: int = 1):
    """Write a model whose classify and regress signatures output float64 (TF wants float32)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    staging = base / f".tmp-{version}"
    with tf.Graph().as_default(), v1.Session() as session:
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        doubled = tf.cast(parsed["x"], tf.float64, name="x64")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        builder = v1.saved_model.Builder(str(staging))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "regress": build({"inputs": info(serialized)}, {"outputs": info(doubled)},
                             "tensorflow/serving/regress"),
            "classify": build({"inputs": info(serialized)}, {"scores": info(doubled)},
                              "tensorflow/serving/classify"),
        })
        builder.save()
    staging.rename(base / str(version))


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    (root / "half_plus_two").mkdir()
    export_half_plus_two(root / "half_plus_two", 1)
    (root / "doubles").mkdir()
    export_double_outputs(root / "doubles", 1)
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "half_plus_two" base_path: "{root / 'half_plus_two'}" model_platform: "tensorflow" }}
  config {{ name: "doubles" base_path: "{root / 'doubles'}" model_platform: "tensorflow" }}
}}
""")
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }')
    process = start_server([f"--model_config_file={config}", f"--monitoring_config_file={monitoring}",
                            "--file_system_poll_wait_seconds=0"])
    yield process
    assert process.stop() == 0, process.log()


def call(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """Return (status, headers as a lower-cased dict, body) of one HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_nested_documents_parse_like_rapidjson_up_to_1024_levels(server):
    nested = b"[" * 1000 + b"]" * 1000
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict",
                           b'{"instances": [[1.0]], "nested": ' + nested + b"}")
    assert (status, body) == (200, b'{\n    "predictions": [[2.5]\n    ]\n}')
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict",
                           b'{"signature_name": ' + nested + b"}")
    assert status == 400
    assert json.loads(body)["error"].endswith("'signature_name' key must be a string value.")
    # Deliberately unlike RapidJSON (no limit): refused while parsing, so it costs little.
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict",
                           b'{"instances": [[1.0]], "nested": ' + b"[" * 500_000 + b"]" * 500_000 + b"}")
    assert (status, json.loads(body)) == (
        400, {"error": "JSON Parse error: Nesting deeper than 1024 levels. at offset: 1056"})


@pytest.mark.parametrize("body, error", [
    (b'{"instances": [[1.0]] "x": 1}', "Missing a comma or '}' after an object member. at offset: 22"),
    (b'{"instances": [[1.0],]}', "Invalid value. at offset: 21"),
    (b'{"instances": [[1.]]}', "Miss fraction part in number. at offset: 18"),
])
def test_malformed_bodies_get_rapidjson_errors(server, body, error):
    status, _, payload = call(server, "POST", "/v1/models/half_plus_two:predict", body)
    assert (status, json.loads(payload)) == (400, {"error": f"JSON Parse error: {error}"})


def test_nan_and_infinity_tokens_in_and_out(server):
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict",
                           b'{"instances": [[NaN], [Inf], [-Infinity]]}')
    assert (status, body) == (200, b'{\n    "predictions": [[NaN], [Infinity], [-Infinity]\n    ]\n}')


def test_regress_without_examples_reports_the_classify_message(server):
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:regress", b'{"signature_name": "x"}')
    assert status == 400
    assert json.loads(body)["error"] == (
        'JSON Value: {\n    "signature_name": "x"\n} When method is classify, key \'examples\' '
        "is expected and was not found")


def test_methods_libevent_does_not_allow_get_its_501_page(server):
    status, headers, body = call(server, "TRACE", "/v1/models/half_plus_two")
    assert (status, headers["content-type"]) == (501, "text/html")
    assert b"<TITLE>501 Not Implemented</TITLE>" in body
    status, _, body = call(server, "PATCH", "/v1/models/half_plus_two")
    assert (status, json.loads(body)) == (400, {"error": "Malformed request: PATCH /v1/models/half_plus_two"})


def test_gzip_request_bodies_are_uncompressed(server):
    headers = {"Content-Encoding": "gzip"}
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict",
                           gzip.compress(b'{"instances": [[1.0], [2.0]]}'), headers)
    assert (status, json.loads(body)) == (200, {"predictions": [[2.5], [3.0]]})
    status, _, body = call(server, "POST", "/v1/models/half_plus_two:predict", b"not gzip", headers)
    assert (status, json.loads(body)) == (400, {"error": "JSON Parse error: The document is empty"})


def test_cors_preflight_answers_like_libevent(server):
    status, headers, body = call(server, "OPTIONS", "/v1/models/half_plus_two",
                                 headers={"Origin": "null, http://example.com"})
    assert (status, headers["content-type"], body) == (200, "text/html; charset=ISO-8859-1", b"")
    status, _, _ = call(server, "OPTIONS", "/v1/models/half_plus_two")
    assert status == 400


def test_status_and_metadata_end_like_protobufs_json_printer(server):
    status, _, body = call(server, "GET", "/v1/models/half_plus_two")
    assert status == 200 and body.endswith(b"\n ]\n}\n")
    status, _, body = call(server, "GET", "/v1/models/half_plus_two/metadata")
    assert status == 200
    assert body.startswith(b'{\n"model_spec":{\n "name": "half_plus_two",\n')
    assert b'"version": "1"\n}\n,\n"metadata": {"signature_def": {\n' in body
    assert body.endswith(b"\n}\n}\n}\n")


def test_wrong_output_dtypes_are_named_as_tf_datatypes(server):
    examples = b'{"signature_name": "%s", "examples": [{"x": 1.0}]}'
    status, _, body = call(server, "POST", "/v1/models/doubles:classify", examples % b"classify")
    assert (status, json.loads(body)) == (400, {"error": "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"})
    status, _, body = call(server, "POST", "/v1/models/doubles:regress", examples % b"regress")
    assert (status, json.loads(body)) == (400, {"error": "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"})


def test_every_rest_request_is_counted_under_its_model_name(server):
    call(server, "POST", "/v1/models/missing:predict", b'{"instances": [1]}')
    call(server, "GET", "/v1/models/missing")
    call(server, "GET", "/v1/models/doubles/metadata")
    _, _, page = call(server, "GET", "/metrics")
    text = page.decode()
    assert ':tensorflow:serving:request_count{model_name="missing",status="NOT_FOUND"} 2.0' in text
    assert ':tensorflow:serving:request_count{model_name="doubles",status="OK"} 1.0' in text
    assert ':tensorflow:serving:request_latency_count{API="",entrypoint="REST",model_name="doubles"} 1.0' in text
