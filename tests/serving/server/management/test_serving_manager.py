"""The model manager on real SavedModels: version policies, labels, reloads, failures, warmup."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tensorflow_serving.apis import model_pb2

from serving.bench.demo_model import sample_pixels
from serving.server.core.errors import ServingError
from serving.server.management import config as config_lib
from serving.server.management.manager import ManagerOptions, ModelManager
from serving.server.management.warmup_replay import run_warmup
from tests.serving.serving_fixtures import copy_version, pixel_request, write_warmup


@pytest.fixture
def versions(model_store, tmp_path):
    """Return a base path holding versions 1, 2 and 3 of the half_plus_two model."""
    base = tmp_path / "hpt"
    base.mkdir()
    for version in (1, 2, 3):
        copy_version(model_store["hpt_v1"], base, version)
    return base


def manager_for(text: str, **options) -> ModelManager:
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0.05, max_num_load_retries=0, **options))
    manager.reload(config_lib.parse_config_text(text))
    return manager


def spec(name: str, version: int | None = None, label: str | None = None) -> model_pb2.ModelSpec:
    model_spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        model_spec.version.value = version
    if label is not None:
        model_spec.version_label = label
    return model_spec


def states(manager: ModelManager, name: str) -> dict[int, str]:
    response = manager.model_status(spec(name))
    state = type(response.model_version_status[0]).State
    return {entry.version: state.Name(entry.state) for entry in response.model_version_status}


def entry(name: str, base, policy: str = "", labels: str = "") -> str:
    return f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {policy} {labels} }}'


def test_version_policies_latest_n_all_and_specific(versions):
    manager = manager_for("model_config_list { "
                          + entry("latest", versions)
                          + entry("latest2", versions, "model_version_policy { latest { num_versions: 2 } }")
                          + entry("all", versions, "model_version_policy { all {} }")
                          + entry("pinned", versions, "model_version_policy { specific { versions: 1 versions: 3 } }")
                          + "}")
    try:
        assert states(manager, "latest") == {3: "AVAILABLE"}
        assert states(manager, "latest2") == {3: "AVAILABLE", 2: "AVAILABLE"}
        assert states(manager, "all") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
        assert states(manager, "pinned") == {3: "AVAILABLE", 1: "AVAILABLE"}
        assert manager.resolve(spec("pinned")).version == 3
        assert manager.resolve(spec("pinned", 1)).version == 1
        with pytest.raises(ServingError, match=r"Servable not found for request: Specific\(pinned, 2\)"):
            manager.resolve(spec("pinned", 2))
    finally:
        manager.stop()


def test_labels_need_available_versions_unless_allowed(versions):
    labelled = "model_config_list { " + entry(
        "m", versions, "model_version_policy { specific { versions: 1 versions: 2 } }",
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }') + "}"
    with pytest.raises(ServingError) as raised:
        manager_for(labelled)
    assert raised.value.code_name == "FAILED_PRECONDITION"
    assert "Request to assign label to version 2 of model m, which is not currently available" in raised.value.message
    manager = manager_for(labelled, allow_version_labels_for_unavailable_models=True)
    try:
        assert manager.resolve(spec("m", label="stable")).version == 1
        assert manager.resolve(spec("m", label="canary")).version == 2
        with pytest.raises(ServingError, match="Unrecognized servable version label: beta"):
            manager.resolve(spec("m", label="beta"))
        # Moving a label onto an available version works on reload; onto a missing one does not.
        manager.reload(config_lib.parse_config_text(labelled.replace("value: 1", "value: 2")))
        assert manager.resolve(spec("m", label="stable")).version == 2
        with pytest.raises(ServingError, match="version 3 of model m"):
            manager.reload(config_lib.parse_config_text(labelled.replace("value: 1", "value: 3")))
    finally:
        manager.stop()


def test_reload_adds_and_removes_models_and_changes_policies(versions):
    manager = manager_for("model_config_list { " + entry("a", versions) + "}")
    try:
        manager.reload(config_lib.parse_config_text(
            "model_config_list { " + entry("b", versions, "model_version_policy { specific { versions: 2 } }") + "}"))
        assert states(manager, "a") == {3: "END"}
        assert states(manager, "b") == {2: "AVAILABLE"}
        with pytest.raises(ServingError, match=r"Latest\(a\)"):
            manager.resolve(spec("a"))
        manager.reload(config_lib.parse_config_text(
            "model_config_list { " + entry("b", versions, "model_version_policy { specific { versions: 1 } }") + "}"))
        assert states(manager, "b") == {2: "END", 1: "AVAILABLE"}
    finally:
        manager.stop()


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "x" base_path: "relative/path" model_platform: "tensorflow" } }',
     "Expected model x to have an absolute path or URI; got base_path()=relative/path"),
    ('model_config_list { config { name: "x" base_path: "/tmp" model_platform: "tensorflow" } '
     'config { name: "x" base_path: "/tmp" model_platform: "tensorflow" } }',
     "Illegal to list model x multiple times in config list"),
    ('model_config_list { config { name: "x" base_path: "/tmp" model_platform: "pytorch" } }',
     "Model x requests unsupported platform pytorch"),
    ('model_config_list { config { name: "x" base_path: "/tmp" } }',
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform"),
    ('model_config_list { config { name: "../etc" base_path: "/tmp" model_platform: "tensorflow" } }',
     "invalid model name '../etc'"),
])
def test_invalid_configs_are_rejected(text, message):
    with pytest.raises(ServingError) as raised:
        manager_for(text)
    assert raised.value.code_name == "INVALID_ARGUMENT"
    assert message in raised.value.message


def test_new_model_that_fails_to_load_fails_the_reload(versions, tmp_path):
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ServingError) as raised:
        manager_for("model_config_list { " + entry("broken", broken) + "}")
    assert raised.value.code_name == "UNKNOWN"
    # The first config is an initial load (load_servables_fast.cc: "servable(s)"); reloads
    # say "model(s)" (server_core.cc; see test_serving_reload). The error is ReadBinaryProto's.
    assert raised.value.message.startswith(
        "1 servable(s) did not become available: {{{name: broken version: 1} due to error: "
        f"DATA_LOSS: Can't parse {broken / '1' / 'saved_model.pb'} as binary proto}}")


def test_failed_version_stays_visible_and_old_version_keeps_serving(versions):
    manager = manager_for("model_config_list { " + entry("m", versions) + "}")
    try:
        (versions / ".tmp-4").mkdir()
        (versions / ".tmp-4" / "saved_model.pb").write_bytes(b"garbage")
        (versions / ".tmp-4").rename(versions / "4")
        manager.poll()  # first sight: the folder must look the same on the next poll
        manager.poll()
        assert states(manager, "m") == {4: "END", 3: "AVAILABLE"}
        failed = manager.model_status(spec("m", 4)).model_version_status[0]
        assert failed.status.error_code == 15  # DATA_LOSS
        assert manager.resolve(spec("m")).version == 3
        manager.poll()  # a failed version is not retried while its folder stays
        assert states(manager, "m") == {4: "END", 3: "AVAILABLE"}
    finally:
        manager.stop()


def test_warmup_replays_records_and_a_failing_record_fails_the_load(model_store, tmp_path):
    base = tmp_path / "demo"
    base.mkdir()
    good = copy_version(model_store["demo_v1"], base, 1)
    write_warmup(good, [pixel_request("demo", sample_pixels(1)), pixel_request("demo", sample_pixels(3))])
    replayed = []

    def prepare(servable):
        replayed.append(run_warmup(servable))

    manager = manager_for("model_config_list { " + entry("demo", base) + "}", prepare=prepare)
    try:
        assert replayed == [2]
        bad = copy_version(model_store["demo_v1"], tmp_path, 2)
        write_warmup(bad, [pixel_request("demo", sample_pixels(1), signature_name="missing")])
        bad.rename(base / "2")
        manager.poll()
        manager.poll()
        failed = manager.model_status(spec("demo", 2)).model_version_status[0]
        assert failed.state == failed.END
        assert 'Serving signature key "missing" not found.' in failed.status.error_message
        assert manager.resolve(spec("demo")).version == 1
    finally:
        manager.stop()


def test_deleted_serving_version_unloads_and_the_now_latest_loads_again(model_store, tmp_path):
    base = tmp_path / "hpt"
    base.mkdir()
    copy_version(model_store["hpt_v1"], base, 1)
    manager = manager_for("model_config_list { " + entry("hpt", base) + "}")
    x = {"x": np.array([[1.0]], np.float32)}
    try:
        copy_version(model_store["hpt_v1"], base, 2)
        for _ in range(20):
            manager.poll()
        assert states(manager, "hpt") == {2: "AVAILABLE", 1: "END"}
        shutil.rmtree(base / "2")
        served = []
        for _ in range(20):  # every poll, a request to the latest version must succeed
            manager.poll()
            servable = manager.resolve(spec("hpt"))
            assert servable.run("serving_default", x)["y"].tolist() == [[2.5]]
            served.append(servable.version)
        assert states(manager, "hpt") == {2: "END", 1: "AVAILABLE"}
        assert served[-1] == 1 and served[0] in (1, 2)
    finally:
        manager.stop()


def test_an_unloaded_version_is_freed_although_loads_freeze_the_heap(model_store, tmp_path):
    import gc
    import weakref

    from serving.server.model_server import ModelServer
    from serving.server.options import ServerOptions

    base = tmp_path / "hpt"
    base.mkdir()
    copy_version(model_store["hpt_v1"], base, 1)
    server = ModelServer(ServerOptions(file_system_poll_wait_seconds=0.05, max_num_load_retries=0))
    manager = ModelManager(server._manager_options())  # the hooks the server process uses
    try:
        manager.reload(config_lib.parse_config_text("model_config_list { " + entry("hpt", base) + "}"))
        first = weakref.ref(manager.resolve(spec("hpt")).loaded)
        copy_version(model_store["hpt_v1"], base, 2)
        for _ in range(20):
            manager.poll()
        assert states(manager, "hpt") == {2: "AVAILABLE", 1: "END"}
        assert first() is None  # frozen cycles would keep every old version for good
    finally:
        manager.stop()
        gc.unfreeze()
