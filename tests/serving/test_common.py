"""serving/common.py: the version folders and free ports every part of serving/ shares."""

from __future__ import annotations

import socket

import pytest

from serving.common import free_port, list_versions


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
