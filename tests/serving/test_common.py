"""serving/common.py: version folders, free ports, report files and stopping subprocesses, written once."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from serving.common import free_port, list_versions, stop_process, write_report


def test_list_versions_keeps_integer_named_folders_only(tmp_path):
    for name in ("1", "12", ".staging-abc", "latest", "3x"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert list_versions(tmp_path) == {1: str(tmp_path / "1"), 12: str(tmp_path / "12")}
    with pytest.raises(FileNotFoundError):
        list_versions(tmp_path / "missing")


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_cpu_description_names_the_model_cores_and_vector_units():
    from serving.common import VECTOR_FLAGS, cpu_description

    described = cpu_description()
    assert described["cores"] >= 1 and described["cpu_model"]
    sets = described["instruction_sets"].split()
    assert sets == ["none"] or set(sets) <= set(VECTOR_FLAGS)


def test_write_report_writes_json_and_markdown_and_prints_both_paths(tmp_path, capsys):
    results = {"model": "demo", "p99_ms": 1.5}
    output = write_report(tmp_path / "out", "serving", results, "| a |\n|---|\n")
    assert json.loads((output / "serving.json").read_text()) == results
    assert (output / "serving.md").read_text() == "| a |\n|---|\n"
    printed = capsys.readouterr().out
    assert "| a |" in printed and str(output / "serving.json") in printed and str(output / "serving.md") in printed


def test_stop_process_terminates_and_kills_what_ignores_sigterm():
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(polite) == -signal.SIGTERM
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"
    assert stop_process(stubborn, grace_seconds=0.5) == -signal.SIGKILL
    assert stop_process(stubborn) == -signal.SIGKILL  # already ended: its code, nothing sent
