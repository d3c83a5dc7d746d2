"""Training over several workers with tf.distribute.MultiWorkerMirroredStrategy.

TF_CONFIG (JSON) names the cluster and this process's place in it, as TensorFlow defines it:
`{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}`.
Worker 0 (or a task of type "chief") is the chief. `python -m pipeline train --workers N`
writes one per process and starts N processes on loopback (`launch`); on a real cluster the
user sets TF_CONFIG on each node and runs the same command there.

Every worker runs the same stage, step for step (fit, evaluate, predict and the barriers here
are collective operations: a worker that skipped one would leave the others waiting). Only
the chief's copy writes where the user looks (MLflow, saved_models/, checkpoints/); the
others run with those paths pointed at a temporary folder (`worker_paths`) and read the
chief's backup and best-epoch weights, so checkpoints/ must be on storage every worker can
read (on loopback, the same disk), as for TensorFlow's own BackupAndRestore.

Data: `data.batch_size` is the global batch. tf.data's auto-sharding cannot shard by file
(the pipelines start from tensors, not files), so the policy is set to DATA: each worker
reads the whole, identically shuffled (seeded) pipeline and keeps its 1/N of every batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from pipeline.config import ConfigError, RunConfig

CHIEF_WAIT_SECONDS = 60  # after a worker failed, how long the others get to stop


@dataclass(frozen=True)
class Worker:
    """This process's place in a multi-worker cluster."""

    index: int
    count: int
    is_chief: bool


def from_environment() -> Worker | None:
    """Return this process's Worker from $TF_CONFIG; None without one (or with one task)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        index, kind = int(task["index"]), task["type"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG is not TensorFlow's cluster spec ({error!r}): "
                          f'expected {{"cluster": {{"worker": [...]}}, "task": '
                          f'{{"type": "worker", "index": 0}}}}') from None
    count = len(chiefs) + len(workers)
    if count <= 1:
        return None
    is_chief = kind == "chief" or (not chiefs and kind == "worker" and index == 0)
    return Worker(index=index + (len(chiefs) if kind == "worker" else 0), count=count,
                  is_chief=is_chief)


def strategy() -> tf.distribute.Strategy:
    """Return the MultiWorkerMirroredStrategy (before any other TF op: collectives need it)."""
    _patch_keras_reduction()
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_paths(config: RunConfig, folder: Path) -> RunConfig:
    """Return `config` writing under `folder`: a non-chief worker's MLflow store, exports
    and checkpoints, where nobody looks and which go when it ends."""
    return config.model_copy(update={
        "train": config.train.model_copy(update={"checkpoint_dir": folder / "checkpoints"}),
        "export": config.export.model_copy(update={"base_dir": folder / "saved_models"}),
        "tracking": config.tracking.model_copy(
            update={"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}"}),
    })


def barrier(distribution: tf.distribute.Strategy) -> None:
    """Return once every worker got here (an all-reduce every worker takes part in)."""
    ones = distribution.run(lambda: tf.constant(1.0))
    distribution.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None).numpy()


def broadcast_from_chief(distribution: tf.distribute.Strategy, worker: Worker, value: int) -> int:
    """Return the chief's `value` on every worker (the others pass anything).

    For decisions each worker could take differently (a timed precision choice): all must
    build the same model.
    """
    def contribution():
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0  # on the chief
        return tf.where(first, tf.constant(value if worker.is_chief else 0, tf.int64),
                        tf.constant(0, tf.int64))

    total = distribution.reduce(tf.distribute.ReduceOp.SUM, distribution.run(contribution), axis=None)
    return int(total.numpy())


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Return `dataset` sharded element-wise across workers (see the module docstring)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def build_for_fit(model: keras.Model, distribution: tf.distribute.Strategy,
                  dataset: tf.data.Dataset) -> None:
    """Make `model` ready for a multi-worker fit: synchronized batch norm, metrics built.

    Batch normalization normalises with statistics over the global batch, all-reduced each
    step: with each worker's own, the moving averages drift apart and the workers end with
    different weights. Keras 3 (3.15) builds metrics and loss in fit from a first
    distributed batch averaged with strategy.reduce, which MultiWorkerMirroredStrategy
    refuses for a nested batch (keras-team/keras#20585); built here from one local batch,
    fit has nothing left to build.
    """
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    with distribution.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _patch_keras_reduction() -> None:
    """Average per-step metrics across workers as scalars.

    Keras 3 (3.15) reduces them with strategy.reduce(MEAN, axis=0), which fails on the
    scalars a step returns under MultiWorkerMirroredStrategy (keras-team/keras#20585). Every
    worker then sees the same global metrics, so early stopping, the learning-rate schedule
    and the best-epoch checkpoint decide alike on all of them.
    """
    from keras.src.backend.tensorflow import trainer

    original = getattr(trainer.reduce_per_replica, "__wrapped__", trainer.reduce_per_replica)

    def reduce_per_replica(values, distribution, reduction):
        if (reduction in ("auto", "mean")
                and isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy)):
            return tf.nest.map_structure(
                lambda value: distribution.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None),
                values)
        return original(values, distribution, reduction)

    reduce_per_replica.__wrapped__ = original
    trainer.reduce_per_replica = reduce_per_replica


def cluster_spec(count: int, ports: list[int], index: int) -> str:
    """Return the TF_CONFIG of worker `index` of `count` on loopback."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports[:count]]},
                       "task": {"type": "worker", "index": index}})


def launch(command: list[str], count: int, log_dir: Path, free_port: Callable[[], int],
           on_failure: Callable[[str], None], log=print) -> int:
    """Run `command` as `count` workers on loopback; return 0, or the first failure's status.

    The chief (worker 0) prints to this terminal; the others to log_dir/worker-<i>.log. When
    one exits non-zero, the others are stopped (SIGTERM, then SIGKILL), `on_failure` gets a
    one-line reason, and the last lines of the failed worker's log are printed.
    """
    ports = [free_port() for _ in range(count)]
    processes, logs = [], []
    for index in range(count):
        env = {**os.environ, "TF_CONFIG": cluster_spec(count, ports, index)}
        log_file = None if index == 0 else open(log_dir / f"worker-{index}.log", "w")  # noqa: SIM115
        logs.append(log_file)
        processes.append(subprocess.Popen(command, env=env, stdout=log_file,
                                          stderr=subprocess.STDOUT if log_file else None))
    log(f"started {count} workers on loopback (ports {', '.join(map(str, ports))}); "
        f"worker 0 is the chief; the others log to {log_dir}")
    try:
        failed = _wait_for_first_failure(processes)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    finally:
        for log_file in logs:
            if log_file:
                log_file.close()
    if failed is None:
        return 0
    index, status = failed
    reason = f"worker {index} of {count} exited with status {status}"
    _stop(processes)
    on_failure(reason)
    if index:
        tail = (log_dir / f"worker-{index}.log").read_text(errors="replace").splitlines()[-15:]
        log("\n".join(f"[worker {index}] {line}" for line in tail))
    log(f"error: {reason}; the MLflow run is marked FAILED; run the same command to resume "
        "from the last backed-up epoch")
    return status if status > 0 else 1


def _wait_for_first_failure(processes: list[subprocess.Popen]) -> tuple[int, int] | None:
    while True:
        codes = [process.poll() for process in processes]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                return index, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHIEF_WAIT_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_command() -> list[str]:
    """Return the command line that started this process, to start it again per worker."""
    return [sys.executable, "-m", "pipeline", *sys.argv[1:]]
