"""Training on two MultiWorkerMirroredStrategy workers on loopback: the same weights on both,
only the chief writes, its export serves; a lost worker fails the run, which then resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import tensorflow as tf
from mlflow import MlflowClient

from pipeline.config import dump_config, load_config
from pipeline.fitting import multi_worker
from serving.common import free_port
from tests.conftest import tiny_overrides
from tests.serving.serving_fixtures import ServerProcess

REPO = Path(__file__).resolve().parents[3]
# One worker of a test: the stage's own run(), keeping its final weights for comparison.
WORKER = """
import sys
import keras, numpy as np
from pathlib import Path
from pipeline.config import load_config
from pipeline.stages import train

class KeepWeights(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        np.savez(sys.argv[2], *self.model.get_weights())

train.run(load_config(Path(sys.argv[1]), {}), callbacks=[KeepWeights()])
"""


def write_config(workdir: Path, image_folder: Path, **extra) -> Path:
    path = workdir / "tiny.yaml"
    path.write_text(dump_config(load_config(None, tiny_overrides(image_folder, **extra))))
    return path


def environment(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def test_cluster_spec_names_the_chief():
    assert multi_worker.from_environment() is None or "TF_CONFIG" in os.environ
    spec = multi_worker.cluster_spec(2, [1234, 1235], 1)
    assert json.loads(spec)["task"] == {"type": "worker", "index": 1}
    os.environ["TF_CONFIG"] = spec
    try:
        assert multi_worker.from_environment() == multi_worker.Worker(1, 2, is_chief=False)
        os.environ["TF_CONFIG"] = multi_worker.cluster_spec(2, [1234, 1235], 0)
        assert multi_worker.from_environment().is_chief
        os.environ["TF_CONFIG"] = '{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, ' \
                                  '"task": {"type": "worker", "index": 0}}'
        assert multi_worker.from_environment() == multi_worker.Worker(1, 2, is_chief=False)
        os.environ["TF_CONFIG"] = '{"cluster": {"worker": ["a:1"]}}'
        with pytest.raises(Exception, match="TF_CONFIG is not TensorFlow's cluster spec"):
            multi_worker.from_environment()
    finally:
        del os.environ["TF_CONFIG"]


@pytest.mark.slow  # two TensorFlow processes and a server: over a minute on 2 busy cores
def test_two_workers_end_with_the_same_weights_and_the_chief_export_serves(workdir, image_folder):
    config = write_config(workdir, image_folder, **{"model.batch_norm": True})
    ports = [free_port(), free_port()]
    before = set(Path(tempfile.gettempdir()).glob("tfpipe-worker1-*"))
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, str(config), str(workdir / f"weights{index}.npz")],
        cwd=workdir, env=environment(TF_CONFIG=multi_worker.cluster_spec(2, ports, index)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in (0, 1)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "worker 0 of 2 | CollectiveAllReduceStrategy (2 replica(s))" in outputs[0]

    chief, other = np.load(workdir / "weights0.npz"), np.load(workdir / "weights1.npz")
    assert len(chief.files) == len(other.files) > 4  # batch norm's moving statistics included
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name])

    # Only the chief wrote here: one MLflow run, one export; worker 1's folder is gone.
    uri = f"sqlite:///{workdir / 'mlruns/mlflow.db'}"
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("tests").experiment_id])
    assert [run.info.status for run in runs] == ["FINISHED"]
    assert sorted(path.name for path in (workdir / "saved_models/tiny").iterdir()) == ["1"]
    assert not list((workdir / "checkpoints").glob("*"))
    assert set(Path(tempfile.gettempdir()).glob("tfpipe-worker1-*")) == before

    export = workdir / "saved_models/tiny/1"
    images = np.random.default_rng(0).integers(0, 255, (3, 12, 12, 1), dtype=np.uint8)
    expected = tf.saved_model.load(str(export)).signatures["serving_default"](
        image=tf.constant(images))["probabilities"].numpy()
    server = ServerProcess(["--model_name=tiny", f"--model_base_path={export.parent}"],
                           free_port(), free_port()).wait_ready()
    try:
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{server.rest_port}/v1/models/tiny:predict",
            data=orjson.dumps({"instances": images.tolist()}), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = orjson.loads(response.read())
    finally:
        server.stop()
    served = np.array([prediction["probabilities"] for prediction in answer["predictions"]])
    np.testing.assert_allclose(served, expected, atol=1e-6)


def worker_pid(launcher: subprocess.Popen, index: int) -> int | None:
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(line.startswith(b"TF_CONFIG=") and b'"index": %d' % index in line
               for line in environ):
            return int(child)
    return None


@pytest.mark.slow  # two launches of two TensorFlow workers: minutes on 2 busy cores
def test_a_lost_worker_fails_the_run_and_the_same_command_resumes_it(workdir, image_folder):
    config = write_config(workdir, image_folder, **{"train.epochs": 4})
    command = [sys.executable, "-m", "pipeline", "train", "--config", str(config), "--workers", "2"]
    launcher = subprocess.Popen(command, cwd=workdir, env=environment(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    backup = workdir / "checkpoints/tiny/backup/training_metadata.json"
    deadline = time.monotonic() + 600
    while not backup.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    pid = worker_pid(launcher, 1)
    assert backup.exists() and pid is not None
    os.kill(pid, signal.SIGKILL)
    output = launcher.communicate(timeout=300)[0]
    assert launcher.returncode != 0
    assert "error: worker 1 of 2 exited with status -9; the MLflow run is marked FAILED" in output

    client = MlflowClient(f"sqlite:///{workdir / 'mlruns/mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["resumable"] == "true"
    assert "worker 1 of 2 exited" in run.data.tags["error"]
    done = json.loads(backup.read_text())["epoch"]

    again = subprocess.run(command, cwd=workdir, env=environment(), text=True,
                           capture_output=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"MLflow run {run.info.run_id} (resumed)" in again.stdout
    assert f"Epoch {done + 1}/4" in again.stdout and "Epoch 1/4" not in again.stdout
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumable"] == "false"
    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(set(steps)) == [1, 2, 3, 4]
    assert (workdir / "saved_models/tiny/1/saved_model.pb").exists()
