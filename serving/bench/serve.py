"""`python -m serving.bench.serve` (make bench-serve): the server next to the in-process model, under load.

On the same seeded uint8 inputs, in one run, against servers started on free loopback
ports (the compatible server, or tensorflow_model_server with --binary):
  - latency at batch 1 and 32, one client: the in-process SavedModel call (the floor), gRPC,
    REST and a bare gRPC echo of the same bytes (the transport alone), taken in
    interleaved rounds (one call of each path per round, the order rotating), so a shared
    host's drift falls on every path alike; gRPC's batch-1 p50 minus the floor's against
    the 0.5 ms target;
  - under load (serving/bench/load_matrix.py): the in-process ceiling at batch 1 and at the
    batcher's max_batch_size, then gRPC and REST with batching off and on at 1, 8, 32 and
    64 closed-loop clients (client processes, not threads of this one), in interleaved
    rounds: throughput, p50, p99, share of the ceiling, and where the time goes.
Writes <output-dir>/serving.json and serving.md, with the host (CPU model, cores, vector
extensions, load average). Clients and server share the host's cores: compare rows of one
run, not runs. The servers run the kernels this process runs (`make bench-serve` sets
TF_ENABLE_ONEDNN_OPTS=0, the server's default).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import serving.client
from serving.bench import load_matrix
from serving.bench.load import ECHO_METHOD, LoadGenerator, request_payload
from serving.bench.servers import (
    MONITORING_PATH,
    BenchServer,
    EchoServer,
    model_inputs,
    monitoring_file,
    target_model,
)
from serving.common import cpu_description, write_report

BATCHES = (1, 32)
PATHS = ("in-process", "gRPC", "REST", "gRPC echo")
TARGET_GAP_MS = 0.5  # gRPC batch-1 p50 at most this far above the in-process call's
DEFAULT_BATCHING = Path(__file__).resolve().parents[2] / "configs" / "serving" / "batching_parameters.txt"


def percentiles(samples: list[float]) -> dict[str, float]:
    milliseconds = np.array(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 3)}


def time_calls(call, count: int, warmup: int = 20) -> list[float]:
    """Return `count` timings of `call`, run back to back."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def interleaved_latency(calls: dict[str, Callable], count: int, warmup: int = 20) -> dict[str, list[float]]:
    """Return `count` timings of each call, taken one call of each per round.

    The order rotates from round to round, so no path always follows the same one, and a
    slow spell of the machine lands on every path instead of on whichever ran then.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(count):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - started)
    return samples



def _latency(paths: dict[str, Callable], results: dict, args) -> None:
    """Fill results' one-client latency rows and the gRPC-vs-in-process target."""
    for batch in BATCHES:
        count = args.requests if batch == 1 else max(args.requests // 10, 30)
        calls = {path: make_call(batch) for path, make_call in paths.items()}
        results["latency"][f"in-process back to back batch {batch}"] = percentiles(time_calls(calls["in-process"], count))
        for path, timings in interleaved_latency(calls, count).items():
            results["latency"][f"{path} batch {batch}"] = percentiles(timings)
            print(path, batch, results["latency"][f"{path} batch {batch}"], flush=True)
    latency = results["latency"]
    gap = round(latency["gRPC batch 1"]["p50_ms"] - latency["in-process batch 1"]["p50_ms"], 3)
    results["target"] = {"grpc_b1_p50_above_in_process_ms": gap, "target_ms": TARGET_GAP_MS,
                         "met": gap <= TARGET_GAP_MS,
                         "echo_b1_p50_ms": latency["gRPC echo batch 1"]["p50_ms"],
                         "grpc_b1_p50_above_back_to_back_ms": round(
                             latency["gRPC batch 1"]["p50_ms"] - latency["in-process back to back batch 1"]["p50_ms"], 3)}


def run(args) -> dict:
    """Return the benchmark results (also written as JSON and markdown)."""
    import tensorflow as tf

    from serving.server.core.servable import onednn_enabled
    from serving.server.management.batching.options import BatchingOptions

    name, version_dir, temporary = target_model(args)
    batching = BatchingOptions.from_file(args.batching_params)
    signature = tf.saved_model.load(str(version_dir)).signatures[args.signature]
    inputs = {batch: model_inputs(version_dir, args.signature, batch) for batch in {*BATCHES, batching.max_batch_size}}
    input_name = next(iter(inputs[1]))
    gc.freeze()  # as the server does: keeps full collections off the loaded model's objects

    def in_process(batch):
        # numpy in, numpy out, as a client holds them: the same conversions the server does.
        def call():
            outputs = signature(**{key: tf.constant(value) for key, value in inputs[batch].items()})
            return {key: value.numpy() for key, value in outputs.items()}
        return call

    def over(client_class, port):
        def factory(batch):
            client = client_class("127.0.0.1", port)
            return lambda: client.predict(name, inputs[batch], signature_name=args.signature)
        return factory

    def echo(port):
        import grpc

        def factory(batch):
            method = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(ECHO_METHOD)
            payload = request_payload(name, inputs[batch], args.signature)
            return lambda: method(payload)
        return factory

    host = {**cpu_description(), "load_average": [round(value, 2) for value in os.getloadavg()]}
    results = {"model": name, "version_dir": str(version_dir), "signature": args.signature,
               "input": {"name": input_name, "shape": list(inputs[1][input_name].shape[1:]),
                         "dtype": str(inputs[1][input_name].dtype)},
               "host": host, "server": args.binary or "compatible",
               "batching_parameters": {"file": str(args.batching_params), **batching.__dict__},
               "kernels": "oneDNN" if onednn_enabled() else "TensorFlow's own (TF_ENABLE_ONEDNN_OPTS=0)",
               "concurrency": list(args.concurrency), "latency": {}}
    scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    monitoring = f"--monitoring_config_file={monitoring_file(scratch)}"
    servers, echo_server = {}, None
    try:
        servers["off"] = BenchServer(name, version_dir.parent, [monitoring, *args.server_flags], args.binary)
        servers["on"] = BenchServer(name, version_dir.parent, [monitoring, "--enable_batching",
                                    f"--batching_parameters_file={Path(args.batching_params).resolve()}",
                                    *args.server_flags], args.binary)
        echo_server = EchoServer()
        _latency({"in-process": in_process, "gRPC": over(serving.client.GrpcClient, servers["off"].grpc_port),
                  "REST": over(serving.client.RestClient, servers["off"].rest_port), "gRPC echo": echo(echo_server.port)},
                 results, args)
        results["ceiling"] = {"single": load_matrix.in_process_rate(in_process(1), 1, args.seconds),
                              "batched": load_matrix.in_process_rate(in_process(batching.max_batch_size),
                                                                    batching.max_batch_size, args.seconds)}
        load_args = argparse.Namespace(concurrency=args.concurrency, rounds=args.rounds, seconds=args.seconds,
                                       monitoring_path=MONITORING_PATH)
        with LoadGenerator(name, inputs[1], args.signature, args.client_processes) as load:
            results["echo"] = load_matrix.echo_rows(load, echo_server, load_args)
            results["load"] = load_matrix.load_matrix(load, servers, load_args)

        def model_cpu_ms_per_image(batch: float) -> float:
            size = max(int(round(batch)), 1)
            inputs.setdefault(size, model_inputs(version_dir, args.signature, size))
            return load_matrix.in_process_rate(in_process(size), size, min(args.seconds, 1.0))["cpu_ms_per_image"]

        results["analysis"] = load_matrix.analyse(results, batching.batch_timeout_micros, model_cpu_ms_per_image)
    finally:
        for server in [*servers.values(), echo_server]:
            if server is not None:
                server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return results


def markdown(results: dict) -> str:
    """Return the results as markdown: host, one-client latency, then the load section."""
    host = results["host"]
    lines = [f"Host: {host['cpu_model']}, {host['cores']} cores ({host['instruction_sets']}), load average "
             f"{', '.join(str(value) for value in host['load_average'])} at the start; server: {results['server']}; "
             f"kernels: {results['kernels']}.",
             f"Model `{results['model']}` signature `{results['signature']}`, input "
             f"{results['input']['dtype']} {results['input']['shape']}; batching parameters "
             f"`{results['batching_parameters']['file']}`.",
             f"gRPC batch-1 p50 is {results['target']['grpc_b1_p50_above_in_process_ms']} ms above the "
             f"in-process call (target: at most {results['target']['target_ms']} ms: "
             f"{'met' if results['target']['met'] else 'missed'}); a bare gRPC echo of the same bytes takes "
             f"{results['target']['echo_b1_p50_ms']} ms.", "",
             "| path (one client) | b1 p50 ms | b1 p99 ms | b32 p50 ms | b32 p99 ms |", "|---|---|---|---|---|"]
    for path in PATHS:
        latency = [results["latency"][f"{path} batch {batch}"] for batch in BATCHES]
        lines.append(f"| {path} | {latency[0]['p50_ms']} | {latency[0]['p99_ms']} | {latency[1]['p50_ms']} | "
                     f"{latency[1]['p99_ms']} |")
    warm = [results["latency"][f"in-process back to back batch {batch}"]["p50_ms"] for batch in BATCHES]
    lines += ["", f"In-process back to back (warm threads and caches): b1 p50 {warm[0]} ms, b32 p50 {warm[1]} ms; "
              f"gRPC's b1 p50 is {results['target']['grpc_b1_p50_above_back_to_back_ms']} ms above that.", ""]
    return "\n".join(lines) + "\n" + load_matrix.markdown(results)


def _concurrency(text: str) -> list[int]:
    values = [int(item) for item in text.split(",") if item.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bench.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default="saved_models")
    parser.add_argument("--demo", action="store_true", help="Benchmark the demo CNN even if saved_models/ has models.")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--requests", type=int, default=1000,
                        help="Timed one-client rounds at batch 1 (a tenth, at least 30, at batch 32).")
    parser.add_argument("--seconds", type=float, default=3.0, help="Duration of each load measurement.")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds of the load matrix.")
    parser.add_argument("--concurrency", type=_concurrency, default=list(load_matrix.CONCURRENCY))
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--batching-params", default=str(DEFAULT_BATCHING),
                        help="BatchingParameters text file for the batching-on server.")
    parser.add_argument("--binary", default=None, help="Benchmark this tensorflow_model_server instead of ours.")
    parser.add_argument("--output-dir", default="bench/results")
    parser.add_argument("server_flags", nargs="*", help="Extra flags for the started servers, after '--'.")
    args = parser.parse_args(argv)
    if not Path(args.batching_params).is_file():
        parser.error(f"--batching-params: no such file: {args.batching_params!r}")
    results = run(args)
    write_report(args.output_dir, "serving", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
