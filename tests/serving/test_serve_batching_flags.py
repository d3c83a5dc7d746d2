"""`make serve BATCHING=1 BATCHING_PARAMS=... MONITORING=1 SERVER_FLAGS=...`: TF Serving's flags
reach the server, on the compatible server for real and in the Docker command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serving import launch
from serving.client import GrpcClient
from serving.common import free_port
from serving.demo_model import sample_pixels
from tests.serving.serving_fixtures import REPO

BATCHING_PARAMS = REPO / "configs" / "serving" / "batching_parameters.txt"


def test_make_serve_passes_batching_and_monitoring_flags(model_store, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "demo" base_path: "{model_store["demo_v1"].parent}" '
                      'model_platform: "tensorflow" } }')
    grpc_port, rest_port = free_port(), free_port()
    venv = Path(sys.prefix)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", f"{venv}/.installed", f"VENV={venv}", "serve", f"MODEL_CONFIG={config}",
         f"GRPC_PORT={grpc_port}", f"REST_PORT={rest_port}", "BATCHING=1", f"BATCHING_PARAMS={BATCHING_PARAMS}",
         "MONITORING=1", "SERVER_FLAGS=--rest_api_timeout_in_ms=20000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}"},
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines.append(process.stdout.readline())
            if "Exporting HTTP/REST API" in lines[-1] or not lines[-1]:
                break
        output = "".join(lines)
        assert "--enable_batching" in output and "--rest_api_timeout_in_ms=20000" in output, output
        outputs = GrpcClient("127.0.0.1", grpc_port).predict("demo", {"image": sample_pixels(3)})
        assert outputs["probabilities"].shape == (3, 10)
        page = urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics",
                                      timeout=30).read().decode()
        assert ":tensorflow:serving:batching_session:wrapped_run_count 1.0" in page
        assert ":tensorflow:serving:batching_session:processed_batch_size_sum 3.0" in page
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)


def test_flag_files_are_checked_and_copied_into_the_container(tmp_path):
    with pytest.raises(SystemExit, match=r"^--batching_parameters_file: no such file: '/nowhere/b.txt'$"):
        launch.check_flag_files(["--enable_batching", "--batching_parameters_file=/nowhere/b.txt"])
    launch.check_flag_files(["--enable_batching", f"--batching_parameters_file={BATCHING_PARAMS}"])
    flags = launch.container_flags(["--enable_batching", f"--batching_parameters_file={BATCHING_PARAMS}"], tmp_path)
    assert flags == ["--enable_batching", "--batching_parameters_file=/config/batching_parameters_file.txt"]
    assert (tmp_path / "batching_parameters_file.txt").read_text() == BATCHING_PARAMS.read_text()
