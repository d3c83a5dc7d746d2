"""The load half of `make bench-serve`: batching off and on, under 1 to 64 concurrent clients.

Measured in one run on the same request: the in-process SavedModel at batch 1 and at the
batch the batcher forms (the ceiling a server on this host could reach), then the server
over gRPC and REST, batching off and on, at each concurrency level, in interleaved rounds
(every cell once per round, the order rotating, so a slow spell of a shared host lands on
all cells alike). Each cell reports throughput, p50/p99 latency, the share of the ceiling
and the CPU time per request of the clients and of the server. Where the time goes is
measured, not guessed: a bare gRPC round trip of the same bytes (an echo server), the
clients' CPU, the server's CPU less the model's (the model's CPU per image from the
in-process call at the batch size the server actually ran), and for batching the mean
queueing delay and processed batch size from the server's own batching metrics.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

import numpy as np

from serving.bench.load import LoadGenerator

CONCURRENCY = (1, 8, 32, 64)
PROTOCOLS = ("grpc", "rest")
_QUEUING = ":tensorflow:serving:batching_session:queuing_latency"
_PROCESSED = ":tensorflow:serving:batching_session:processed_batch_size"
_PADDING = ":tensorflow:serving:batching_session:padding_size"
_RUNS = ":tensorflow:serving:batching_session:wrapped_run_count"


def scrape(rest_port: int, path: str) -> dict[str, float]:
    """Return the batching metrics' running totals from a server's Prometheus page."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{rest_port}{path}", timeout=30).read().decode()
    totals: dict[str, float] = {}
    for line in page.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in (f"{_QUEUING}_sum", f"{_QUEUING}_count", f"{_PROCESSED}_sum", f"{_PROCESSED}_count",
                    f"{_PADDING}_sum", _RUNS):
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def batching_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return mean queueing (ms) and mean rows per batch (padding excluded) between two scrapes."""
    def delta(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    queued, batches = delta(f"{_QUEUING}_count"), delta(f"{_PROCESSED}_count")
    return {"mean_queuing_ms": round(delta(f"{_QUEUING}_sum") / queued / 1e3, 3) if queued else float("nan"),
            "mean_processed_batch": round((delta(f"{_PROCESSED}_sum") - delta(f"{_PADDING}_sum")) / batches, 2)
            if batches else float("nan")}


def in_process_rate(call: Callable, batch: int, seconds: float) -> dict[str, float]:
    """Return images/s and CPU ms per image of `call` (one batch of `batch`) back to back."""
    for _ in range(5):
        call()
    calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        call()
        calls += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"batch": batch, "images_per_s": round(calls * batch / elapsed, 1),
            "ms_per_call": round(elapsed * 1e3 / calls, 3), "cpu_ms_per_image": round(cpu * 1e3 / (calls * batch), 4)}


def load_matrix(load: LoadGenerator, servers: dict, args) -> dict[str, dict]:
    """Return {cell name: measurement} for every (batching, protocol, clients), over rounds.

    `servers` maps "off"/"on" to a started BenchServer. Figures are the median over rounds.
    """
    cells = [(mode, protocol, clients) for mode in servers for protocol in PROTOCOLS for clients in args.concurrency]
    rounds: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        shift = round_index % len(cells)
        for mode, protocol, clients in cells[shift:] + cells[:shift]:
            server = servers[mode]
            before = scrape(server.rest_port, args.monitoring_path) if mode == "on" else {}
            result = load.run(server.grpc_port if protocol == "grpc" else server.rest_port, clients,
                              args.seconds, protocol=protocol, server_pid=server.process.pid).as_dict()
            if mode == "on":
                result.update(batching_deltas(before, scrape(server.rest_port, args.monitoring_path)))
            key = f"{protocol} batching {mode} x{clients}"
            rounds.setdefault(key, []).append(result)
            print(f"round {round_index + 1}: {key}: {result['throughput_rps']} req/s, p50 {result['p50_ms']} ms, "
                  f"p99 {result['p99_ms']} ms" + (f", {result['errors']} errors" if result["errors"] else ""), flush=True)
    return {key: _median(values) for key, values in rounds.items()}


def _median(values: list[dict]) -> dict:
    merged = dict(values[-1])
    for key, value in values[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            middle = float(np.median([entry[key] for entry in values]))
            merged[key] = round(middle) if isinstance(value, int) else round(middle, 3)
    merged["rounds"] = [{k: entry[k] for k in ("throughput_rps", "p50_ms", "p99_ms")} for entry in values]
    return merged


def echo_rows(load: LoadGenerator, echo_server, args) -> dict[str, dict]:
    """Return the bare gRPC round trip (same bytes, no model, no parsing) at each concurrency."""
    return {f"echo x{clients}": load.run(echo_server.port, clients, args.seconds, protocol="echo",
                                         server_pid=echo_server.process.pid).as_dict()
            for clients in args.concurrency}


def analyse(results: dict, batch_timeout_micros: int, model_cpu_ms_per_image: Callable[[float], float]) -> dict:
    """Return the issue's targets and the per-request breakdown of the top-concurrency gRPC cells."""
    load, top = results["load"], max(results["concurrency"])
    ceiling = results["ceiling"]["batched"]["images_per_s"]
    for cell in load.values():
        cell["share_of_ceiling"] = round(cell["throughput_rps"] / ceiling, 3)
    # The targets need the 1- and 32-client cells; a run without them reports None.
    off1, on1 = load.get("grpc batching off x1"), load.get("grpc batching on x1")
    off32, on32 = load.get("grpc batching off x32"), load.get("grpc batching on x32")
    targets = {
        "grpc_x32_on_over_off": (round(on32["throughput_rps"] / off32["throughput_rps"], 2)
                                 if off32 and on32 else None),
        "grpc_x32_on_over_off_target": 2.5,
        "grpc_x1_p50_on_minus_off_ms": (round(on1["p50_ms"] - off1["p50_ms"], 3)
                                        if off1 and on1 else None),
        "grpc_x1_p50_allowed_ms": round(batch_timeout_micros / 1e3 + 0.5, 3),
    }
    ratio, gap = targets["grpc_x32_on_over_off"], targets["grpc_x1_p50_on_minus_off_ms"]
    targets["throughput_met"] = None if ratio is None else ratio >= 2.5
    targets["latency_met"] = None if gap is None else gap <= targets["grpc_x1_p50_allowed_ms"]
    breakdown = {}
    for mode in ("off", "on"):
        cell = load[f"grpc batching {mode} x{top}"]
        batch = cell.get("mean_processed_batch", 1.0)
        model = model_cpu_ms_per_image(batch if batch == batch else 1.0)
        cpu = cell["client_cpu_ms_per_request"] + cell["server_cpu_ms_per_request"]
        breakdown[mode] = {
            "clients": top, "throughput_rps": cell["throughput_rps"], "share_of_ceiling": cell["share_of_ceiling"],
            "client_cpu_ms": cell["client_cpu_ms_per_request"],
            "server_cpu_ms": cell["server_cpu_ms_per_request"],
            "model_cpu_ms": round(model, 4),
            "server_cpu_outside_model_ms": round(cell["server_cpu_ms_per_request"] - model, 4),
            "cpu_bound_rps": round(results["host"]["cores"] * 1e3 / cpu, 1) if cpu else None,
            "mean_queuing_ms": cell.get("mean_queuing_ms"), "mean_processed_batch": cell.get("mean_processed_batch"),
            "echo_p50_ms": results["echo"].get(f"echo x{top}", {}).get("p50_ms"),
            "echo_server_cpu_ms": results["echo"].get(f"echo x{top}", {}).get("server_cpu_ms_per_request"),
            "echo_throughput_rps": results["echo"].get(f"echo x{top}", {}).get("throughput_rps"),
        }
    return {"targets": targets, "breakdown": breakdown}


