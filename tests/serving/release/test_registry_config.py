"""models.config from registry aliases, and the order of a live change (no server needed)."""

from __future__ import annotations

from serving.release.registry_config import ServedModel, build_config, rollout_steps
from serving.server.management import config as config_lib


def labels_of(config) -> dict[str, dict[str, int]]:
    return {model.name: dict(model.version_labels) for model in config.model_config_list.config}


def versions_of(config) -> dict[str, list[int]]:
    return {model.name: list(model.model_version_policy.specific.versions)
            for model in config.model_config_list.config}


def test_aliases_become_specific_versions_and_labels(tmp_path):
    config = build_config([
        ServedModel("cnn", tmp_path / "cnn", {"champion": 3, "challenger": 5}),
        ServedModel("rnn", tmp_path / "rnn"),
    ])
    assert labels_of(config) == {"cnn": {"champion": 3, "stable": 3, "challenger": 5, "canary": 5},
                                 "rnn": {}}
    assert versions_of(config)["cnn"] == [3, 5]
    [_, rnn] = config.model_config_list.config
    assert rnn.model_version_policy.WhichOneof("policy_choice") is None  # TF Serving's default
    text = config_lib.to_text(config)
    assert config_lib.parse_config_text(text) == config  # what both servers read back
    config_lib.validate(config)
    assert f'base_path: "{(tmp_path / "cnn").resolve()}"' in text


def test_a_promotion_loads_first_then_moves_labels_then_unloads(tmp_path):
    before = build_config([ServedModel("cnn", tmp_path, {"champion": 1, "challenger": 2})])
    after = build_config([ServedModel("cnn", tmp_path, {"champion": 2, "challenger": 2})])
    steps = rollout_steps(before, after, {"cnn": {1, 2}})
    assert [versions_of(step)["cnn"] for step in steps] == [[1, 2], [2]]
    assert labels_of(steps[0])["cnn"]["stable"] == 2  # 2 was loaded: labels move at once
    assert steps[-1] == after


def test_a_rollback_to_an_unloaded_version_waits_before_the_label_moves(tmp_path):
    before = build_config([ServedModel("cnn", tmp_path, {"champion": 2, "challenger": 2})])
    after = build_config([ServedModel("cnn", tmp_path, {"champion": 1, "challenger": 2})])
    load, move = rollout_steps(before, after, {"cnn": {2}})  # nothing to unload: 2 stays canary
    assert versions_of(load)["cnn"] == [1, 2] and labels_of(load)["cnn"]["stable"] == 2
    assert move == after and labels_of(move)["cnn"]["stable"] == 1
    assert rollout_steps(after, after, {"cnn": {1, 2}}) == []


def test_a_labelled_config_starts_servers_that_accept_its_labels(tmp_path):
    from serving import launch

    labelled = build_config([ServedModel("cnn", tmp_path, {"champion": 1})])
    plain = build_config([ServedModel("cnn", tmp_path)])
    flag = "--allow_version_labels_for_unavailable_models=true"
    for binary in ("/usr/bin/tensorflow_model_server", None):
        command = launch.plan(launch.parse_args([]), labelled, tmp_path / "m.config",
                              binary=binary, docker=False, gpu=False).command
        assert command.count(flag) == 1
        command = launch.plan(launch.parse_args([]), plain, tmp_path / "m.config",
                              binary=binary, docker=False, gpu=False).command
        assert flag not in command
    given = launch.parse_args(["--", "--allow_version_labels_for_unavailable_models=false"])
    command = launch.plan(given, labelled, tmp_path / "m.config", binary=None, docker=False,
                          gpu=False).command
    assert flag not in command  # the user's own choice stands
