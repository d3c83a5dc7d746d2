"""Real exports served from a subprocess: in-process = REST = gRPC, warmup replayed on load.

The models are the pipeline's own (tests/conftest.py `trained_exports`: a CNN on Fashion-MNIST
images, an RNN on texts), so the signatures checked here are the ones `make train` ships.
"""

from __future__ import annotations

import urllib.request

import numpy as np
import tensorflow as tf

from serving.client import GrpcClient, RestClient
from serving.codec import to_ndarray
from serving.common import read_lineage
from serving.release.gate import warmup_requests


def test_trained_cnn_and_rnn_answer_the_same_in_process_over_rest_and_grpc(
        trained_exports, start_server, tmp_path):
    models = "".join(
        f'config {{ name: "{name}" base_path: "{path.parent}" model_platform: "tensorflow" }} '
        for name, path in trained_exports.items())
    (tmp_path / "models.config").write_text(f"model_config_list {{ {models} }}")
    (tmp_path / "monitoring.config").write_text('prometheus_config { enable: true, path: "/metrics" }')
    server = start_server([f"--model_config_file={tmp_path / 'models.config'}",
                           f"--monitoring_config_file={tmp_path / 'monitoring.config'}"])
    grpc_client = GrpcClient("127.0.0.1", server.grpc_port)
    rest_client = RestClient("127.0.0.1", server.rest_port)
    for name, path in trained_exports.items():
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        [input_name] = signature.structured_input_signature[1]
        batches = [to_ndarray(request.inputs[input_name], input_name)
                   for request in warmup_requests(path)]
        assert [len(batch) for batch in batches] == [1, 4]  # real test inputs, per batch size
        for inputs in batches:
            expected = {key: value.numpy() for key, value in
                        signature(**{input_name: tf.constant(inputs)}).items()}
            for client in (grpc_client, rest_client):
                served = client.predict(name, {input_name: inputs})
                assert set(served) == {"probabilities", "class_id", "class_name"}
                np.testing.assert_allclose(served["probabilities"], expected["probabilities"],
                                           rtol=0, atol=1e-6)
                assert served["class_id"].tolist() == expected["class_id"].tolist()
                assert served["class_name"].tolist() == expected["class_name"].tolist()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30) as page:
        metrics = page.read().decode()
    for name, path in trained_exports.items():
        assert (f':tensorflow:serving:model_warmup_latency_count{{model_path="{path}",'
                f'status="OK"}} 1.0') in metrics
        lineage = read_lineage(path)
        assert lineage["model_name"] == name and lineage["version"] == path.name == "1"
        assert f'run_id="{lineage["run_id"]}"' in metrics
    check_cli_falls_back_to_the_highest_version(server.grpc_port, tmp_path)
    assert server.stop() == 0


def check_cli_falls_back_to_the_highest_version(port: int, tmp_path) -> None:
    """`python -m serving.client predict` asks for `stable`; a server without it answers latest."""
    from typer.testing import CliRunner

    from serving.client.cli import app

    pixels = tmp_path / "pixels.npy"
    np.save(pixels, np.zeros((1, 28, 28, 1), np.uint8))
    runner = CliRunner()
    arguments = ["predict", "--model", "cnn", "--pixels", str(pixels), "--port", str(port)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "cnn has no 'stable' label on this server" in " ".join(result.output.split())
    assert "example 0" in result.output
    refused = runner.invoke(app, [*arguments, "--label", "canary"])
    assert refused.exit_code == 1  # rich wraps lines at the terminal's width
    assert "Unrecognized servable version label: canary" in " ".join(refused.output.split())
