"""Config: one validated object; every wrong field fails at load time, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, parse_override

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(config):
    assert load_config(config).name


def test_overrides_win_over_the_file_and_none_keeps_it(tmp_path):
    path = write(tmp_path, "train: {epochs: 7}\ndata: {batch_size: 32}\n")
    config = load_config(path, {"train.epochs": 3, "data.batch_size": None})
    assert (config.train.epochs, config.data.batch_size) == (3, 32)


def test_model_section_is_checked_against_the_family_build_signature(tmp_path):
    config = load_config(write(tmp_path, "model: {family: rnn, cell: lstm, units: 16}\n"))
    assert config.model.params["cell"] == "lstm" and config.model.params["units"] == 16
    assert config.model.params["bidirectional"] is True  # resolved default, logged to MLflow


@pytest.mark.parametrize("text, message", [
    ("model: {activation: relux}", "model.activation: Input should be 'relu'"),
    ("model: {family: transformer}", "unknown model family 'transformer' in model.family"),
    ("model: {filtres: 3}", "model.filtres: unknown field; known fields: conv_blocks"),
    ("model: {family: rnn, cell: lstn}", "model.cell: Input should be 'simple_rnn'"),
    ("trian: {epochs: 3}", "trian: unknown field; known fields: name, seed"),
    ("train: {epochs: 0}", "train.epochs: Input should be greater than or equal to 1 (got 0)"),
    ("data: {source: image_folder}", "data.path is required when data.source is image_folder"),
    ("data: {source: parquet}", "data.source: Input should be"),
    ("name: ../escape", "name: String should match pattern"),
    ("[1, 2]", "expected a mapping of sections"),
    ("train: {epochs: [}", "not valid YAML"),
])
def test_bad_config_is_one_line_naming_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        load_config(Path("nowhere.yaml"))


def test_set_parses_yaml_values():
    assert parse_override("model.filters=64") == ("model.filters", 64)
    assert parse_override("data.image_size=[32, 32]") == ("data.image_size", [32, 32])
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_override("model.filters")


def test_fingerprint_ignores_epochs_but_not_the_model():
    base = load_config(None)
    assert load_config(None, {"train.epochs": 99}).fingerprint() == base.fingerprint()
    assert load_config(None, {"model.filters": 64}).fingerprint() != base.fingerprint()


def test_flat_params_cover_every_resolved_field():
    flat = load_config(None).flat()
    assert flat["model.family"] == "cnn" and flat["model.filters"] == "32"
    assert flat["train.epochs"] == "15" and flat["export.warmup_batch_sizes"] == "[1, 8, 32]"


def test_a_folder_as_config_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == (f"{tmp_path} is a folder; --config takes a YAML file, "
                                 "e.g. configs/fashion_cnn.yaml")


@pytest.mark.parametrize("assignment, field", [
    ("model.filterz=16", "model.filterz: unknown field"),
    ("modle.filters=16", "modle: unknown field"),
    ("train.epochs=zero", "train.epochs: Input should be a valid integer"),
])
def test_a_bad_set_override_is_named_not_the_file(tmp_path, assignment, field):
    path = write(tmp_path, "train: {epochs: 3}\n")
    key, value = parse_override(assignment)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {key: value}, origins={key: f"--set {assignment}"})
    assert str(caught.value).startswith(f"--set {assignment}: {field}")
    assert str(path) not in str(caught.value)


def test_an_error_in_the_file_still_names_the_file(tmp_path):
    path = write(tmp_path, "train: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=f"^{path}: train.epochz: unknown field"):
        load_config(path, {"model.filters": 8}, origins={"model.filters": "--set model.filters=8"})


def test_the_default_config_is_the_makefiles(monkeypatch, tmp_path):
    from pipeline.config import DEFAULT_CONFIG, default_config_path

    makefile = (ROOT / "Makefile").read_text()
    assert f"CONFIG ?= {DEFAULT_CONFIG}\n" in makefile
    monkeypatch.chdir(ROOT)
    assert default_config_path() == DEFAULT_CONFIG
    monkeypatch.chdir(tmp_path)  # elsewhere: the checkout's copy, not built-in defaults
    assert default_config_path() == ROOT / DEFAULT_CONFIG


def test_every_config_has_its_own_name():
    names = [load_config(path).name for path in sorted((ROOT / "configs").glob("*.yaml"))]
    assert len(names) == len(set(names)), names


def test_bare_on_and_off_mean_the_words_not_yaml_booleans(tmp_path):
    # YAML 1.1 reads `off` as false; `--set train.mixed_precision=off` must still work.
    path = write(tmp_path, "train: {jit_compile: on}\n")
    config = load_config(path, {"train.mixed_precision": parse_override("train.mixed_precision=off")[1]})
    assert (config.train.jit_compile, config.train.mixed_precision) == ("on", "off")
