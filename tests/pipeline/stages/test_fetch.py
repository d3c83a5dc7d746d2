"""fetch-models: the registry's served versions (aliased, else the latest) land in saved_models/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, RunConfig
from pipeline.stages import fetch
from pipeline.tracking import Tracker


def _register(tracker: Tracker, name: str, marker: str, folder: Path) -> int:
    """Register a folder holding a (stand-in) saved_model.pb as a new version of `name`."""
    export = folder / marker
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_text(marker)
    with tracker.run(f"{name} {marker}") as run:
        run.log_artifact(export, "saved_model")
        return tracker.register(name, run, "saved_model")


@pytest.fixture
def store(tmp_path: Path) -> tuple[RunConfig, Tracker]:
    config = RunConfig.model_validate({
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "fetch"},
        "export": {"base_dir": str(tmp_path / "saved_models")}})
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    for marker in ("first", "second", "third"):
        _register(tracker, "digits", marker, tmp_path / "exports")
    return config, tracker


def test_without_aliases_the_latest_version_is_fetched(store):
    config, _ = store
    lines: list[str] = []
    folders = fetch.run(config, log=lines.append)
    assert folders == [config.export.base_dir / "digits" / "3"]
    assert (folders[0] / "saved_model.pb").read_text() == "third"
    assert lines == [f"digits version 3: downloaded to {folders[0]}"]


def test_aliased_versions_are_fetched_with_their_aliases_and_kept_on_a_rerun(store):
    config, tracker = store
    tracker.set_alias("digits", "champion", 1)
    tracker.set_alias("digits", "challenger", 2)
    tracker.set_alias("digits", "canary", 2)
    lines: list[str] = []
    folders = fetch.run(config, model_names=["digits"], log=lines.append)
    base = config.export.base_dir / "digits"
    assert folders == [base / "1", base / "2"]
    assert [(folder / "saved_model.pb").read_text() for folder in folders] == ["first", "second"]
    assert lines[1] == f"digits version 2 (canary, challenger): downloaded to {base / '2'}"
    assert not (base / "3").exists()
    again: list[str] = []
    fetch.run(config, log=again.append)
    assert again == [f"digits version 1 (champion): already in {base / '1'}",
                     f"digits version 2 (canary, challenger): already in {base / '2'}"]


def test_an_unknown_model_is_one_clear_error(store):
    config, tracker = store
    with pytest.raises(ConfigError, match="model 'letters' has no registered version"):
        fetch.run(config, model_names=["letters"], log=lambda line: None)
