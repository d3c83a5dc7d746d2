"""`make bench-train`: does the input pipeline keep up, and what does `make train`'s path cost?

Measured in one process, on the same data, model and batch size:
1. input: examples/s the tf.data train pipeline delivers alone (a second pass: cache warm);
2. train path: examples/s of model.fit on that pipeline with the training stage's callbacks
   (backup, best checkpoint, early stopping, schedule, MLflow logging to a scratch store);
3. plain: examples/s of model.fit on the same examples as in-memory NumPy arrays, no callbacks.
The first epoch of each fit (tracing, cache fill) is excluded. Paths alternate A-B-B-A when
--repeats is 2 or more, so slow drift of the machine does not favour either. Throughput is
given from the median epoch and from the fastest epoch of each path: the plain path runs on
the tf.data pipeline Keras builds from the arrays, with autotuning on, whose epoch-end stall
(see pipeline/data.py) can hit its median; the fastest epochs compare compute alone.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import get_family
from pipeline.config import RunConfig
from pipeline.fitting.hardware import Hardware, configured
from pipeline.stages.data import Datasets, make_datasets
from pipeline.stages.train import make_callbacks
from pipeline.tracking import Tracker, scratch_dir
from serving.common import write_report


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def input_throughput(data: Datasets) -> float:
    """Return examples/s of one pass over the train pipeline, after a pass that fills the cache."""
    for _ in data.train:
        pass
    started = time.perf_counter()
    for _ in data.train:
        pass
    return data.sizes["train"] / (time.perf_counter() - started)


def as_arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels = zip(*dataset.as_numpy_iterator())
    return np.stack(inputs), np.asarray(labels)


def _fit_seconds(config: RunConfig, data: Datasets, epochs: int, path: str,
                 arrays: dict[str, tuple[np.ndarray, np.ndarray]], scratch: Path) -> list[float]:
    keras.utils.set_random_seed(config.seed)
    model = get_family(config.model.family).build(data.input_spec, data.num_classes,
                                                  **config.model.params)
    timer = EpochTimes()
    if path == "train_path":
        tracker = Tracker(f"sqlite:///{scratch / 'mlflow.db'}", "bench")
        with tracker.run("bench") as mlflow_run:
            callbacks = make_callbacks(model, data, config, mlflow_run, scratch / "checkpoints")
            model.fit(data.train, validation_data=data.validation, epochs=epochs + 1,
                      callbacks=[*callbacks, timer], shuffle=False, verbose=0)
    else:
        x_train, y_train = arrays["train"]
        model.fit(x_train, y_train, batch_size=config.data.batch_size, epochs=epochs + 1,
                  validation_data=arrays["validation"], callbacks=[timer], verbose=0)
    return timer.seconds[1:]


def run(config: RunConfig, epochs: int = 2, repeats: int = 1,
        output_dir: Path = Path("bench/results")) -> dict:
    """Run the measurements above; write JSON and Markdown under `output_dir`; return them."""
    with configured(config.train.model_copy(update={"early_stopping_patience": None}),
                    config.seed) as hardware:
        result = _measure(config, hardware, epochs, repeats)
    _write(result, output_dir)
    return result


def _measure(config: RunConfig, hardware: Hardware, epochs: int, repeats: int) -> dict:
    data = make_datasets(config.data, config.seed)
    arrays = {split: as_arrays(data.unbatched[split]) for split in ("train", "validation")}
    input_rate = input_throughput(data)
    seconds: dict[str, list[float]] = {"train_path": [], "plain_fit": []}
    order = ["train_path", "plain_fit"]
    with scratch_dir() as scratch:
        for repeat in range(repeats):
            for path in (order if repeat % 2 == 0 else order[::-1]):
                seconds[path] += _fit_seconds(config, data, epochs, path, arrays,
                                              scratch / f"{path}{repeat}")
    rate = {path: data.sizes["train"] / float(np.median(values))
            for path, values in seconds.items()}
    fastest = {path: data.sizes["train"] / min(values) for path, values in seconds.items()}
    return {
        "config": config.name, "model_family": config.model.family,
        "batch_size": config.data.batch_size, "train_examples": data.sizes["train"],
        "timed_epochs_per_path": epochs * repeats, "device": hardware.describe(),
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "input_examples_per_second": round(input_rate, 1),
        "train_path_examples_per_second": round(rate["train_path"], 1),
        "plain_fit_examples_per_second": round(rate["plain_fit"], 1),
        "input_headroom": round(input_rate / rate["train_path"], 2),
        "train_path_overhead_percent": round(100 * (1 - rate["train_path"] / rate["plain_fit"]), 2),
        "fastest_epoch_examples_per_second": {path: round(value, 1)
                                              for path, value in fastest.items()},
        "train_path_overhead_percent_fastest_epochs": round(
            100 * (1 - fastest["train_path"] / fastest["plain_fit"]), 2),
        "epoch_seconds": {path: [round(value, 3) for value in values]
                          for path, values in seconds.items()},
    }


def _write(result: dict, output_dir: Path) -> None:
    fastest = result["fastest_epoch_examples_per_second"]
    rows = [
        ("tf.data input alone", result["input_examples_per_second"], "", ""),
        ("`make train` path: fit on tf.data + callbacks + MLflow",
         result["train_path_examples_per_second"], fastest["train_path"],
         f"{result['train_path_overhead_percent']:+.2f}% median, "
         f"{result['train_path_overhead_percent_fastest_epochs']:+.2f}% fastest, vs plain"),
        ("plain `model.fit` on NumPy arrays", result["plain_fit_examples_per_second"],
         fastest["plain_fit"], "baseline"),
    ]
    lines = [f"Benchmark `{result['config']}` ({result['model_family']}, batch "
             f"{result['batch_size']}, {result['train_examples']} train examples, "
             f"{result['timed_epochs_per_path']} timed epochs per path; {result['device']}, "
             f"{result['cpu_count']} CPUs, TF {result['tensorflow']})", "",
             "| measurement | examples/s (median epoch) | examples/s (fastest epoch) | overhead |",
             "|---|---:|---:|---|"]
    lines += [f"| {label} | {median:,.0f} | {f'{best:,.0f}' if best else ''} | {note} |"
              for label, median, best, note in rows]
    lines += ["", f"Input headroom: the pipeline delivers {result['input_headroom']}x what "
              "training consumes."]
    write_report(output_dir, f"bench_train_{result['config']}", result, "\n".join(lines) + "\n")
