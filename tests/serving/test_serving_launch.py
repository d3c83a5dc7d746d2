"""serving.launch: models.config generation, the backend choice, and a real launch."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from serving import launch
from serving.bench.demo_model import sample_pixels
from serving.client import GrpcClient
from serving.common import free_port
from serving.server.management import config as config_lib
from tests.serving.serving_fixtures import REPO, copy_version


@pytest.fixture
def saved_models(model_store, tmp_path):
    root = tmp_path / "saved_models"
    for name in ("mnist", "fashion"):
        (root / name).mkdir(parents=True)
        copy_version(model_store["demo_v1"], root / name, 1)
    (root / "mnist" / ".tmp-123").mkdir()  # an export in progress
    (root / "notes").mkdir()  # no version folders: not a model
    (root / ".cache").mkdir()
    return root


def args(*argv):
    return launch.parse_args(list(argv))


def test_models_config_lists_every_model_with_absolute_paths(saved_models):
    models = launch.discover_models(saved_models)
    assert list(models) == ["fashion", "mnist"]
    text = config_lib.to_text(launch.build_config(models))
    parsed = config_lib.parse_config_text(text)
    config_lib.validate(parsed)
    assert [(m.name, m.base_path, m.model_platform) for m in parsed.model_config_list.config] == [
        ("fashion", str(saved_models / "fashion"), "tensorflow"),
        ("mnist", str(saved_models / "mnist"), "tensorflow"),
    ]


def test_backend_order_binary_then_docker_then_compatible(saved_models, tmp_path):
    config = launch.build_config(launch.discover_models(saved_models))
    path = tmp_path / "models.config"
    binary = launch.plan(args(), config, path, binary="/usr/bin/tensorflow_model_server", docker=True, gpu=True)
    assert binary.kind == "binary"
    assert binary.command[:3] == ["/usr/bin/tensorflow_model_server", "--port=8500", "--rest_api_port=8501"]
    docker = launch.plan(args("--grpc-port", "9500"), config, path, binary=None, docker=True, gpu=True)
    assert docker.kind == "docker"
    assert "tensorflow/serving:latest-gpu" in docker.command and "--gpus" in docker.command
    assert "127.0.0.1:9500:8500" in docker.command
    assert f"{saved_models / 'mnist'}:/models/mnist:ro" in docker.command
    inside = config_lib.parse_config_text(docker.config_path.read_text())
    assert [m.base_path for m in inside.model_config_list.config] == ["/models/fashion", "/models/mnist"]
    cpu_docker = launch.plan(args(), config, path, binary=None, docker=True, gpu=False)
    assert "tensorflow/serving" in cpu_docker.command and "--gpus" not in cpu_docker.command
    ours = launch.plan(args("--host", "0.0.0.0"), config, path, binary=None, docker=False, gpu=False)
    assert ours.kind == "compatible"
    assert ours.command[1:3] == ["-m", "serving"] and "--bind_address=0.0.0.0" in ours.command


def test_launch_starts_the_compatible_server_and_stops_on_ctrl_c(saved_models):
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.launch", "--models-dir", str(saved_models), "--backend", "compatible",
         "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Started as a script's background job is (`make serve &`): SIGINT ignored. Ctrl-C
        # (SIGINT) must stop it all the same.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Exporting HTTP/REST API" in line or not line:
                break
        output = "".join(lines)
        assert "Starting compatible server for models [fashion, mnist]" in output
        assert f"gRPC 127.0.0.1:{grpc_port}" in output
        outputs = GrpcClient("127.0.0.1", grpc_port).predict("mnist", {"image": sample_pixels(1)})
        assert outputs["probabilities"].shape == (1, 10)
        assert (saved_models / "models.config").exists()
    finally:
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output + remaining
    assert "Stopped the compatible server." in remaining
