"""--enable_batching on real servables and real servers: exact rows back, never mixed, full
queues refused, oversize requests refused or split, reloads drain, metrics under TF's names."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.bench.demo_model import sample_pixels
from serving.client import ClientError, GrpcClient, RestClient
from serving.server.core.errors import ServingError
from serving.server.management.batching.options import BatchingOptions
from serving.server.management.batching.scheduler import BatchScheduler
from serving.server.management.loader import load_servable
from serving.server.metrics import Metrics
from tests.serving.serving_fixtures import copy_version


def counting(servable):
    """Record the merged batches the servable runs: [(signature, {input: shape})]."""
    batches, original = [], servable.call

    def call(signature_name, merged):
        batches.append((signature_name, {name: value.shape for name, value in merged.items()}))
        return original(signature_name, merged)

    servable.call = call
    return batches


def run_concurrently(calls):
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_shapes_and_models_never_share_a_batch_and_rows_come_back_exactly(model_store):
    hpt = load_servable("hpt", 1, str(model_store["hpt_v1"]), {"serve"})
    demo = load_servable("demo", 1, str(model_store["demo_v1"]), {"serve"})
    hpt_batches, demo_batches = counting(hpt), counting(demo)
    metrics = Metrics()
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=16, batch_timeout_micros=100_000,
                                               num_batch_threads=2, allowed_batch_sizes=(8, 16)), metrics)
    scheduler.attach(hpt)
    scheduler.attach(demo)
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (2, 1), (1, 3), (3, 3), (2,), (1,)] * 3
    inputs = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    pixels = [sample_pixels(size, seed=seed) for seed, size in enumerate((1, 2, 3, 1))]
    try:
        results = run_concurrently(
            [lambda x=x: hpt.run("serving_default", {"x": x}) for x in inputs]
            + [lambda p=p: demo.run("serving_default", {"image": p}) for p in pixels])
    finally:
        scheduler.stop()
    for x, result in zip(inputs, results, strict=False):
        np.testing.assert_allclose(result["y"], 0.5 * x + 2, rtol=1e-6)
    for p, result in zip(pixels, results[len(inputs):], strict=True):
        want = demo.functions["serving_default"](image=p)
        np.testing.assert_allclose(result["probabilities"], want["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
    # One shape per merged batch, padded to an allowed size; fewer runs than calls.
    assert len(hpt_batches) < len(inputs)
    assert {shape["x"][1:] for _, shape in hpt_batches} == {(1,), (3,), ()}
    assert all(shape["x"][0] in (8, 16) for _, shape in hpt_batches)
    assert all(shape["image"][0] in (8, 16) for _, shape in demo_batches)
    page = metrics.page().decode()
    assert ':tensorflow:serving:batching_session:queuing_latency_bucket{le="100",thread_pool_name="model_server_batch_threads"}' in page
    assert f":tensorflow:serving:batching_session:wrapped_run_count {float(len(hpt_batches) + len(demo_batches))}" in page
    assert ':tensorflow:serving:batching_session:padding_size_count{execution_batch_size="8"}' in page
    assert ":tensorflow:serving:batching_session:input_batch_size_count 22.0" in page
    assert ":tensorflow:serving:batching_session:processed_batch_size_sum" in page


def test_oversize_requests_are_refused_or_split_as_tf_serving_does(model_store):
    hpt = load_servable("hpt", 1, str(model_store["hpt_v1"]), {"serve"})
    batches = counting(hpt)
    refuse = BatchScheduler(BatchingOptions(max_batch_size=4, num_batch_threads=1))
    refuse.attach(hpt)
    with pytest.raises(ServingError, match="^Task size 5 is larger than maximum input batch size 4$") as raised:
        hpt.run("serving_default", {"x": np.ones((5, 1), np.float32)})
    assert raised.value.code_name == "INVALID_ARGUMENT"
    refuse.detach(hpt)
    refuse.stop()
    split = BatchScheduler(BatchingOptions(max_batch_size=10, max_execution_batch_size=4,
                                           enable_large_batch_splitting=True, num_batch_threads=2))
    split.attach(hpt)
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    try:
        np.testing.assert_allclose(hpt.run("serving_default", {"x": x})["y"], 0.5 * x + 2)
    finally:
        split.stop()
    assert sorted(shape["x"][0] for _, shape in batches) == [2, 4, 4]


@pytest.fixture(scope="module")
def batching_server(model_store, start_server, tmp_path_factory):
    """A server batching demo and half_plus_two: batches of 8 (allowed 4, 8) after 5 ms."""
    root = tmp_path_factory.mktemp("batching")
    (root / "batching.config").write_text(
        "max_batch_size { value: 8 } batch_timeout_micros { value: 5000 } "
        "num_batch_threads { value: 2 } max_enqueued_batches { value: 100 } "
        "allowed_batch_sizes: 4 allowed_batch_sizes: 8\n")
    (root / "monitoring.config").write_text('prometheus_config { enable: true, path: "/metrics" }')
    (root / "models.config").write_text(
        f'model_config_list {{ config {{ name: "demo" base_path: "{model_store["demo_v1"].parent}" '
        f'model_platform: "tensorflow" }} config {{ name: "hpt" base_path: "{model_store["hpt_v1"].parent}" '
        'model_platform: "tensorflow" } }')
    return start_server([f"--model_config_file={root / 'models.config'}", "--enable_batching",
                         f"--batching_parameters_file={root / 'batching.config'}",
                         f"--monitoring_config_file={root / 'monitoring.config'}"])


def test_batched_answers_equal_unbatched_under_concurrent_clients(batching_server, demo_function):
    grpc_client = GrpcClient("127.0.0.1", batching_server.grpc_port)
    rest_client = RestClient("127.0.0.1", batching_server.rest_port)
    pixels = [sample_pixels(1 + seed % 3, seed=seed) for seed in range(24)]
    xs = [np.full((1 + seed % 2, 1), seed, np.float32) for seed in range(8)]
    calls = [lambda p=p, client=(grpc_client if index % 3 else rest_client):
             client.predict("demo", {"image": p}) for index, p in enumerate(pixels)]
    calls += [lambda x=x: grpc_client.predict("hpt", {"x": x}) for x in xs]
    results = run_concurrently(calls)
    for p, result in zip(pixels, results, strict=False):
        want = demo_function["serving_default"](image=p)
        np.testing.assert_allclose(result["probabilities"], want["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
        names = [name if isinstance(name, bytes) else name.encode() for name in result["class_name"].tolist()]
        assert names == want["class_name"].numpy().tolist()
    for x, result in zip(xs, results[len(pixels):], strict=True):
        np.testing.assert_allclose(result["y"], 0.5 * x + 2)
    page = urllib.request.urlopen(f"http://127.0.0.1:{batching_server.rest_port}/metrics", timeout=30).read().decode()
    runs = next(float(line.split()[-1]) for line in page.splitlines()
                if line.startswith(":tensorflow:serving:batching_session:wrapped_run_count "))
    assert 2 <= runs < len(calls)  # calls were merged
    assert ':tensorflow:serving:batching_session:processed_batch_size_bucket{le="8"}' in page


def test_oversize_request_is_invalid_argument_over_grpc_and_400_over_rest(batching_server):
    with pytest.raises(ClientError, match="Task size 9 is larger than maximum input batch size 8") as raised:
        GrpcClient("127.0.0.1", batching_server.grpc_port).predict("demo", {"image": sample_pixels(9)})
    assert raised.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ClientError) as raised:
        RestClient("127.0.0.1", batching_server.rest_port).predict("demo", {"image": sample_pixels(9)})
    assert raised.value.code == "HTTP 400"


def test_full_queue_answers_unavailable_and_503_at_once(model_store, start_server, tmp_path):
    # One batch of 2 may wait (5 s timeout): a call that cannot join it has nowhere to go.
    (tmp_path / "batching.config").write_text(
        "max_batch_size { value: 2 } batch_timeout_micros { value: 5000000 } "
        "num_batch_threads { value: 1 } max_enqueued_batches { value: 1 }")
    server = start_server([f"--model_base_path={model_store['hpt_v1'].parent}", "--model_name=hpt",
                           "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.config'}"])
    client = GrpcClient("127.0.0.1", server.grpc_port)
    waiting = ThreadPoolExecutor(1).submit(client.predict, "hpt", {"x": np.ones((1, 1), np.float32)})
    time.sleep(0.5)
    started = time.perf_counter()
    with pytest.raises(ClientError, match="batch scheduling queue to which this task was submitted is full") as raised:
        client.predict("hpt", {"x": np.ones((2, 1), np.float32)})
    assert raised.value.code == "UNAVAILABLE"
    with pytest.raises(ClientError) as raised:
        RestClient("127.0.0.1", server.rest_port).predict("hpt", {"x": np.ones((2, 1), np.float32)})
    assert raised.value.code == "HTTP 503"
    assert time.perf_counter() - started < 4.0  # refused at once, not once the batch ran
    np.testing.assert_allclose(waiting.result(timeout=30)["y"], [[2.5]])
    assert server.stop() == 0


def test_reload_with_queued_batches_loses_no_request(model_store, start_server, tmp_path):
    # A 60 s timeout keeps the calls queued until version 1 is unloaded; the unload must run
    # them (TF Serving's CloseAndWaitUntilEmpty), not drop them or wait the minute out.
    base = tmp_path / "demo"
    copy_version(model_store["demo_v1"], base, 1)
    (tmp_path / "batching.config").write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 60000000 } num_batch_threads { value: 2 }")
    server = start_server([f"--model_base_path={base}", "--model_name=demo", "--enable_batching",
                           f"--batching_parameters_file={tmp_path / 'batching.config'}",
                           "--file_system_poll_wait_seconds=1", "--enable_model_warmup=false"])
    clients = [GrpcClient("127.0.0.1", server.grpc_port, timeout=50) for _ in range(6)]
    pixels = [sample_pixels(1 + index % 2, seed=index) for index in range(len(clients))]
    pool = ThreadPoolExecutor(len(clients))
    started = time.perf_counter()
    futures = [pool.submit(client.predict, "demo", {"image": p}, version=1) for client, p in zip(clients, pixels, strict=True)]
    time.sleep(1.0)
    assert not any(future.done() for future in futures)  # queued, waiting for the batch
    copy_version(model_store["demo_v1"], base, 2)
    results = [future.result(timeout=50) for future in futures]
    assert time.perf_counter() - started < 40
    for p, result in zip(pixels, results, strict=True):
        assert result["probabilities"].shape == (len(p), 10)
    deadline = time.monotonic() + 20
    while "Unloaded servable version {name: demo version: 1}" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    assert server.stop() == 0


def test_detach_drains_the_servable_queue(model_store):
    hpt = load_servable("hpt", 1, str(model_store["hpt_v1"]), {"serve"})
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=64, batch_timeout_micros=60_000_000,
                                               num_batch_threads=1))
    scheduler.attach(hpt)
    results = []
    threads = [threading.Thread(target=lambda v=v: results.append(hpt.run("serving_default", {"x": np.full((1, 1), v, np.float32)})))
               for v in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.perf_counter()
    scheduler.detach(hpt)
    assert time.perf_counter() - started < 10
    for thread in threads:
        thread.join(timeout=10)
    scheduler.stop()
    assert sorted(float(result["y"][0, 0]) for result in results) == [2.0, 2.5, 3.0, 3.5, 4.0]


def test_batches_larger_than_the_default_handler_threads_form(model_store, start_server, tmp_path):
    # A batching call holds its handler thread until its batch runs: with the default 4
    # threads per core, 40 concurrent calls could never share fewer than 40 / (4 * cores) runs.
    (tmp_path / "batching.config").write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 500000 } num_batch_threads { value: 1 }")
    (tmp_path / "monitoring.config").write_text('prometheus_config { enable: true, path: "/metrics" }')
    server = start_server([f"--model_base_path={model_store['hpt_v1'].parent}", "--model_name=hpt",
                           "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.config'}",
                           f"--monitoring_config_file={tmp_path / 'monitoring.config'}"])
    clients = [GrpcClient("127.0.0.1", server.grpc_port) for _ in range(40)]
    xs = [np.full((1, 1), index, np.float32) for index in range(40)]
    results = run_concurrently([lambda c=c, x=x: c.predict("hpt", {"x": x}) for c, x in zip(clients, xs, strict=True)])
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_allclose(result["y"], 0.5 * x + 2)
    page = urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30).read().decode()
    runs = next(float(line.split()[-1]) for line in page.splitlines()
                if line.startswith(":tensorflow:serving:batching_session:wrapped_run_count "))
    assert runs <= 3, page
    assert server.stop() == 0
