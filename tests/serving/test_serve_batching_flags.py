"""`make serve BATCHING=1 BATCHING_PARAMS=... MONITORING=1 SERVER_FLAGS=...`: TF Serving's flags
reach the server, on the compatible server for real and in the Docker command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import launch
from serving.bench.demo_model import sample_pixels
from serving.bench.load_matrix import scrape
from serving.client import GrpcClient
from serving.common import free_port
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
         "MONITORING=1", "SERVER_FLAGS=--grpc_max_threads=7"],
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
        # Batching is on (the REST threads are raised for it); SERVER_FLAGS' value stands.
        assert "--rest_api_num_threads raised" in output and "--grpc_max_threads raised" not in output, output
        before = scrape(rest_port, "/monitoring/prometheus/metrics")  # warmup may have run batches
        outputs = GrpcClient("127.0.0.1", grpc_port).predict("demo", {"image": sample_pixels(3)})
        assert outputs["probabilities"].shape == (3, 10)
        after = scrape(rest_port, "/monitoring/prometheus/metrics")
        runs, rows = (":tensorflow:serving:batching_session:wrapped_run_count",
                      ":tensorflow:serving:batching_session:processed_batch_size_sum")
        assert (after[runs] - before.get(runs, 0), after[rows] - before.get(rows, 0)) == (1, 3)
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


def test_every_backend_gets_the_server_flags(tmp_path):
    config = launch.build_config({"demo": tmp_path})
    args = launch.parse_args(["--", "--enable_batching", f"--batching_parameters_file={BATCHING_PARAMS}"])
    binary = launch.plan(args, config, tmp_path / "models.config", binary="/bin/tensorflow_model_server",
                         docker=False, gpu=False)
    assert binary.command[-2:] == ["--enable_batching", f"--batching_parameters_file={BATCHING_PARAMS}"]
    docker = launch.plan(args, config, tmp_path / "models.config", binary=None, docker=True, gpu=False)
    assert docker.command[-2:] == ["--enable_batching", "--batching_parameters_file=/config/batching_parameters_file.txt"]
    assert (docker.config_path.parent / "batching_parameters_file.txt").read_text() == BATCHING_PARAMS.read_text()
    ours = launch.plan(args, config, tmp_path / "models.config", binary=None, docker=False, gpu=False)
    assert ours.command[-2:] == ["--enable_batching", f"--batching_parameters_file={BATCHING_PARAMS}"]
