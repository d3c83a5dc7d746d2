"""`python -m serving.bench` (make bench-serve): serving latency and throughput vs in-process.

Starts the compatible server on free loopback ports (or measures one already running, e.g.
the real tensorflow_model_server, with --grpc-port/--rest-port) and measures, on the same
seeded uint8 inputs:
  - p50/p99 latency at batch 1 and 32: in-process SavedModel call (the floor), gRPC, REST,
    taken in interleaved rounds (one call of each path per round, the order rotating), so
    a shared host's drift in speed falls on all three alike;
  - gRPC's batch-1 p50 minus the floor's, against the 1 ms target; and, for reference, the
    in-process call back to back (nothing in between: TF's threads and the caches stay
    warm, which no served request finds);
  - throughput (requests/s, batch 1) with 1, 8 and 32 concurrent clients.
Writes <output-dir>/serving.json and serving.md. Clients are threads of this process, so
on a small machine they compete with the server for CPU: compare rows of one run, not runs.
The started server runs the kernels this process runs (`make bench-serve` sets
TF_ENABLE_ONEDNN_OPTS=0, the server's default).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import serving.client
from serving.common import free_port, list_versions

BATCHES = (1, 32)
CONCURRENCY = (1, 8, 32)
PATHS = ("in-process", "gRPC", "REST")
TARGET_GAP_MS = 1.0  # gRPC batch-1 p50 at most this far above the in-process call's


def find_model(models_dir: Path) -> tuple[str, Path] | None:
    """Return (name, latest version folder) of the first model under `models_dir`, if any."""
    for base in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        versions = list_versions(base) if base.is_dir() else {}
        if versions and not base.name.startswith("."):
            return base.name, Path(versions[max(versions)])
    return None


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


def throughput(make_call, clients: int, seconds: float) -> float:
    """Return completed calls per second with `clients` threads calling for `seconds`."""
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()
    done, stop = [0] * clients, threading.Event()

    def worker(index):
        while not stop.is_set():
            calls[index]()
            done[index] += 1

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return round(sum(done) / (time.perf_counter() - started), 1)


class _Server:
    """The compatible server as a subprocess, for the duration of the benchmark."""

    def __init__(self, name: str, base_path: Path, extra_flags: list[str]):
        self.grpc_port, self.rest_port = free_port(), free_port()
        command = [sys.executable, "-m", "serving", f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                   f"--model_name={name}", f"--model_base_path={base_path.resolve()}", *extra_flags]
        # The server runs the kernels this process runs, so the floor is comparable.
        from serving.server.core.servable import onednn_enabled  # imports TensorFlow

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_ENABLE_ONEDNN_OPTS": "1" if onednn_enabled() else "0"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in self.process.stdout:
            if "Exporting HTTP/REST API" in line:
                return
        raise SystemExit("the server did not start; run it by hand to see why: " + " ".join(command))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def _target_model(args) -> tuple[str, Path, Path | None]:
    """Return (name, version folder, temporary folder to delete or None)."""
    found = None if args.demo else find_model(Path(args.models_dir))
    if found is not None:
        return (*found, None)
    from serving.demo_model import export_demo_model

    temporary = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    print("no model under saved_models/ (or --demo): benchmarking the demo CNN (serving/demo_model.py)")
    return "demo", export_demo_model(temporary / "demo", 1), temporary


def _measure(paths: dict, results: dict, args) -> None:
    """Fill results' latency, target and throughput rows for every path (name -> call factory)."""
    for batch in BATCHES:
        count = args.requests if batch == 1 else max(args.requests // 10, 30)
        results["latency"][f"in-process back to back batch {batch}"] = percentiles(
            time_calls(paths["in-process"](batch), count))
        samples = interleaved_latency({path: make_call(batch) for path, make_call in paths.items()}, count)
        for path, timings in samples.items():
            results["latency"][f"{path} batch {batch}"] = percentiles(timings)
            print(path, batch, results["latency"][f"{path} batch {batch}"], flush=True)
    latency = results["latency"]
    gap = round(latency["gRPC batch 1"]["p50_ms"] - latency["in-process batch 1"]["p50_ms"], 3)
    results["target"] = {"grpc_b1_p50_above_in_process_ms": gap, "target_ms": TARGET_GAP_MS,
                         "met": gap <= TARGET_GAP_MS,
                         "grpc_b1_p50_above_back_to_back_ms": round(
                             latency["gRPC batch 1"]["p50_ms"] - latency["in-process back to back batch 1"]["p50_ms"], 3)}
    for path, make_call in paths.items():
        for clients in CONCURRENCY:
            rps = throughput(lambda make_call=make_call: make_call(1), clients, args.seconds)
            results["throughput_rps"][f"{path} x{clients}"] = rps
            print(path, f"x{clients}", rps, "req/s", flush=True)


def run(args) -> dict:
    """Return the benchmark results (also written as JSON and markdown)."""
    import tensorflow as tf

    from serving.server.core.servable import onednn_enabled

    name, version_dir, temporary = _target_model(args)
    signature = tf.saved_model.load(str(version_dir)).signatures[args.signature]
    input_name, spec = next(iter(signature.structured_input_signature[1].items()))
    shape = [dim if dim is not None else 1 for dim in spec.shape.as_list()[1:]]
    rng = np.random.default_rng(0)
    inputs = {batch: rng.integers(0, 256, size=(batch, *shape)).astype(spec.dtype.as_numpy_dtype) for batch in BATCHES}
    server = None if args.grpc_port else _Server(name, version_dir.parent, args.server_flags)
    grpc_port, rest_port = (args.grpc_port, args.rest_port) if args.grpc_port else (server.grpc_port, server.rest_port)
    gc.freeze()  # as the server does: keeps full collections off the loaded model's objects

    def in_process(batch):
        # numpy in, numpy out, as a client holds them: the same conversions the server does.
        def call():
            outputs = signature(**{input_name: tf.constant(inputs[batch])})
            return {key: value.numpy() for key, value in outputs.items()}
        return call

    def over(client_class, port):
        def factory(batch):
            client = client_class("127.0.0.1", port)
            return lambda: client.predict(name, {input_name: inputs[batch]}, signature_name=args.signature)
        return factory

    results = {"model": name, "version_dir": str(version_dir), "signature": args.signature,
               "input": {"name": input_name, "shape": shape, "dtype": spec.dtype.name},
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_average": os.getloadavg()},
               "kernels": "oneDNN" if onednn_enabled() else "TensorFlow's own (TF_ENABLE_ONEDNN_OPTS=0)",
               "latency": {}, "throughput_rps": {}}
    try:
        _measure({"in-process": in_process, "gRPC": over(serving.client.GrpcClient, grpc_port),
                  "REST": over(serving.client.RestClient, rest_port)}, results, args)
    finally:
        if server is not None:
            server.stop()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return results


def markdown(results: dict) -> str:
    """Return the results as a markdown table (one row per path)."""
    lines = [f"Model `{results['model']}` signature `{results['signature']}`, input "
             f"{results['input']['dtype']} {results['input']['shape']}; {results['machine']['cpus']} CPUs, "
             f"load average {', '.join(f'{x:.1f}' for x in results['machine']['load_average'])}; "
             f"kernels: {results['kernels']}.",
             f"gRPC batch-1 p50 is {results['target']['grpc_b1_p50_above_in_process_ms']} ms above the "
             f"in-process call (target: at most {results['target']['target_ms']} ms: "
             f"{'met' if results['target']['met'] else 'missed'}).", "",
             "| path | b1 p50 ms | b1 p99 ms | b32 p50 ms | b32 p99 ms | x1 req/s | x8 req/s | x32 req/s |",
             "|---|---|---|---|---|---|---|---|"]
    for path in PATHS:
        latency = [results["latency"][f"{path} batch {batch}"] for batch in BATCHES]
        rates = [results["throughput_rps"][f"{path} x{clients}"] for clients in CONCURRENCY]
        cells = [latency[0]["p50_ms"], latency[0]["p99_ms"], latency[1]["p50_ms"], latency[1]["p99_ms"], *rates]
        lines.append(f"| {path} | " + " | ".join(str(cell) for cell in cells) + " |")
    warm = [results["latency"][f"in-process back to back batch {batch}"]["p50_ms"] for batch in BATCHES]
    lines += ["", f"In-process back to back (warm threads and caches): b1 p50 {warm[0]} ms, b32 p50 {warm[1]} ms; "
              f"gRPC's b1 p50 is {results['target']['grpc_b1_p50_above_back_to_back_ms']} ms above that."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default="saved_models")
    parser.add_argument("--demo", action="store_true", help="Benchmark the demo CNN even if saved_models/ has models.")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--requests", type=int, default=1000,
                        help="Timed rounds at batch 1 (a tenth, at least 30, at batch 32).")
    parser.add_argument("--seconds", type=float, default=4.0, help="Duration of each throughput run.")
    parser.add_argument("--grpc-port", type=int, default=0, help="Measure a server already running here.")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--output-dir", default="bench/results")
    parser.add_argument("server_flags", nargs="*", help="Extra flags for the started server, after '--'.")
    args = parser.parse_args(argv)
    results = run(args)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "serving.md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {output / 'serving.json'} and {output / 'serving.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
