"""The README walked as a newcomer would: its quick start, tuning and serving commands, run
as written (extracted from README.md, so the README cannot drift from the code).

Blocks marked `<!-- readme-walk: run -->` run line by line in one bash script (each line
must succeed); `<!-- readme-walk: background -->` blocks are servers, started and later
stopped with Ctrl-C (SIGINT), as their comments say. The walk runs in a temp folder with
the checkout's Makefile and configs, on tiny settings given the way a user would: EPOCHS
and SET in the environment (a README line's own SET gets the tiny fields added), free
ports in GRPC_PORT / REST_PORT / MLFLOW_PORT and in place of 8500 / 8501 in the text.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- readme-walk: (run|background) -->\n```(bash|python)\n(.*?)```", re.S)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TINY = "data.max_examples=200 train.insights=false export.parity_examples=16"
PRELUDE = """set -eo pipefail
make() { command make --no-print-directory VENV="$WALK_VENV" -o "$WALK_VENV/.installed" "$@"; }
python() { "$WALK_PYTHON" "$@"; }
"""


def walked_blocks() -> list[tuple[str, str, str]]:
    """Return (mode, language, text) of every marked block, in README order."""
    return BLOCK.findall(README.read_text())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_walked(text: str, ports: dict[str, int]) -> str:
    """The block with free ports for the documented ones and the tiny fields in any SET."""
    text = re.sub(r"\b8500\b", str(ports["GRPC_PORT"]), text)
    text = re.sub(r"\b8501\b", str(ports["REST_PORT"]), text)
    return text.replace('SET="', f'SET="{TINY} ')


def test_the_walk_covers_the_first_hour():
    commands = "\n".join(text for _, _, text in walked_blocks())
    for expected in ("make train ", "make mlflow-ui", "make tune EPOCHS=1 TRIALS=2",
                     "make promote", "make serve", "make predict-grpc", "make predict-rest IMAGE=",
                     ":predict -d", "client.predict(", "--retry-all-errors"):
        assert expected in commands, expected
    for _, _, text in walked_blocks():  # every file a walked command names ships
        for path in re.findall(r"(?:IMAGE=|open\(\"|-w0 )([\w/.-]+\.png)", text):
            assert (ROOT / path).is_file(), path


@pytest.fixture
def walk_folder(tmp_path: Path) -> Path:
    """A folder holding what the README's commands read from the checkout."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "serving/client/samples", tmp_path / "serving/client/samples")
    return tmp_path


class Walk:
    def __init__(self, folder: Path):
        self.folder = folder
        self.ports = {name: free_port() for name in ("GRPC_PORT", "REST_PORT", "MLFLOW_PORT")}
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("MLFLOW_", "MAKE", "KERASTUNER_", "TFPIPE_"))}
        self.env.update({
            "WALK_VENV": sys.prefix, "WALK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
            "EPOCHS": "1", "SET": TINY, "TF_CPP_MIN_LOG_LEVEL": "2",
            **{name: str(port) for name, port in self.ports.items()}})
        self.servers: dict[str, tuple[subprocess.Popen, Path]] = {}

    def run(self, language: str, text: str) -> str:
        command = ([sys.executable, "-c", text] if language == "python"
                   else ["bash", "-c", PRELUDE + "set -x\n" + text])
        done = subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"README block failed:\n{text}\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    def start(self, line: str) -> None:
        log = self.folder / f"server-{len(list(self.folder.glob('server-*.log')))}.log"
        with log.open("w") as output:
            process = subprocess.Popen(["bash", "-c", PRELUDE + line], cwd=self.folder,
                                       env=self.env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.servers[line] = (process, log)

    def output(self, line: str) -> str:
        return self.servers[line][1].read_text()

    def wait_for(self, line: str, pattern: str, timeout: float = 300) -> re.Match:
        process, _ = self.servers[line]
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = re.search(pattern, self.output(line))
            if found:
                return found
            assert process.poll() is None, f"{line} ended:\n{self.output(line)[-3000:]}"
            time.sleep(0.5)
        raise AssertionError(f"{line} never printed {pattern!r}:\n{self.output(line)[-3000:]}")

    def stop(self, line: str) -> int:
        """Ctrl-C, as in a terminal: SIGINT to the whole process group; SIGKILL if it hangs."""
        process, _ = self.servers.pop(line)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                return process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                raise AssertionError(f"{line} did not stop on Ctrl-C") from None
        return process.returncode

    def stop_all(self) -> None:
        for line in list(self.servers):
            try:
                self.stop(line)
            except AssertionError:
                pass


@pytest.mark.skipif(not FASHION_MNIST.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_the_readme_commands_work_as_written(walk_folder):
    walk = Walk(walk_folder)
    try:
        for mode, language, text in walked_blocks():
            text = as_walked(text, walk.ports)
            if mode == "run":
                walk.run(language, text)
                continue
            for line in filter(None, (line.split("#")[0].strip() for line in text.splitlines())):
                walk.start(line)
                if line == "make mlflow-ui":  # the addresses it prints open the latest run
                    port = walk.ports["MLFLOW_PORT"]
                    walk.wait_for(line, rf"latest run fashion_cnn · cnn · train \(FINISHED\): "
                                        rf"http://127\.0\.0\.1:{port}/#/experiments/\d+/runs/\w+")
                    walk.wait_for(line, "Uvicorn running|Listening at|Started server process")
                    walk.stop(line)
        log = walk.servers["make serve"][1]
        assert walk.stop("make serve") in (0, 130, -signal.SIGINT)  # make: *** Interrupt
        assert re.search(r"Starting \w+ server for models \[fashion_cnn, fashion_rnn\]", log.read_text())
        assert "Stopped the" in log.read_text()
    finally:
        walk.stop_all()
    assert (walk_folder / "saved_models/fashion_rnn/1").is_dir()
    # make tune EPOCHS=1 TRIALS=2: two trials, and the best retrained for 1 epoch, not 14.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{walk_folder / 'mlruns/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
    by_name = {run.info.run_name: run for run in runs}
    [retrained] = [run for name, run in by_name.items() if name.endswith("retrained")]
    assert retrained.data.params["train.epochs"] == "1"
    assert len([name for name in by_name if " · trial " in name]) == 2
