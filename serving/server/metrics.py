"""Prometheus metrics under TF Serving's names (:tensorflow:serving:request_count, ...).

TF Serving exports TensorFlow's monitoring registry, renaming '/tensorflow/serving/x' to
':tensorflow:serving:x' (util/prometheus_exporter.cc). The same names, labels and bucket
limits (exponential, scale 10, growth 1.8, 33 buckets, in microseconds) are kept here, so
dashboards built for the real server work unchanged; prometheus_client writes the page.
One metric of our own, `tfpipe_model_lineage_info`, names the MLflow run and registered
version of each loaded version (from its assets.extra/), so a dashboard can tell which
training run answers.

The batching metrics are BatchingSession's (batching/batching_session.cc, batching_util.h),
each with its own buckets.
"""

from __future__ import annotations

import bisect
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

DEFAULT_PATH = "/monitoring/prometheus/metrics"
_BUCKETS = [10 * 1.8**index for index in range(32)]
# monitoring::Buckets::Exponential(scale, growth, count): `count` limits, then +Inf.
_QUEUING_BUCKETS = [100 * 1.2**index for index in range(52)]
_BATCH_SIZE_BUCKETS = [2.0**index for index in range(14)]


class _Histogram:
    def __init__(self, buckets: list[float]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class Metrics:
    """Thread-safe counters and histograms, and the Prometheus page that shows them."""

    _COUNTERS = {
        "request_count": ("/tensorflow/serving/request_count", "The total number of requests.", ("model_name", "status")),
        "example_count_total": ("/tensorflow/serving/request_example_count_total", "The total number of tensorflow.Examples.", ("model",)),
        "load_attempts": ("/tensorflow/cc/saved_model/load_attempt_count", "The number of times a SavedModel was successfully loaded.", ("model_path", "status")),
        "batch_wrapped_run_count": ("/tensorflow/serving/batching_session/wrapped_run_count", "Total count of run calls on the wrapped session", ()),
    }
    _HISTOGRAMS = {
        "request_latency": ("/tensorflow/serving/request_latency", "Distribution of wall time (in microseconds) for Tensorflow Serving request.", ("model_name", "API", "entrypoint")),
        "runtime_latency": ("/tensorflow/serving/runtime_latency", "Distribution of wall time (in microseconds) for Tensorflow runtime.", ("model_name", "API", "runtime")),
        "example_counts": ("/tensorflow/serving/request_example_counts", "The number of tensorflow.Examples per request.", ("model",)),
        "warmup_latency": ("/tensorflow/serving/model_warmup_latency", "Distribution of wall time (in microseconds) for warming up the model.", ("model_path", "status")),
        "batch_queuing_latency": ("/tensorflow/serving/batching_session/queuing_latency", "Distribution of wall time spent (in microseconds) in queuing", ("thread_pool_name",), _QUEUING_BUCKETS),
        "batch_padding_size": ("/tensorflow/serving/batching_session/padding_size", "Tracks the padding size distribution on batches.", ("execution_batch_size",), _BATCH_SIZE_BUCKETS),
        "batch_input_size": ("/tensorflow/serving/batching_session/input_batch_size", "Tracks the batch size distribution on the inputs.", (), _BATCH_SIZE_BUCKETS),
        "batch_processed_size": ("/tensorflow/serving/batching_session/processed_batch_size", "Tracks the batch size distribution on processing.", (), _BATCH_SIZE_BUCKETS),
    }

    def __init__(self):
        self._lock = threading.Lock()
        self._counters = {key: {} for key in self._COUNTERS}
        self._histograms = {key: {} for key in self._HISTOGRAMS}
        self._lineage: dict[tuple[str, int], dict[str, str]] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def count(self, metric: str, labels: tuple[str, ...], amount: int = 1) -> None:
        with self._lock:
            cells = self._counters[metric]
            cells[labels] = cells.get(labels, 0) + amount

    def observe(self, metric: str, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            cells = self._histograms[metric]
            if labels not in cells:
                cells[labels] = _Histogram(self._buckets(metric))
            cells[labels].observe(value)

    def set_lineage(self, model_name: str, version: int, lineage: dict[str, str]) -> None:
        """Show a loaded version's lineage (run id, registered version), or stop showing it ({})."""
        with self._lock:
            if lineage:
                self._lineage[(model_name, version)] = lineage
            else:
                self._lineage.pop((model_name, version), None)

    def _buckets(self, metric: str) -> list[float]:
        spec = self._HISTOGRAMS[metric]
        return spec[3] if len(spec) > 3 else _BUCKETS

    def first_point(self, path: str) -> int:
        """Return the first cell of the counter named `path` (TF's name), 0 if it has none.

        What HandleReloadConfigRequest reports for each of its `metric_names`.
        """
        key = next((key for key, (name, *_) in self._COUNTERS.items() if name == path), None)
        with self._lock:
            cells = self._counters.get(key, {})
            return int(cells[min(cells)]) if cells else 0

    def collect(self):
        """Yield the metric families (the prometheus_client Collector protocol)."""
        with self._lock:
            for key, (path, documentation, label_names) in self._COUNTERS.items():
                name = _prometheus_name(path)
                family = Metric(name, documentation, "counter")
                for labels, value in sorted(self._counters[key].items()):
                    family.add_sample(name, dict(zip(label_names, labels, strict=True)), value)
                yield family
            for key, (path, documentation, label_names, *_) in self._HISTOGRAMS.items():
                yield _histogram_family(path, documentation, label_names, self._histograms[key])
            family = Metric("tfpipe_model_lineage", "The MLflow run and registered version of "
                            "each loaded model version.", "info")
            for (model_name, version), lineage in sorted(self._lineage.items()):
                family.add_sample("tfpipe_model_lineage_info", {
                    "model_name": model_name, "version": str(version),
                    "run_id": lineage.get("run_id", ""),
                    "registered_version": lineage.get("version", "")}, 1)
            yield family

    def page(self) -> bytes:
        """Return the text exposition page."""
        return generate_latest(self._registry)


def _prometheus_name(path: str) -> str:
    # '/tensorflow/serving/request_count' -> ':tensorflow:serving:request_count', as TF does.
    return "".join(char if char.isalnum() or char == "_" else ":" for char in path)


def _histogram_family(path, documentation, label_names, cells):
    name = _prometheus_name(path)
    family = Metric(name, documentation, "histogram")
    for labels, histogram in sorted(cells.items()):
        base = dict(zip(label_names, labels, strict=True))
        cumulative = 0
        for limit, count in zip([*histogram.buckets, float("inf")], histogram.counts, strict=True):
            cumulative += count
            bound = "+Inf" if limit == float("inf") else f"{limit:g}"
            family.add_sample(name + "_bucket", {**base, "le": bound}, cumulative)
        family.add_sample(name + "_sum", base, histogram.total)
        family.add_sample(name + "_count", base, cumulative)
    return family
