"""Config reloads on a real server: HandleReloadConfigRequest, and --model_config_file polling."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving.bench.demo_model import sample_pixels
from serving.client import ClientError, GrpcClient
from serving.server.management import config as config_lib
from tests.serving.serving_fixtures import copy_version


def model_entry(name: str, base) -> str:
    return f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }}'


@pytest.fixture(scope="module")
def stores(model_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("reload")
    for name in ("first", "second"):
        (root / name).mkdir()
        copy_version(model_store["demo_v1"], root / name, 1)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a model")
    return root


def reload(server, text: str):
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = model_management_pb2.ReloadConfigRequest(config=config_lib.parse_config_text(text))
    return stub.HandleReloadConfigRequest(request, timeout=60)


def test_handle_reload_config_request(stores, start_server, tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 64 } batch_timeout_micros { value: 1000 } num_batch_threads { value: 2 }")
    server = start_server(["--model_name=first", f"--model_base_path={stores / 'first'}",
                           "--enable_batching", f"--batching_parameters_file={batching}",
                           "--max_num_load_retries=0"])
    client = GrpcClient("127.0.0.1", server.grpc_port)
    assert client.predict("first", {"image": sample_pixels(2)})["class_id"].shape == (2,)
    response = reload(server, f"model_config_list {{ {model_entry('second', stores / 'second')} }}")
    assert response.HasField("status") and response.status.error_code == 0
    assert client.predict("second", {"image": sample_pixels(1)})["probabilities"].shape == (1, 10)
    assert client.status("first") == [(1, "END")]
    with pytest.raises(ClientError, match=r"Latest\(first\)"):
        client.predict("first", {"image": sample_pixels(1)})
    with pytest.raises(grpc.RpcError) as raised:
        reload(server, 'model_config_list { config { name: "x" base_path: "relative" model_platform: "tensorflow" } }')
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as raised:
        reload(server, f"model_config_list {{ {model_entry('second', stores / 'second')} "
                       f"{model_entry('broken', stores / 'broken')} }}")
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    assert "1 model(s) did not become available" in raised.value.details()
    assert client.predict("second", {"image": sample_pixels(1)})["class_id"].shape == (1,)
    assert server.stop() == 0


def check_rest_timeout_and_cors(server) -> None:
    """A 64-image request cannot finish in 2 ms: 504 with TF Serving's error body, CORS headers."""
    from serving.client.cli import SAMPLE_IMAGE

    image = {"b64": base64.b64encode(SAMPLE_IMAGE.read_bytes()).decode()}
    body = json.dumps({"signature_name": "predict_image_bytes", "instances": [image] * 64}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/first:predict", data=body)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 504
    assert raised.value.headers["Access-Control-Allow-Origin"] == "*"
    assert "Request timed out after 2 ms" in json.loads(raised.value.read())["error"]
    preflight = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/first:predict",
                                       method="OPTIONS", headers={"Origin": "http://example.test"})
    with urllib.request.urlopen(preflight, timeout=60) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Methods"] == "POST, GET"


def test_model_config_file_is_polled(stores, start_server, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(f"model_config_list {{ {model_entry('first', stores / 'first')} }}")
    server = start_server([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                           "--rest_api_timeout_in_ms=2", "--rest_api_enable_cors_support"])
    client = GrpcClient("127.0.0.1", server.grpc_port)
    assert client.status("first") == [(1, "AVAILABLE")]
    check_rest_timeout_and_cors(server)
    config.write_text(f"model_config_list {{ {model_entry('second', stores / 'second')} }}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if client.status("second") == [(1, "AVAILABLE")]:
                break
        except ClientError:
            pass
        time.sleep(0.2)
    assert client.status("second") == [(1, "AVAILABLE")]
    config.write_text("this is { not a config")  # logged and ignored; the old config stays
    time.sleep(1.5)
    assert client.status("second") == [(1, "AVAILABLE")]
    assert server.stop() == 0
    assert "Failed to read ModelServerConfig file" in server.log()
