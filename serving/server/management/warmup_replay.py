"""--enable_model_warmup: replay assets.extra/tf_serving_warmup_requests before serving.

The file is a TFRecord of PredictionLog protos (TF Serving's saved_model_warmup.md). Each
logged request runs `num_request_iterations` times against the freshly loaded servable;
any failure fails the load, as in TF Serving, so a bad version never starts serving.
The exporter writes the file with serving/warmup_requests.py.
"""

from __future__ import annotations

import logging
import os
import time

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.server.core import errors, examples, inference
from serving.server.core.servable import Servable
from serving.warmup_requests import MAX_WARMUP_RECORDS, WARMUP_FILE

log = logging.getLogger("serving.server")


def warmup_path(servable: Servable) -> str:
    return os.path.join(servable.path, WARMUP_FILE)


def _replay(servable: Servable, record: prediction_log_pb2.PredictionLog, method_check: bool) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        inference.predict(servable, record.predict_log.request, method_check=method_check)
    elif kind == "classify_log":
        examples.classify(servable, record.classify_log.request, method_check=method_check)
    elif kind == "regress_log":
        examples.regress(servable, record.regress_log.request, method_check=method_check)
    elif kind == "multi_inference_log":
        examples.multi_inference(servable, record.multi_inference_log.request, method_check=method_check)
    elif kind is not None:
        number = prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name[kind].number
        raise errors.unimplemented(f"Unsupported log_type for warmup: {number}")


def run_warmup(servable: Servable, iterations: int = 1, method_check: bool = False) -> int:
    """Replay the servable's warmup requests; return how many records ran (0 if no file)."""
    path = warmup_path(servable)
    if not os.path.isfile(path):
        log.info("No warmup data file found at %s", path)
        return 0
    started = time.perf_counter()
    count = 0
    try:
        records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    except Exception as error:
        raise errors.from_exception(error) from None
    for raw in records:
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise errors.invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        record = prediction_log_pb2.PredictionLog()
        try:
            record.ParseFromString(raw)
        except Exception:
            raise errors.invalid_argument(f"Failed to parse warmup record: {raw!r} from {path}") from None
        for _ in range(max(iterations, 1)):
            _replay(servable, record, method_check)
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
             "Elapsed time (microseconds): %d.", path, count, (time.perf_counter() - started) * 1e6)
    return count
