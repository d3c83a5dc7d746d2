"""Helpers for the serving tests: model writers, warmup files, server subprocesses.

A module of its own (not conftest.py) so test modules can import it by a unique name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from serving.common import stop_process
from serving.warmup_requests import WARMUP_FILE

REPO = Path(__file__).resolve().parents[2]


def copy_version(source: Path, base: Path, version: int) -> Path:
    """Copy a version folder in atomically (staged in .tmp-*, renamed), as exporters do."""
    staging = base / f".tmp-copy-{version}"
    shutil.copytree(source, staging)
    target = base / str(version)
    staging.rename(target)
    return target


def write_warmup(version_dir: Path, requests) -> Path:
    """Write PredictionLog records (PredictRequests or PredictionLogs) as the warmup file."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            if isinstance(request, predict_pb2.PredictRequest):
                request = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            writer.write(request.SerializeToString())
    return path


def pixel_request(model: str, pixels: np.ndarray, signature_name: str = ""):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(pixels))
    return request


def export_half_plus_two(base: Path, version: int = 1) -> Path:
    """Write TF Serving's classic test model: y = 0.5 * x + 2, with TF1 signature method names.

    Signatures: serving_default (predict, input 'x' float [-1, 1]), 'regress_x_to_y'
    (tensorflow/serving/regress) and 'classify_x_to_y' (tensorflow/serving/classify), the
    last two taking serialized tf.Examples with a float feature 'x'.
    """
    import tensorflow as tf

    target = base / str(version)
    staging = base / f".tmp-hpt-{version}"
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        x_direct = v1.placeholder(tf.float32, [None, 1], name="x")
        a, b = v1.Variable(0.5, name="a"), v1.Variable(2.0, name="b")
        y_examples = tf.add(a * parsed["x"], b, name="y_examples")
        y_direct = tf.add(a * x_direct, b, name="y")
        classes = tf.tile(tf.constant([[""]]), [tf.shape(serialized)[0], 1])
        session.run(v1.global_variables_initializer())
        utils = v1.saved_model.signature_def_utils
        builder = v1.saved_model.Builder(str(staging))
        builder.add_meta_graph_and_variables(
            session, ["serve"],
            signature_def_map={
                "serving_default": utils.predict_signature_def({"x": x_direct}, {"y": y_direct}),
                "regress_x_to_y": utils.regression_signature_def(serialized, y_examples),
                "classify_x_to_y": utils.classification_signature_def(serialized, classes, y_examples),
            },
        )
        builder.save()
    staging.rename(target)
    return target


class ServerProcess:
    """A `python -m serving` subprocess; its stdout is collected for assertions."""

    def __init__(self, flags: list[str], grpc_port: int, rest_port: int):
        self.grpc_port, self.rest_port = grpc_port, rest_port
        self.lines: list[str] = []
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}", *flags],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 120.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("Exporting HTTP/REST API" in line for line in self.lines):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(self.lines[-40:]))

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        return stop_process(self.process)
