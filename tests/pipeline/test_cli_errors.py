"""The command line's first-hour errors: one line naming the flag or file, non-zero exit,
before any data is read; and one default config, the Makefile's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def pipeline(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def test_a_folder_given_as_config_is_one_line():
    done = pipeline("config", "-c", "configs")
    assert done.returncode == 2
    assert error_lines(done) == ["error: configs is a folder; --config takes a YAML file, "
                                 "e.g. configs/fashion_cnn.yaml"]


def test_a_set_typo_names_the_set_flag():
    done = pipeline("config", "--set", "model.filterz=16")
    assert done.returncode == 2
    [line] = error_lines(done)
    assert line.startswith("error: --set model.filterz=16: model.filterz: unknown field")


def test_an_unknown_tuner_fails_before_any_data_is_read(tmp_path):
    # The data folder does not exist: reading data first would fail on data.path instead.
    done = pipeline("tune", "--tuner", "grid", "--set", "data.source=image_folder",
                    "--set", f"data.path={tmp_path / 'nowhere'}", "--set", "data.image_size=[12, 12]",
                    cwd=tmp_path)
    assert done.returncode == 2
    [line] = error_lines(done)
    assert line == ("error: command line (tune.tuner=grid): tune.tuner: Input should be "
                    "'random', 'bayesian' or 'hyperband' (got 'grid')")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "tuning").exists()


def test_without_config_the_cli_uses_the_makefiles_default(tmp_path):
    done = pipeline("config", cwd=tmp_path)  # outside the checkout too
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = yaml.safe_load(done.stdout)
    shipped = yaml.safe_load((ROOT / "configs/fashion_cnn.yaml").read_text())
    assert resolved["train"]["epochs"] == shipped["train"]["epochs"]
    assert resolved["tracking"]["experiment"] == shipped["tracking"]["experiment"]
    assert resolved["model"]["dense_dropout"] == shipped["model"]["dense_dropout"]
