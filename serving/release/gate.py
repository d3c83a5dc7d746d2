"""The promotion gate: does this version load and answer in a real server, as it does in-process?

Like TFX's InfraValidator, it starts a model server (the compatible one, `python -m
serving`, a subprocess on free loopback ports) with a config holding only the candidate
version, waits for it to become AVAILABLE (which replays its warmup requests), then sends
the warmup requests and one request per sample input over gRPC and over REST, and checks
every answer against the SavedModel called in this process: float outputs within
`tolerance`, every other output equal. The p99 latency of the sample requests, on each
protocol, must stay within `p99_budget_ms`. Any failure raises GateError naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.client import ClientError, GrpcClient, RestClient
from serving.codec import to_ndarray
from serving.common import free_port, stop_process
from serving.release.registry_config import ServedModel, build_config
from serving.server.management import config as config_lib
from serving.warmup_requests import WARMUP_FILE

REPO = Path(__file__).resolve().parents[2]


class GateError(RuntimeError):
    """The candidate failed the gate; the message is one line saying why."""


@dataclass(frozen=True)
class GateReport:
    requests: int  # answers compared, both protocols together
    max_abs_diff: float
    p99_ms: dict[str, float]  # per protocol


def warmup_requests(version_dir: Path) -> list:
    """Return the PredictRequests of a version's warmup file ([] if it has none)."""
    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return []
    requests = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        record = prediction_log_pb2.PredictionLog.FromString(raw)
        if record.WhichOneof("log_type") == "predict_log":
            requests.append(record.predict_log.request)
    return requests


class _Server:
    """A `python -m serving` subprocess serving one config; its output kept for the error."""

    def __init__(self, config_path: Path):
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.lines: list[str] = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", f"--port={self.grpc_port}",
             f"--rest_api_port={self.rest_port}", f"--model_config_file={config_path}",
             "--max_num_load_retries=0", "--file_system_poll_wait_seconds=0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("Exporting HTTP/REST API" in line for line in self.lines):
                return
            if self.process.poll() is not None:
                failed = [line for line in self.lines if "Failed to start server" in line]
                raise GateError((failed or self.lines[-1:] or ["it exited"])[-1][:600])
            time.sleep(0.1)
        raise GateError(f"the server did not start within {timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)


def _compare(served: dict[str, np.ndarray], expected: dict[str, np.ndarray], tolerance: float,
             what: str) -> float:
    """Return the max |difference| of float outputs; raise GateError on any disagreement."""
    if set(served) != set(expected):
        raise GateError(f"{what}: outputs {sorted(served)} differ from in-process {sorted(expected)}")
    worst = 0.0
    for name, value in expected.items():
        answer = np.asarray(served[name])
        if answer.shape != value.shape:
            raise GateError(f"{what}: output {name!r} has shape {list(answer.shape)}, "
                            f"in-process {list(value.shape)}")
        if value.dtype.kind == "f":
            difference = float(np.max(np.abs(answer.astype(np.float64) - value), initial=0.0))
            worst = max(worst, difference)
            if not difference <= tolerance:
                raise GateError(f"{what}: output {name!r} differs from in-process by "
                                f"{difference:.3g} > tolerance {tolerance:g}")
        elif not np.array_equal(answer, value):
            raise GateError(f"{what}: output {name!r} differs from in-process")
    return worst


def _p99_ms(seconds: list[float]) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, 99)) if seconds else 0.0


def check(name: str, version_dir: Path, sample_inputs: dict[str, np.ndarray], *,
          tolerance: float, p99_budget_ms: float, start_timeout: float = 180.0) -> GateReport:
    """Serve `version_dir` alone, replay its warmup and `sample_inputs`; return what was measured.

    `sample_inputs` are {input name: array [N, ...]} for `serving_default`; each example is
    sent on its own, as online traffic arrives.
    """
    version_dir = Path(version_dir)
    version = int(version_dir.name)
    what = f"{name} version {version} ({version_dir})"
    try:
        signatures = tf.saved_model.load(str(version_dir)).signatures
    except Exception as error:  # a damaged export: TF's message, first line
        raise GateError(f"{what} does not load: {str(error).strip().splitlines()[0][:400]}") from None
    with tempfile.TemporaryDirectory(prefix="tfpipe-gate-") as folder:
        config_path = Path(folder) / "models.config"
        config = build_config([ServedModel(name, version_dir.parent)])
        config.model_config_list.config[0].model_version_policy.specific.versions.append(version)
        config_path.write_text(config_lib.to_text(config))
        server = _Server(config_path)
        try:
            try:
                server.wait_ready(start_timeout)
            except GateError as error:
                raise GateError(f"{what} does not load in a model server: {error}") from None
            # Read only now: a warmup file the server cannot replay failed its load above.
            return _replay(server, name, version, signatures, warmup_requests(version_dir),
                           sample_inputs, tolerance, p99_budget_ms, what)
        finally:
            server.stop()


def _replay(server: _Server, name, version, signatures, warmups, sample_inputs, tolerance,
            p99_budget_ms, what) -> GateReport:
    clients = {"grpc": GrpcClient("127.0.0.1", server.grpc_port),
               "rest": RestClient("127.0.0.1", server.rest_port)}
    cases = []
    for index, request in enumerate(warmups):
        inputs = {key: to_ndarray(proto, key) for key, proto in request.inputs.items()}
        cases.append((f"warmup request {index}", request.model_spec.signature_name
                      or "serving_default", inputs, False))
    count = len(next(iter(sample_inputs.values()))) if sample_inputs else 0
    for row in range(count):
        inputs = {key: value[row : row + 1] for key, value in sample_inputs.items()}
        cases.append((f"sample input {row}", "serving_default", inputs, True))
    worst, latencies, compared = 0.0, {protocol: [] for protocol in clients}, 0
    try:
        for label, signature, inputs, timed in cases:
            expected = {key: value.numpy() for key, value in signatures[signature](
                **{key: tf.constant(value) for key, value in inputs.items()}).items()}
            for protocol, client in clients.items():
                started = time.perf_counter()
                try:
                    served = client.predict(name, inputs, signature_name=signature, version=version)
                except (ClientError, OSError) as error:
                    raise GateError(f"{what}: {label} over {protocol} failed: {error}") from None
                if timed:
                    latencies[protocol].append(time.perf_counter() - started)
                worst = max(worst, _compare(served, expected, tolerance,
                                            f"{what}: {label} over {protocol}"))
                compared += 1
    finally:
        clients["grpc"].close()
        clients["rest"].close()
    p99 = {protocol: _p99_ms(values) for protocol, values in latencies.items()}
    for protocol, value in p99.items():
        if value > p99_budget_ms:
            raise GateError(f"{what}: p99 latency over {protocol} is {value:.1f} ms > budget "
                            f"{p99_budget_ms:g} ms")
    return GateReport(requests=compared, max_abs_diff=worst, p99_ms=p99)
