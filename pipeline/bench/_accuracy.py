"""Time to accuracy: how long `make train` takes to reach 0.90, 0.92 and 0.93 held-out accuracy.

Two paths in one process, on the same data, network and host:
1. pipeline: the training stage itself (`pipeline.train.run`: data, fit with the stage's
   callbacks and learning-rate schedule, evaluation, export and registration into a scratch
   MLflow store), wall time from the start of the run;
2. bare Keras: the same network built by the same family `build`, `model.fit` on in-memory
   NumPy arrays for the same epochs at the config's learning rate, no schedule, no
   callbacks: what a user writes by hand. Its clock starts at `fit` (arrays in memory).

After every epoch a callback measures accuracy on the held-out test split; the time it
takes is kept off both clocks. The pipeline restores its best epoch (by validation accuracy)
before the final evaluation; bare Keras keeps its last epoch. With `export.test_time_flip`
the pipeline's accuracy is that of what it serves (the mean over each image and its
mirror); bare Keras, written by hand, predicts from the image alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from models import get_family
from models.test_time import flip_averaged
from pipeline.bench._train import as_arrays
from pipeline.config import RunConfig
from pipeline.fitting.hardware import configured, host_description
from pipeline.stages import train
from pipeline.stages.data import make_datasets
from pipeline.tracking import scratch_dir
from serving.common import write_report

THRESHOLDS = (0.90, 0.92, 0.93)


class HeldOutAccuracy(keras.callbacks.Callback):
    """Record (seconds on the clock, val_accuracy, test accuracy) after every epoch.

    The clock starts at `started` (a perf_counter value) and does not run while this
    callback evaluates, so the figures are those of a run that never looked at the test set.
    With `flip` (the config's `export.test_time_flip`) the accuracy is that of the mean over
    each image and its mirror, as served; `single_view_accuracy` is the network's alone.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, started: float, flip: bool = False):
        super().__init__()
        self.images, self.labels, self.started, self.flip = images, labels, started, flip
        self.off_clock = 0.0
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        paused = time.perf_counter()
        probabilities = self.model.predict(self.images, batch_size=1000, verbose=0)
        row = {"epoch": epoch + 1, "seconds": round(paused - self.started - self.off_clock, 2),
               "val_accuracy": round(float((logs or {}).get("val_accuracy", float("nan"))), 4)}
        if self.flip:  # what is served: the same wrapper the export uses
            row["single_view_accuracy"] = self._accuracy(probabilities)
            probabilities = flip_averaged(self.model).predict(self.images, batch_size=1000, verbose=0)
        row["test_accuracy"] = self._accuracy(probabilities)
        self.epochs.append(row)
        self.off_clock += time.perf_counter() - paused

    def _accuracy(self, probabilities: np.ndarray) -> float:
        return round(float(np.mean(np.argmax(probabilities, axis=-1) == self.labels)), 4)

    def seconds_now(self) -> float:
        return time.perf_counter() - self.started - self.off_clock


def first_reaching(epochs: list[dict[str, float]], threshold: float) -> dict | None:
    """Return the first epoch whose test accuracy reaches `threshold`, or None."""
    return next((row for row in epochs if row["test_accuracy"] >= threshold), None)


def pipeline_path(config: RunConfig, test: tuple[np.ndarray, np.ndarray],
                  scratch: Path) -> dict:
    """Run the training stage end to end into `scratch`; return its epochs and totals."""
    scratch_config = config.model_copy(update={
        "tracking": config.tracking.model_copy(update={
            "tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}", "experiment": "bench"}),
        "train": config.train.model_copy(update={"checkpoint_dir": scratch / "checkpoints",
                                                 "resume": False}),
        "export": config.export.model_copy(update={"base_dir": scratch / "saved_models"}),
    })
    started = time.perf_counter()
    monitor = HeldOutAccuracy(*test, started, flip=config.export.test_time_flip)
    result = train.run(scratch_config, log=lambda line: print(line, flush=True),
                       callbacks=[monitor])
    return {"epochs": monitor.epochs, "total_seconds": round(monitor.seconds_now(), 2),
            "test_accuracy": round(result.metrics["test_accuracy"], 4),
            "what": "make train's path: tf.data, the stage's callbacks and schedule, "
                    "evaluation, export, registration"
                    + (" (test accuracy of the served mean over each image and its mirror; "
                       "'image alone': the network's own)" if config.export.test_time_flip else "")}


def bare_keras_path(config: RunConfig, data, test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Fit the same network on NumPy arrays with plain `model.fit`; return its epochs."""
    x_train, y_train = as_arrays(data.unbatched["train"])
    validation = as_arrays(data.unbatched["validation"])
    with configured(config.train, config.seed):
        model = get_family(config.model.family).build(data.input_spec, data.num_classes,
                                                      **config.model.params)
        started = time.perf_counter()
        monitor = HeldOutAccuracy(*test, started)
        model.fit(x_train, y_train, batch_size=config.data.batch_size,
                  epochs=config.train.epochs, validation_data=validation,
                  callbacks=[monitor], verbose=2)
    return {"epochs": monitor.epochs, "total_seconds": round(monitor.seconds_now(), 2),
            "test_accuracy": monitor.epochs[-1]["test_accuracy"],
            "what": "bare Keras: model.fit on NumPy arrays, constant learning rate"}


def run(config: RunConfig, baseline: bool = True) -> dict:
    """Measure both paths (bare Keras only if `baseline`); return the results as plain data."""
    with configured(config.train, config.seed) as hardware:
        host = {**host_description(), "precision": hardware.describe()}
    data = make_datasets(config.data, config.seed)
    test = as_arrays(data.unbatched["test"])
    paths = {}
    with scratch_dir() as scratch:
        paths["pipeline"] = pipeline_path(config, test, scratch)
    if baseline:
        paths["bare_keras"] = bare_keras_path(config, data, test)
    for path in paths.values():
        path["time_to_accuracy"] = {
            f"{threshold:.2f}": (row and {"seconds": row["seconds"], "epoch": row["epoch"]})
            for threshold in THRESHOLDS for row in [first_reaching(path["epochs"], threshold)]}
    return {"config": config.name, "epochs": config.train.epochs,
            "batch_size": config.data.batch_size, "host": host,
            "paths": paths}


def markdown(result: dict) -> str:
    """Return the time-to-accuracy table (one row per path) and the per-epoch curves."""
    host = result["host"]
    lines = [f"Time to accuracy, `{result['config']}` ({result['epochs']} epochs, batch "
             f"{result['batch_size']}); host: {host['cpu_model']}, {host['cores']} cores, "
             f"{host['instruction_sets']}; {host['precision']}", "",
             "| path | " + " | ".join(f"to {t:.2f}" for t in THRESHOLDS)
             + " | final test accuracy | total wall |",
             "|---|" + "---:|" * (len(THRESHOLDS) + 2)]
    for name, path in result["paths"].items():
        cells = [(f"{hit['seconds']:.0f} s (epoch {hit['epoch']})" if hit else "not reached")
                 for hit in path["time_to_accuracy"].values()]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {path['test_accuracy']:.4f} | {path['total_seconds']:.0f} s |")
    for name, path in result["paths"].items():
        flips = "single_view_accuracy" in path["epochs"][0] if path["epochs"] else False
        lines += ["", f"{name}: {path['what']}", "",
                  "| epoch | seconds | val_accuracy | test_accuracy |"
                  + (" image alone |" if flips else ""), "|---:|---:|---:|---:|" + ("---:|" if flips else "")]
        lines += [f"| {row['epoch']} | {row['seconds']:.0f} | {row['val_accuracy']:.4f} "
                  f"| {row['test_accuracy']:.4f} |"
                  + (f" {row['single_view_accuracy']:.4f} |" if flips else "") for row in path["epochs"]]
    return "\n".join(lines) + "\n"


def write(result: dict, output_dir: Path) -> Path:
    """Write the result as JSON and Markdown under `output_dir`, print the Markdown; return
    its path."""
    name = f"bench_time_to_accuracy_{result['config']}"
    return write_report(output_dir, name, result, markdown(result)) / f"{name}.md"
