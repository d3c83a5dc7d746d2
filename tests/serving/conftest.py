"""Fixtures for the serving tests: real SavedModels, real servers on free loopback ports.

Models are exported once per session (the pipeline's tiny CNN, trained and exported by
`make train`'s code, and a TF1 "half plus two" with classify/regress signatures); servers are real `python -m serving`
subprocesses sharing one process per test module wherever the tests allow.
"""

from __future__ import annotations

import pytest

from serving.common import free_port
from tests.serving.serving_fixtures import ServerProcess, copy_version, export_half_plus_two


@pytest.fixture(scope="session")
def model_store(tmp_path_factory, trained_exports):
    """Return a dict of paths: a CNN (v1), half_plus_two (v1), under one models dir.

    The CNN ("demo" in these tests) is the pipeline's own tiny Fashion-MNIST export
    (tests/conftest.py `trained_exports`): uint8 `image` [-1, 28, 28, 1], 10 classes.
    """
    root = tmp_path_factory.mktemp("models")
    demo = copy_version(trained_exports["cnn"], root / "demo", 1)
    hpt = export_half_plus_two(root / "half_plus_two", 1)
    return {"root": root, "demo_v1": demo, "hpt_v1": hpt}


@pytest.fixture(scope="session")
def demo_function(model_store):
    """Return the in-process signature functions of demo v1 (the reference outputs)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_store["demo_v1"]))
    return loaded.signatures


@pytest.fixture(scope="session")
def start_server():
    """Return a factory starting servers; every server still running is stopped at the end."""
    servers: list[ServerProcess] = []

    def start(flags: list[str], wait: bool = True) -> ServerProcess:
        server = ServerProcess(flags, free_port(), free_port())
        servers.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in servers:
        server.stop()
