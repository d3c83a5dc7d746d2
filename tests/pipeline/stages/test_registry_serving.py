"""The registry drives what is served: tune, promote and roll back against a live `make serve`.

Real pieces throughout: models trained and exported by the pipeline, an MLflow store in the
test's folder, `python -m serving.launch` (what `make serve` runs) serving the registry's
models.config from a subprocess, and a client asking for `stable` the whole time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from pipeline.config import ConfigError, dump_config, load_config
from pipeline.stages import promote, registry, train, tune
from serving.common import free_port, read_lineage
from serving.release import server_record
from serving.server.management import config as config_lib
from serving.warmup_requests import WARMUP_FILE
from tests.conftest import tiny_overrides
from tests.pipeline.stages.test_tune import SPACE
from tests.serving.serving_fixtures import copy_version

REPO = Path(__file__).resolve().parents[3]
GATE = {"tune.gate_examples": 8, "tune.gate_p99_ms": 10_000}  # a shared, busy test host


def mlflow_client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'mlruns/mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def trained_version(folder: Path, **overrides) -> int:
    config = load_config(None, tiny_overrides(folder, **{"train.insights": False, **overrides}))
    return train.run(config, log=lambda line: None).model_version


class Launched:
    """`python -m serving.launch` as `make serve` runs it, on free ports, stopped with Ctrl-C."""

    def __init__(self, workdir: Path, config_path: Path):
        self.grpc_port, self.rest_port = free_port(), free_port()
        monitoring = workdir / "monitoring.config"
        monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }')
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.launch", "--backend", "compatible",
             "--grpc-port", str(self.grpc_port), "--rest-port", str(self.rest_port),
             "--model_config_file", str(config_path), "--from-registry", "--",
             f"--monitoring_config_file={monitoring}", "--max_num_load_retries=0"],
            cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 180
        while not any("Exporting HTTP/REST API" in line for line in self.lines):
            assert self.process.poll() is None and time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.1)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}/metrics", timeout=30) as page:
            return page.read().decode()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


class StableClient(threading.Thread):
    """Asks for label `stable` without pause; counts failures and which versions answered."""

    def __init__(self, port: int, pixels: np.ndarray):
        super().__init__(daemon=True)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}"))
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name, self.request.model_spec.version_label = "tiny", "stable"
        self.request.inputs["image"].CopyFrom(tf.make_tensor_proto(pixels))
        self.versions: list[int] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.versions.append(self.stub.Predict(self.request, timeout=30).model_spec.version.value)
            except grpc.RpcError as error:
                self.failures.append(f"{error.code().name}: {error.details()}")
            time.sleep(0.01)

    def latest(self) -> int:
        count = len(self.versions)
        while len(self.versions) == count:  # an answer sent after the caller's last change
            time.sleep(0.01)
        return self.versions[-1]


def test_tune_promote_rollback_move_stable_live_with_no_failed_request(workdir, image_folder):
    weak = trained_version(image_folder, **{"model.learning_rate": 1e-6, "train.epochs": 1})
    mlflow = mlflow_client(workdir)
    mlflow.set_registered_model_alias("tiny", "champion", str(weak))
    config = load_config(None, tiny_overrides(image_folder, **GATE, **{
        "train.insights": False, "tune.tuner": "random", "tune.max_trials": 1, "tune.epochs": 2,
        "tune.hyperparameters": {**SPACE, "filters": 6, "learning_rate": 0.01},
        "tune.retrain_epochs": 8}))
    config_path = registry.write_serving_config(config, log=lambda line: None)
    server = Launched(workdir, config_path)
    record = server_record.read_record(workdir / "saved_models")
    assert record.from_registry and record.grpc_port == server.grpc_port
    client = StableClient(server.grpc_port, np.zeros((1, 12, 12, 1), np.uint8))
    client.start()
    try:
        assert client.latest() == weak
        strong = tune.run(config, log=lambda line: None).final.model_version
        [status] = registry.status(config, log=lambda line: None)  # tune: canary live, stable kept
        assert status.agree and status.labels["canary"] == (strong, strong)
        assert client.latest() == weak
        lines: list[str] = []
        result = promote.run(config, log=lines.append)
        assert result.promoted and result.champion_after == strong, lines
        assert result.gate.requests >= 2 * 8 and result.gate.max_abs_diff <= 1e-5
        assert any(line.startswith("live: the server at") for line in lines)
        assert client.latest() == strong
        [status] = registry.status(config, log=lambda line: None)
        assert status.agree and status.labels["stable"] == (strong, strong)
        run_id = read_lineage(workdir / f"saved_models/tiny/{strong}")["run_id"]
        assert run_id == mlflow.get_model_version("tiny", str(strong)).run_id
        assert (f'tfpipe_model_lineage_info{{model_name="tiny",registered_version="{strong}",'
                f'run_id="{run_id}",version="{strong}"}} 1.0') in server.metrics()
        assert mlflow.get_model_version("tiny", str(strong)).tags["export_path"] == str(
            (workdir / f"saved_models/tiny/{strong}").resolve())

        assert promote.rollback(config, log=lambda line: None) == weak
        assert client.latest() == weak
        assert int(mlflow.get_model_version_by_alias("tiny", "champion").version) == weak
        assert registry.status(config, log=lambda line: None)[0].agree

        # A previous champion the live server cannot load: refused, and nothing moves.
        broken = copy_version(workdir / f"saved_models/tiny/{weak}", workdir / "saved_models/tiny", 9)
        (broken / WARMUP_FILE).write_bytes(b"not a TFRecord")
        mlflow.set_registered_model_tag("tiny", "champion_history", "9")
        with pytest.raises(promote.PromotionError, match=r"the model server at 127.0.0.1:\d+ could "
                           r"not load tiny version 9: .*; the registry and the served labels are"):
            promote.rollback(config, log=lambda line: None)
        assert int(mlflow.get_model_version_by_alias("tiny", "champion").version) == weak
        assert client.latest() == weak and registry.status(config, log=lambda line: None)[0].agree
    finally:
        client.done.set()
        client.join(timeout=60)
        assert server.stop() == 0
    assert client.failures == [] and {weak, strong} <= set(client.versions)
    assert server_record.read_record(workdir / "saved_models") is None  # launch removed it


def test_bad_promotions_move_nothing(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder, **GATE))
    champion = trained_version(image_folder, **{"train.epochs": 1})
    mlflow = mlflow_client(workdir)
    mlflow.set_registered_model_alias("tiny", "champion", str(champion))
    with pytest.raises(ConfigError, match="no version with the alias 'challenger'"):
        promote.run(config, log=lambda line: None)
    challenger = trained_version(image_folder, **{"train.epochs": 1})
    mlflow.set_registered_model_alias("tiny", "challenger", str(challenger))
    version_dir = workdir / f"saved_models/tiny/{challenger}"
    version_dir.rename(workdir / "elsewhere")
    with pytest.raises(ConfigError, match=rf"saved_models/tiny/{challenger} has no SavedModel"):
        promote.run(config, log=lambda line: None)
    (workdir / "elsewhere").rename(version_dir)

    def unchanged():
        assert int(mlflow.get_model_version_by_alias("tiny", "champion").version) == champion
        assert "champion_history" not in mlflow.get_registered_model("tiny").tags

    warmup = version_dir / "assets.extra/tf_serving_warmup_requests"
    intact = warmup.read_bytes()
    warmup.write_bytes(intact[: len(intact) // 2])  # loads in-process; a server cannot warm it up
    with pytest.raises(promote.PromotionError, match=r"gate failed, nothing promoted: tiny version "
                       rf"{challenger} .* does not load in a model server: .*DATA_LOSS"):
        promote.run(config, log=lambda line: None)
    unchanged()
    warmup.write_bytes(intact)
    variables = next((version_dir / "variables").glob("variables.data-*"))
    variables.write_bytes(b"\0" * 64)
    with pytest.raises(promote.PromotionError, match=rf"tiny version {challenger} .* does not load: "):
        promote.run(config, log=lambda line: None)
    unchanged()

    mlflow.set_registered_model_tag("tiny", "champion_history", str(challenger))
    server_record.write_record(workdir / "saved_models", server_record.ServerRecord(
        pid=os.getpid(), host="127.0.0.1", grpc_port=free_port(), rest_port=free_port(),
        config_path=str(registry.config_path(config).resolve()), from_registry=True))
    registry.write_serving_config(config, log=lambda line: None)
    with pytest.raises(promote.PromotionError, match="the model server at 127.0.0.1:.* is "
                       "unreachable .*; the registry and the served labels are unchanged"):
        promote.rollback(config, log=lambda line: None)
    assert int(mlflow.get_model_version_by_alias("tiny", "champion").version) == champion
    assert mlflow.get_registered_model("tiny").tags["champion_history"] == str(challenger)
    warnings: list[str] = []
    [state] = registry.status(config, log=warnings.append)  # the registry, and a warning
    assert not state.agree and state.labels["stable"] == (champion, None)
    assert any("unreachable" in line for line in warnings)


def test_commands_say_in_one_line_when_there_is_nothing_to_serve_or_roll_back(workdir):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    empty = runner.invoke(app, ["serving-config", "--set", "tracking.experiment=tests"])
    assert empty.exit_code == 1 and "Traceback" not in empty.output
    assert "error: no models under saved_models/" in empty.output
    nothing = runner.invoke(app, ["rollback", "--model", "ghost"])
    assert nothing.exit_code == 1
    assert "error: model 'ghost' has no previous champion to roll back to" in nothing.output


def test_a_models_config_for_a_container_points_at_its_mount(workdir, image_folder):
    from typer.testing import CliRunner

    from pipeline.cli import app

    version = trained_version(image_folder, **{"train.epochs": 1})
    mlflow_client(workdir).set_registered_model_alias("tiny", "champion", str(version))
    config_file = workdir / "tiny.yaml"
    config_file.write_text(dump_config(load_config(None, tiny_overrides(image_folder))))
    runner = CliRunner()
    written = runner.invoke(app, ["serving-config", "--config", str(config_file),
                                  "--base-path-root", "/models", "--output", "deploy.config"])
    assert written.exit_code == 0, written.output
    [model] = config_lib.read_config_file(workdir / "deploy.config").model_config_list.config
    assert model.base_path == "/models/tiny"  # the container's path, not resolved on this host
    assert list(model.model_version_policy.specific.versions) == [version]
    assert dict(model.version_labels) == {"champion": version, "stable": version}
    relative = runner.invoke(app, ["serving-config", "--config", str(config_file),
                                   "--base-path-root", "models"])
    assert relative.exit_code == 2 and "Traceback" not in relative.output
    assert "error: --base-path-root must be an absolute path, such as /models (got 'models')" \
        in relative.output