def markdown(results: dict) -> str:
    """Return the load section of serving.md: the matrix, the targets, where the time goes."""
    ceiling = results["ceiling"]
    lines = [f"In-process ceiling: batch 1 {ceiling['single']['images_per_s']} images/s, batch "
             f"{ceiling['batched']['batch']} {ceiling['batched']['images_per_s']} images/s "
             f"({ceiling['batched']['cpu_ms_per_image']} CPU ms/image).", "",
             "| path | clients | req/s | p50 ms | p99 ms | share of ceiling | client CPU ms/req | server CPU ms/req | mean queueing ms | mean batch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, cell in results["load"].items():
        lines.append(f"| {key.rsplit(' x', 1)[0]} | {cell['clients']} | {cell['throughput_rps']} | {cell['p50_ms']} | "
                     f"{cell['p99_ms']} | {cell['share_of_ceiling']:.1%} | {cell['client_cpu_ms_per_request']} | "
                     f"{cell['server_cpu_ms_per_request']} | {cell.get('mean_queuing_ms', '')} | "
                     f"{cell.get('mean_processed_batch', '')} |")
    for cell in results["echo"].values():
        lines.append(f"| bare gRPC echo (transport only) | {cell['clients']} | {cell['throughput_rps']} | "
                     f"{cell['p50_ms']} | {cell['p99_ms']} | | {cell['client_cpu_ms_per_request']} | "
                     f"{cell['server_cpu_ms_per_request']} | | |")
    targets = results["analysis"]["targets"]
    lines += ["", f"Batching on / off, gRPC, 32 clients: {targets['grpc_x32_on_over_off']}x (target >= 2.5x: "
              f"{_verdict(targets['throughput_met'], 32)}). One client, p50 on - off: "
              f"{targets['grpc_x1_p50_on_minus_off_ms']} ms (allowed: batch_timeout + 0.5 = "
              f"{targets['grpc_x1_p50_allowed_ms']} ms: {_verdict(targets['latency_met'], 1)}).", "",
              "Where a request's time goes at the top concurrency (gRPC; CPU ms per request, measured):", "",
              "| batching | req/s | share of ceiling | client CPU | server CPU | of which model | server outside the model | bare echo server CPU | CPU-bound req/s | queueing ms | mean batch | bare echo p50 ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, row in results["analysis"]["breakdown"].items():
        lines.append(f"| {mode} | {row['throughput_rps']} | {row['share_of_ceiling']:.1%} | {row['client_cpu_ms']} | "
                     f"{row['server_cpu_ms']} | {row['model_cpu_ms']} | {row['server_cpu_outside_model_ms']} | "
                     f"{row['echo_server_cpu_ms']} | {row['cpu_bound_rps']} | {row['mean_queuing_ms']} | {row['mean_processed_batch']} | {row['echo_p50_ms']} |")
    return "\n".join(lines) + "\n"


def _verdict(met: bool | None, clients: int) -> str:
    if met is None:
        return f"not measured: --concurrency has no {clients}"
    return "met" if met else "missed"
