"""The Makefile, the user's interface: what `make help` promises is what each target does.

`make -n` prints the commands a target would run without running them, so these tests
check the command lines themselves (and the refusals, which stop make before any).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def make(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `make -n` in the checkout with this interpreter's virtualenv."""
    import os

    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MLFLOW_TRACKING_URI", "MAKEFLAGS", "MFLAGS")}
    environment.update(env or {})
    return subprocess.run(["make", "-n", "--no-print-directory", f"VENV={VENV}",
                           "-o", f"{VENV}/.installed", *arguments],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=environment)


def commands(*arguments: str, **kwargs) -> str:
    done = make(*arguments, **kwargs)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refusal(*arguments: str) -> str:
    done = make(*arguments)
    assert done.returncode != 0 and not done.stdout
    [line] = done.stderr.strip().splitlines()
    return line


def help_text() -> str:
    return subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("value", ["1", "yes", "YES", "True", "true", "on", "On"])
def test_overwrite_accepts_any_case_of_yes(value):
    assert "--overwrite" in commands("tune", f"OVERWRITE={value}")


@pytest.mark.parametrize("value", ["0", "no", "False", "OFF", ""])
def test_overwrite_no_keeps_the_search(value):
    assert "--overwrite" not in commands("tune", f"OVERWRITE={value}")


def test_a_yes_no_variable_refuses_anything_else():
    line = refusal("tune", "OVERWRITE=please")
    assert "OVERWRITE=please is not a yes/no value" in line


def test_tune_epochs_reach_the_retraining_unless_retrain_epochs_is_given():
    command = commands("tune", "EPOCHS=1", "TRIALS=2")
    assert "--epochs 1" in command and "--retrain-epochs 1" in command
    command = commands("tune", "EPOCHS=1", "RETRAIN_EPOCHS=30")
    assert "--epochs 1" in command and "--retrain-epochs 30" in command


def test_tune_passes_name_and_batch_size():
    command = commands("tune", "NAME=mine", "BATCH_SIZE=32")
    assert "--name mine" in command and "--batch-size 32" in command


@pytest.mark.parametrize("target, variable", [
    ("serve", "EPOCHS=3"), ("serve", "MODEL=fashion_cnn"), ("predict-rest", "SET=a.b=1"),
    ("promote", "EPOCHS=3"), ("tune", "IMAGE=x.png"), ("test", "CONFIG=configs/x.yaml"),
])
def test_a_variable_the_target_does_not_read_is_refused_naming_it(target, variable):
    line = refusal(target, variable)
    assert f"{variable} is not read by `make {target}`" in line and "make help" in line


def test_a_variable_one_of_the_goals_reads_is_accepted():
    commands("train", "serve", "EPOCHS=1", "HOST=0.0.0.0")


def test_help_lists_every_targets_variables_and_documents_each():
    text = help_text()
    makefile = (ROOT / "Makefile").read_text()
    documented = set(re.findall(r"^#> (\S+)", makefile, re.M))
    for target in re.findall(r"^([a-z-]+):.*## ", makefile, re.M):
        assert re.search(rf"^  {target} ", text, re.M), target
    for target, reads in re.findall(r"^READS_([a-z-]+) = (.*)$", makefile, re.M):
        for variable in re.findall(r"[A-Z_]+", reads.replace("READS_", " ")):
            if not reads.startswith("$("):
                assert variable in documented, f"{variable} (read by {target}) has no #> line"
        if not reads.startswith("$("):
            assert re.search(rf"^  {target} .*\n +reads: {re.escape(reads)}$", text, re.M), target
    for variable in documented:
        assert re.search(rf"^  {variable} +\S", text, re.M), variable
    assert "bench/results" in re.search(r"^  clean .*$", text, re.M).group(0)


def test_venv_gpu_installs_the_gpu_extra():
    assert "'.[dev,gpu]'" in commands("venv", "GPU=1")
    assert "gpu" not in commands("venv", "GPU=0")


def test_mlflow_ui_on_a_tracking_server_does_not_start_a_local_one():
    command = commands("mlflow-ui", env={"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"})
    assert "http://mlflow.internal:5000" in command
    assert "--ui-url \"$(MLFLOW_URI)\"" not in command
    # The same recipe starts `mlflow ui` only in the branch for a local store.
    remote, local = command.split("http://*|https://*)")[1].split(";;")[:2]
    assert "mlflow ui" not in remote and "mlflow ui --backend-store-uri" in local


def test_mlflow_ui_listens_on_host():
    assert "--host 0.0.0.0 --port 5001" in commands("mlflow-ui", "HOST=0.0.0.0", "MLFLOW_PORT=5001")


def test_serving_config_passes_the_container_root_and_the_output():
    done = commands("serving-config", "BASE_PATH_ROOT=/models", "MODELS_CONFIG_OUT=deploy/tfserving/models.config")
    assert "-m pipeline serving-config --config configs/fashion_cnn.yaml" in done
    assert "--output deploy/tfserving/models.config" in done and "--base-path-root /models" in done
    assert "--base-path-root" not in commands("serving-config")
