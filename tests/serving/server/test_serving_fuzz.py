"""Fuzzing a running server with hostile input: no 5xx, no UNKNOWN/INTERNAL, no growth.

A seeded generator (tests/serving/server/fuzz_inputs.py) throws malformed and deeply nested JSON,
huge numbers, random paths and TensorProtos whose dtype, shape and bytes disagree at one
`python -m serving` process for FUZZ_SECONDS (default 20). TF Serving answers all of these
with client errors; its own UNIMPLEMENTED (501, e.g. a JSON value of a type it cannot
convert) is the one non-4xx allowed.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving.server import fuzz_inputs

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("FUZZ_SEED", "17"))
_SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
# Resident memory may rise this far over the warmed-up baseline (allocator slack).
_MEMORY_SLACK_MIB = 64


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def server(model_store, start_server):
    base = model_store["root"] / "half_plus_two"
    return start_server(["--model_name=hpt", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0"])


def rest(server, method: str, path: str, body: bytes = b"", gzipped: bool = False) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def valid_round(server, stub) -> None:
    status, body = rest(server, "POST", "/v1/models/hpt:predict", b'{"instances": [[1.0], [3.0]]}')
    assert (status, json.loads(body)) == (200, {"predictions": [[2.5], [3.5]]})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(1.0)
    request.inputs["x"].tensor_shape.dim.add(size=1)
    request.inputs["x"].tensor_shape.dim.add(size=1)
    assert stub.Predict(request, timeout=30).outputs["y"].float_val == [2.5]


def test_hostile_input_never_faults_the_server(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    for _ in range(20):
        valid_round(server, stub)
    baseline = resident_mib(server.process.pid)
    rng, faults, count = random.Random(SEED), [], 0
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        count += 1
        if rng.random() < 0.6:
            method = rng.choice(["POST", "POST", "GET"])
            path = fuzz_inputs.rest_path(rng)
            body, gzipped = fuzz_inputs.rest_body(rng) if method == "POST" else (b"", False)
            status, answer = rest(server, method, path, body, gzipped)
            if status >= 500 and status != 501:
                faults.append(f"REST {method} {path[:80]} {body[:80]!r} -> {status} {answer[:200]!r}")
        else:
            name, request = fuzz_inputs.grpc_request(rng)
            try:
                getattr(stub, name)(request, timeout=30)
            except grpc.RpcError as error:
                if error.code() in _SERVER_FAULTS:
                    faults.append(f"gRPC {name} {str(request)[:300]} -> {error.code()} {error.details()[:200]}")
    assert server.process.poll() is None, server.log()[-3000:]
    assert not faults, f"seed {SEED}, {len(faults)} of {count} faulted:\n" + "\n".join(faults[:10])
    valid_round(server, stub)
    grown = resident_mib(server.process.pid) - baseline
    assert grown < _MEMORY_SLACK_MIB, f"resident memory grew {grown:.0f} MiB over {count} requests"
