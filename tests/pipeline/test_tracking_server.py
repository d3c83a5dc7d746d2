"""make mlflow-server: a real PostgreSQL cluster and MLflow server; make train, tune, promote
and fetch-models against it over HTTP, with nothing but MLFLOW_TRACKING_URI set."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
import yaml
from mlflow import MlflowClient

from pipeline.config import dump_config, load_config
from serving.common import free_port
from tests.pipeline.stages.test_tune import sweep_overrides

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
pytestmark = [
    pytest.mark.slow,  # two to three minutes on 2 busy cores: server start, four CLI runs
    pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                       reason="needs Debian's postgresql package"),
]


def make(*arguments: str, cwd: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """Start `make <arguments>` with this repository's Makefile and this venv, in `cwd`."""
    command = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"),
               "-o", str(VENV / ".installed"), f"VENV={VENV}", *arguments]
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO),
                                                   **(env or {})}, text=True, **kwargs)


@pytest.fixture
def tracking_server():
    """Yield (tracking URI, data folder) of `make mlflow-server`; stop it and PostgreSQL after."""
    # PostgreSQL runs as `postgres` when the tests run as root: its folder must be reachable.
    data_dir = Path(tempfile.mkdtemp(prefix="tfpipe-mlflow-server-"))
    data_dir.chmod(0o755)
    port = free_port()
    server = make("mlflow-server", f"MLFLOW_DATA={data_dir / 'data'}", f"MLFLOW_PORT={port}",
                  cwd=data_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  start_new_session=True)
    uri, seen = None, []
    deadline = time.monotonic() + 240
    while uri is None and time.monotonic() < deadline and server.poll() is None:
        line = server.stdout.readline()
        seen.append(line)
        if line.startswith("export MLFLOW_TRACKING_URI="):
            uri = line.strip().split("=", 1)[1]
    try:
        assert uri == f"http://127.0.0.1:{port}", "".join(seen[-20:])
        yield uri, data_dir / "data"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        pid_file = data_dir / "data/postgres/postmaster.pid"
        for _ in range(180):
            if not pid_file.exists():
                break
            time.sleep(0.5)
        stopped = not pid_file.exists()
        server.stdout.close()
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert stopped, "PostgreSQL was left running after the server stopped"


def test_train_tune_promote_and_fetch_over_http(tracking_server, workdir, image_folder):
    uri, data_dir = tracking_server
    config = load_config(None, sweep_overrides(image_folder, **{"tune.max_trials": 2}))
    (workdir / "tiny.yaml").write_text(dump_config(config))
    http = {"MLFLOW_TRACKING_URI": uri}
    for target in ("train", "tune", "promote"):
        assert make(target, "CONFIG=tiny.yaml", cwd=workdir, env=http).wait() == 0, target
    assert not (workdir / "mlruns").exists()  # nothing went to the local default store

    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = mlflow.get_experiment_by_name("tests")
    runs = mlflow.search_runs([experiment.experiment_id], max_results=100)
    [trained] = [run for run in runs if run.info.run_name == "tiny · cnn · train"
                 and "mlflow.parentRunId" not in run.data.tags]
    assert trained.info.status == "FINISHED"
    assert trained.data.params["data.batch_size"] == "16" and "test_accuracy" in trained.data.metrics
    assert [m.step for m in mlflow.get_metric_history(trained.info.run_id, "val_accuracy")] == [1, 2]
    artifacts = {item.path for item in mlflow.list_artifacts(trained.info.run_id, "saved_model")}
    assert "saved_model/saved_model.pb" in artifacts
    # The server stored them in its artifact store, served over HTTP (mlflow-artifacts:/).
    assert trained.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert list(data_dir.glob(f"artifacts/**/{trained.info.run_id}/artifacts/saved_model/saved_model.pb"))
    trials = [run for run in runs if "kerastuner.trial_id" in run.data.tags]
    assert len(trials) == 2 and all(run.info.status == "FINISHED" for run in trials)
    assert mlflow.get_model_version_by_alias("tiny", "challenger").version == "2"
    assert mlflow.get_model_version_by_alias("tiny", "champion").version == "2"

    # The runs are rows in PostgreSQL (over its Unix socket, as the server reaches it).
    with psycopg2.connect(host=str(data_dir / "postgres"), user="mlflow", dbname="mlflow") as db:
        with db.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'")
            assert cursor.fetchone()[0] == len(runs)

    # Another machine: fetch the served version from the registry, as the init container does.
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tiny.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    fetch = make("fetch-models", "CONFIG=tiny.yaml", "MODEL=tiny", cwd=elsewhere, env=http,
                 stdout=subprocess.PIPE)
    assert fetch.wait() == 0
    assert "tiny version 2 (challenger, champion): downloaded" in fetch.stdout.read()
    fetched = elsewhere / "saved_models/tiny/2/saved_model.pb"
    assert fetched.read_bytes() == (workdir / "saved_models/tiny/2/saved_model.pb").read_bytes()
    assert [path.name for path in (elsewhere / "saved_models/tiny").iterdir()] == ["2"]
