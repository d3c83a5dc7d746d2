# Owns what every command shares on its command line: the options, and loading the config from them.
"""The options the commands share, and loading one validated config from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML run config [default: configs/fashion_cnn.yaml, as for make].")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any field: --set model.filters=64 (repeatable).")]

ModelOption = Annotated[str | None, typer.Option(
    "--model", help="Registered model name (default: the config's name).")]


def load(config: Path | None, overrides: dict[str, Any], assignments: list[str] | None):
    """Return the RunConfig of `config` (YAML), the flags in `overrides`, then `--set` items."""
    from pipeline.config import default_config_path, load_config, parse_override

    merged = dict(overrides)
    # Where each value came from, so that an error names the flag rather than the file.
    origins = {key: f"command line ({key}={value})" for key, value in overrides.items()
               if value is not None}
    for item in assignments or []:
        key, value = parse_override(item)
        merged[key] = value
        origins[key] = f"--set {item}"
    return load_config(config or default_config_path(), merged, origins=origins)
