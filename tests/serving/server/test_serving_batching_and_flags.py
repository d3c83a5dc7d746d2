"""Batching on a real servable, and tensorflow_model_server's flags."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from serving.bench.demo_model import sample_pixels
from serving.common import free_port
from serving.server import protos
from serving.server.core.errors import ServingError
from serving.server.management.batching.options import BatchingOptions
from serving.server.management.batching.scheduler import BatchScheduler
from serving.server.management.loader import load_servable
from serving.server.options import ServerOptions, check, parse_flags
from tests.serving.serving_fixtures import REPO, ServerProcess


def test_concurrent_calls_are_merged_and_split_back(model_store):
    servable = load_servable("demo", 1, str(model_store["demo_v1"]), {"serve"})
    inputs = [sample_pixels(1, seed=seed) for seed in range(8)]
    expected = [servable.call("serving_default", {"image": pixels}) for pixels in inputs]
    batch_sizes = []
    original_call = servable.call

    def counting_call(signature_name, merged):
        batch_sizes.append(len(merged["image"]))
        return original_call(signature_name, merged)

    servable.call = counting_call
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000,
                                               num_batch_threads=1, allowed_batch_sizes=(4, 8)))
    scheduler.attach(servable)
    results = [None] * len(inputs)

    def send(index):
        results[index] = servable.run("serving_default", {"image": inputs[index]})

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(1 for size in batch_sizes) < len(inputs)
        assert all(size in (4, 8) for size in batch_sizes)  # padded to an allowed size
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6)
            assert got["class_name"].tolist() == want["class_name"].tolist()
        with pytest.raises(ServingError, match="Task size 9 is larger than maximum input batch size 8"):
            servable.run("serving_default", {"image": sample_pixels(9)})
    finally:
        scheduler.stop()


def test_batching_parameters_file_parses_tf_serving_text(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                    "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
    options = BatchingOptions.from_proto(protos.parse_text_file(str(path), "BatchingParameters"))
    assert (options.max_batch_size, options.num_batch_threads, options.max_enqueued_batches) == (128, 8, 1000000)
    path.write_text("max_batch_size { value: 16 } allowed_batch_sizes: 8")
    with pytest.raises(ServingError, match="Last entry in allowed_batch_sizes must match max_batch_size"):
        BatchingOptions.from_proto(protos.parse_text_file(str(path), "BatchingParameters"))
    path.write_text("max_batch_size: oops")
    with pytest.raises(ServingError, match=f"^Invalid protobuf file: '{path}'$"):
        protos.parse_text_file(str(path), "BatchingParameters")
    with pytest.raises(ServingError, match=f"^{tmp_path / 'absent'}; No such file or directory$") as raised:
        protos.parse_text_file(str(tmp_path / "absent"), "BatchingParameters")
    assert raised.value.code_name == "NOT_FOUND"


def test_flags_take_tf_serving_syntax_and_defaults():
    options = parse_flags(["--port=9000", "--rest_api_port", "9001", "--enable_batching",
                           "--enable_model_warmup=false", "--model_name=m", "--model_base_path=/models/m"])
    assert (options.port, options.rest_api_port, options.enable_batching) == (9000, 9001, True)
    assert options.enable_model_warmup is False
    defaults = ServerOptions()
    assert (defaults.port, defaults.rest_api_port, defaults.file_system_poll_wait_seconds) == (8500, 0, 1)
    assert (defaults.rest_api_timeout_in_ms, defaults.model_name, defaults.bind_address) == (30000, "default", "127.0.0.1")
    assert defaults.enable_model_warmup is True and defaults.max_num_load_retries == 5


@pytest.mark.parametrize("flags, message", [
    (["--model_name=m"], "Both server_options.model_base_path and server_options.model_config_file are empty!"),
    (["--model_base_path=/m", "--port=0"], "At least one of server_options.grpc_port"),
    (["--model_base_path=/m", "--batching_parameters_file=/b"], "without setting server_options.enable_batching"),
    (["--model_base_path=/m", "--ssl_config_file=/ssl"], "--ssl_config_file: SSL are not supported"),
])
def test_invalid_flag_combinations_are_refused(flags, message):
    with pytest.raises(ValueError) as raised:
        check(parse_flags(flags))
    assert message in str(raised.value)


def test_version_flag_and_startup_failure_exit_codes(tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "serving", *flags], cwd=REPO, capture_output=True,
                              text=True, timeout=120)

    version = run("--version")
    assert version.returncode == 0 and "TensorFlow ModelServer:" in version.stdout
    # main.cc prints the status on stdout and returns -1.
    failed = run("--model_name=m", f"--model_base_path={tmp_path}", "--port=0")
    assert failed.returncode == 255
    assert ("Failed to start server. Error: INVALID_ARGUMENT: At least one of "
            "server_options.grpc_port") in failed.stdout
    bad_config = tmp_path / "bad.config"
    bad_config.write_text("improperly formatted file")
    failed = run(f"--model_config_file={bad_config}", "--port=0", "--grpc_socket_path=/tmp/unused")
    assert failed.returncode == 255
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{bad_config}'" in failed.stdout
    # tensorflow_model_server_test.py (testBadModelConfig) looks for protobuf's complaint.
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in failed.stderr


def test_rest_port_equal_to_grpc_port_skips_rest_and_serves_grpc(model_store):
    from serving.client import connect

    port = free_port()
    server = ServerProcess(["--model_name=demo", f"--model_base_path={model_store['demo_v1'].parent}"],
                           port, port)
    try:
        deadline = time.monotonic() + 120
        while "Running gRPC ModelServer" not in server.log() and server.process.poll() is None:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert "Skipped exporting HTTP/REST API." in server.log()
        assert connect("grpc", "127.0.0.1", port).status("demo") == [(1, "AVAILABLE")]
    finally:
        assert server.stop() == 0
