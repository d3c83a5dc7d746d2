"""`--help` of every command a user types answers at once, without importing TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Runs the module as `python -m` does, then says whether TensorFlow got imported.
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
else:
    code = 0
print("TENSORFLOW_IMPORTED" if "tensorflow" in sys.modules else "NO_TENSORFLOW", file=sys.stderr)
sys.exit(code)
"""

ENTRY_POINTS = [
    ["pipeline"], ["pipeline", "train"], ["pipeline", "tune"], ["pipeline", "promote"],
    ["pipeline", "data"], ["pipeline", "config"], ["pipeline", "mlflow-links"],
    ["pipeline.bench.tune"], ["pipeline.bench.accuracy"], ["pipeline.bench.choices"], ["pipeline.bench.train"],
    ["serving"], ["serving.client"], ["serving.client", "predict"], ["serving.client", "status"],
    ["serving.launch"], ["serving.predict_demo"], ["serving.bench.serve"], ["serving.bench.soak"],
]


@pytest.mark.parametrize("command", ENTRY_POINTS, ids=" ".join)
def test_help_is_quick_and_does_not_import_tensorflow(command):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *command, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NO_TENSORFLOW" in done.stderr, f"{' '.join(command)} --help imported TensorFlow"
    assert "Usage" in done.stdout or "usage" in done.stdout
    # Under 1 s on a quiet machine; the bound leaves room for a shared CI host.
    assert elapsed < 3.0, f"{' '.join(command)} --help took {elapsed:.1f} s"


def test_server_help_says_which_flags_are_refused():
    done = subprocess.run([sys.executable, "-m", "serving", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    text = " ".join(done.stdout.split())
    assert "Accepted for compatibility" not in text
    assert "--ssl_config_file SSL_CONFIG_FILE Not supported here (SSL): refused at start-up" in text
    assert "--xla_cpu_compilation_enabled [XLA_CPU_COMPILATION_ENABLED] Accepted and ignored" in text


def test_client_help_keeps_its_examples_on_their_own_lines():
    done = subprocess.run([sys.executable, "-m", "serving.client", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "100"})
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert "python -m serving.client predict --model mnist --pixels batch.npy" in lines
    assert "python -m serving.client status --model mnist" in lines
