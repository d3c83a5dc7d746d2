"""The exporter's writer of TF Serving warmup requests: real inputs, replayed on load.

A SavedModel's `assets.extra/tf_serving_warmup_requests` is a TFRecord of PredictionLogs
that TF Serving (and the compatible server's management/warmup_replay.py) runs when a
version loads, before it takes traffic. The file name and the record limit are TF
Serving's, so both sides take them from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

# Where TF Serving looks for the file inside a version folder, and how many records it reads.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


def write_warmup_requests(path: Path, *, model_name: str, input_name: str, inputs: np.ndarray,
                          batch_sizes: tuple[int, ...],
                          signature_name: str = "serving_default") -> int:
    """Write one PredictRequest per batch size (cut from real `inputs`); return the count.

    Each distinct batch size traces and warms its own kernels and allocations, so the first
    real request of that size is not the slow one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [size for size in batch_sizes if size <= len(inputs)][:MAX_WARMUP_RECORDS]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature_name
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto(inputs[:size]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(sizes)
