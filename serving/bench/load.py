"""Closed-loop load from client processes: what `make bench-serve` and `make tune-batching` send.

Each client is a thread with its own connection that sends one request, waits for the
answer and sends the next (closed loop, as a service's callers do). Clients are spread over
a few spawned processes so that the clients' own CPU time does not serialise on one
interpreter lock; the processes start once and serve every measurement. A measurement
starts in every process at the same wall-clock instant, discards a warm-up, and counts the
requests that start and finish inside the window. Besides throughput and latency it
reports the clients' CPU time per request (process CPU over the window), so a benchmark can
say how much of the host the load itself took.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

_WORKER: dict = {}
ECHO_METHOD = "/bench.Echo/Echo"


@dataclass(frozen=True)
class LoadResult:
    """One measurement: `clients` closed-loop clients for `seconds`."""

    protocol: str
    clients: int
    seconds: float
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    client_cpu_ms_per_request: float
    server_cpu_ms_per_request: float = float("nan")
    first_error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _initialise(model: str, signature_name: str, inputs: dict[str, np.ndarray]) -> None:
    import serving.client  # noqa: F401  (pay for importing TensorFlow and gRPC before any timing)

    _WORKER.update(model=model, signature_name=signature_name, inputs=inputs)


def _ready(_index: int) -> int:
    return os.getpid()


def _drive(protocol: str, port: int, clients: int, start_at: float, warmup: float, seconds: float):
    """Run `clients` closed-loop clients here; return (latencies, errors, cpu, first error, answers)."""
    from serving.client import ClientError, connect

    model, signature_name, inputs = _WORKER["model"], _WORKER["signature_name"], _WORKER["inputs"]
    window_start, window_end = start_at + warmup, start_at + warmup + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors, completed = [0] * clients, [0] * clients
    first_error: list[str] = []
    connections = [(EchoClient(port, inputs) if protocol == "echo" else connect(protocol, "127.0.0.1", port, timeout=60))
                   for _ in range(clients)]
    for connection in connections:  # connect, and fetch REST's output types, before timing
        connection.predict(model, inputs, signature_name=signature_name)
    if time.time() > start_at:  # too late to start with the other processes: the caller retries
        return [], 0, 0.0, "", -1

    def client(index: int) -> None:
        connection, own = connections[index], latencies[index]
        while (now := time.time()) < start_at:
            time.sleep(min(start_at - now, 0.01))
        while True:
            started = time.time()
            if started >= window_end:
                return
            try:
                connection.predict(model, inputs, signature_name=signature_name)
            except ClientError as error:
                if started >= window_start:
                    errors[index] += 1
                    first_error[:] = first_error or [str(error)[:200]]
                continue
            finished = time.time()
            if window_start <= finished <= window_end:
                completed[index] += 1  # throughput: every answer inside the window
                if started >= window_start:
                    own.append(finished - started)

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    _sleep_until(window_start)
    cpu_started = time.process_time()
    _sleep_until(window_end)
    cpu = time.process_time() - cpu_started
    for thread in threads:
        thread.join()
    for connection in connections:
        connection.close()
    return [value for own in latencies for value in own], sum(errors), cpu, "".join(first_error), sum(completed)


class LoadGenerator:
    """A pool of client processes sending one fixed request to a server."""

    def __init__(self, model: str, inputs: dict[str, np.ndarray], signature_name: str = "serving_default",
                 processes: int = 2):
        self.processes = max(processes, 1)
        context = multiprocessing.get_context("spawn")  # no inherited TF or gRPC state
        self._pool = context.Pool(self.processes, initializer=_initialise,
                                  initargs=(model, signature_name, inputs))
        self._pool.map(_ready, range(self.processes * 4), chunksize=1)  # every process up
        self.start_delay = 1.0

    def run(self, port: int, clients: int, seconds: float, *, protocol: str = "grpc",
            warmup: float = 0.5, server_pid: int | None = None) -> LoadResult:
        """Return throughput, p50/p99 latency and client CPU of `clients` clients for `seconds`.

        `protocol` is grpc, rest or echo (a bare gRPC round trip of the same payload, to an
        `echo_server`); with `server_pid`, the server's CPU time per request too.
        """
        for _ in range(3):
            result = self._run_once(port, clients, seconds, protocol, warmup, server_pid)
            if result is not None:
                return result
            self.start_delay *= 2  # a process opened its connections too late: give them longer
        raise RuntimeError(f"client processes could not open {clients} connections in {self.start_delay} s")

    def _run_once(self, port, clients, seconds, protocol, warmup, server_pid) -> LoadResult | None:
        shares = [clients // self.processes + (index < clients % self.processes) for index in range(self.processes)]
        start_at = time.time() + self.start_delay  # every process has its connections open by then
        jobs = [(protocol, port, share, start_at, warmup, seconds) for share in shares if share]
        pending = self._pool.starmap_async(_drive, jobs)
        server_cpu = float("nan")
        if server_pid is not None:
            _sleep_until(start_at + warmup)
            cpu_started = process_cpu_seconds(server_pid)
            _sleep_until(start_at + warmup + seconds)
            server_cpu = process_cpu_seconds(server_pid) - cpu_started
        parts = pending.get()
        if any(part[4] < 0 for part in parts):
            return None
        latencies = np.array([value for part in parts for value in part[0]]) * 1e3
        requests = sum(part[4] for part in parts)
        cpu = sum(part[2] for part in parts)
        return LoadResult(
            protocol=protocol, clients=clients, seconds=seconds, requests=requests,
            errors=sum(part[1] for part in parts),
            throughput_rps=round(requests / seconds, 1),
            p50_ms=round(float(np.percentile(latencies, 50)), 3) if len(latencies) else float("nan"),
            p99_ms=round(float(np.percentile(latencies, 99)), 3) if len(latencies) else float("nan"),
            client_cpu_ms_per_request=round(cpu * 1e3 / requests, 3) if requests else float("nan"),
            server_cpu_ms_per_request=round(server_cpu * 1e3 / requests, 3) if requests else float("nan"),
            first_error=next((part[3] for part in parts if part[3]), ""),
        )

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.005))


def process_cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU seconds so far (Linux /proc), its threads included."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_payload(model: str, inputs: dict[str, np.ndarray], signature_name: str = "") -> bytes:
    """Return the serialized PredictRequest the gRPC client sends for `inputs` (the echo payload)."""
    from tensorflow_serving.apis import predict_pb2

    from serving.client.grpc_client import model_spec
    from serving.codec import to_tensor_proto

    request = predict_pb2.PredictRequest(model_spec=model_spec(model, signature_name))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(np.asarray(value), as_content=True))
    return request.SerializeToString()


class EchoClient:
    """A gRPC channel calling the echo server with the bytes of a real PredictRequest."""

    def __init__(self, port: int, inputs: dict[str, np.ndarray]):
        import grpc

        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._call = self._channel.unary_unary(ECHO_METHOD)
        self._payload = request_payload(_WORKER.get("model", "echo"), inputs)

    def predict(self, *_args, **_kwargs) -> bytes:
        return self._call(self._payload, timeout=60)

    def close(self) -> None:
        self._channel.close()


def echo_server(port: int, threads: int = 8):
    """Return a started gRPC server answering ECHO_METHOD with the request's bytes."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})
    server = grpc.server(ThreadPoolExecutor(max_workers=threads), handlers=(handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


if __name__ == "__main__":  # python -m serving.bench.load PORT: run an echo server until killed
    echo = echo_server(int(sys.argv[1]))
    print("echo server ready", flush=True)
    echo.wait_for_termination()
