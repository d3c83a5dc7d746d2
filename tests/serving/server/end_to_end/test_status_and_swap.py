"""End to end, last: status, metadata and metrics, then new versions swapped in under load."""

from __future__ import annotations

import json
import threading
import time

import grpc

from serving.bench.demo_model import sample_pixels
from serving.client import GrpcClient, RestClient
from tests.serving.server.end_to_end.calls import (
    rest,
)
from tests.serving.serving_fixtures import copy_version, pixel_request


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
