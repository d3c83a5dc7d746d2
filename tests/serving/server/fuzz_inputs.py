"""Seeded generators of hostile inputs for the fuzz test: REST paths and bodies, TensorProtos.

Each takes a `random.Random`, so a failing case is reproduced from the seed the test prints.
"""

from __future__ import annotations

import gzip
import json
import random

from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2

_NAMES = ["hpt", "HPT", "missing", "h%70t", "%ff", "", "a" * 300]
_VERBS = ["predict", "classify", "regress", "metadata", "PREDICT", "", "bogus"]
_VALID = {"instances": [[1.0], [2.0]]}
_PATH_CHARS = "abcxyz019/:%._-~?=&"


def _version(rng: random.Random) -> str:
    return rng.choice(["1", "2", "0", "01", "9" * rng.randint(19, 6000),
                       "18446744073709551616", "0" * 5000 + "1", "-1"])


def rest_path(rng: random.Random) -> str:
    """Return a path near TF Serving's routes: odd names, huge versions, labels, noise."""
    if rng.random() < 0.15:
        return "/" + "".join(rng.choice(_PATH_CHARS) for _ in range(rng.randint(0, 60)))
    path = "/v1/models/" + rng.choice(_NAMES)
    choice = rng.random()
    if choice < 0.4:
        path += "/versions/" + _version(rng)
    elif choice < 0.55:
        path += "/labels/" + rng.choice(["stable", "%zz", "", "x" * 100])
    if rng.random() < 0.3:
        return path + rng.choice(["", "/metadata", "/"])
    return path + ":" + rng.choice(_VERBS)


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice([250, 1023, 1025, 200_000])
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth * rng.randint(0, 1) + b"}"


def _number(rng: random.Random) -> bytes:
    digits = b"9" * rng.randint(18, 6000)
    return rng.choice([digits, b"-" + digits, b"1e" + digits, b"1e-" + digits,
                       digits + b".5", b"NaN", b"-Infinity", b"1e309", b"0x10"])


def _mutated(rng: random.Random) -> bytes:
    body = bytearray(json.dumps(rng.choice([
        _VALID, {"inputs": {"x": [[1.0]]}}, {"signature_name": "regress_x_to_y",
                                             "examples": [{"x": 1.0}]},
        {"instances": [{"b64": "AAAA"}]}, {"inputs": [[1.0]], "instances": [[1.0]]},
    ])).encode())
    for _ in range(rng.randint(1, 6)):
        index = rng.randrange(len(body) + 1)
        action = rng.random()
        if action < 0.4 and body:
            body[min(index, len(body) - 1)] = rng.randrange(256)
        elif action < 0.7:
            body[index:index] = rng.choice([b"[", b"{", b"]", b",", b'"', b"\\u", b"\0", b"\xff"])
        else:
            del body[index:]
    return bytes(body)


def rest_body(rng: random.Random) -> tuple[bytes, bool]:
    """Return (body, gzipped): malformed, deep, numeric extremes, or a mutated valid one."""
    kind = rng.random()
    if kind < 0.2:
        body = _deep(rng)
    elif kind < 0.4:
        body = b'{"instances": [[' + _number(rng) + b"]]}"
    elif kind < 0.5:
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    else:
        body = _mutated(rng)
    zipped = rng.random() < 0.15
    return (gzip.compress(body) if zipped else body), zipped


def _dims(rng: random.Random) -> list[int]:
    return rng.choice([[], [1], [2, 1], [2**31, 2**31, 1, 1], [2**63 - 1], [0, 5],
                       [rng.randint(0, 4) for _ in range(rng.randint(1, 4))], [1] * 260, [-1]])


def tensor(rng: random.Random) -> tensor_pb2.TensorProto:
    """Return a TensorProto whose dtype, shape and contents may disagree with each other."""
    dtype = rng.choice([types_pb2.DT_FLOAT, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE,
                        types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING,
                        types_pb2.DT_HALF, types_pb2.DT_COMPLEX64, types_pb2.DT_BOOL,
                        types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT, 0, 99])
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in _dims(rng):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = rng.random() < 0.05
    choice = rng.random()
    if choice < 0.35:
        proto.tensor_content = bytes(rng.randrange(256) for _ in range(rng.randint(0, 17)))
    elif choice < 0.7:
        proto.float_val.extend(rng.uniform(-9, 9) for _ in range(rng.randint(0, 5)))
        proto.string_val.extend(b"x" * rng.randint(0, 9) for _ in range(rng.randint(0, 2)))
        proto.half_val.extend(rng.randrange(65536) for _ in range(rng.randint(0, 3)))
    return proto


def grpc_request(rng: random.Random):
    """Return (method name, request): Predict with odd tensors, or Classify/Regress junk."""
    if rng.random() < 0.75:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = rng.choice(["hpt", "hpt", "missing"])
        request.model_spec.signature_name = rng.choice(["", "serving_default", "regress_x_to_y"])
        for _ in range(rng.randint(0, 2)):
            request.inputs[rng.choice(["x", "y", ""])].CopyFrom(tensor(rng))
        if rng.random() < 0.3:
            request.output_filter.append(rng.choice(["y", "nope"]))
        return "Predict", request
    request_class = rng.choice([classification_pb2.ClassificationRequest, regression_pb2.RegressionRequest])
    request = request_class()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = rng.choice(["", "regress_x_to_y", "classify_x_to_y"])
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend(rng.uniform(-1, 1) for _ in range(rng.randint(0, 3)))
    method = "Classify" if request_class is classification_pb2.ClassificationRequest else "Regress"
    return method, request
