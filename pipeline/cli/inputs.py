# Owns the commands that show what a run is given: its data, the packages it needs, its config.
"""`data`, `packages` and `config`: what a run would be given, without running it."""

from __future__ import annotations

import json

import typer

from pipeline.cli.errors import quiet_tensorflow, reported_failures
from pipeline.cli.options import ConfigOption, SetOption, load


def data(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Locate (or download) the configured data and print its identity and split sizes."""
    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {}, set_)
        from pipeline.stages import data as data_stage

        summary = data_stage.run(run_config.data, run_config.seed)
    typer.echo(json.dumps(summary, indent=2, default=str))


def packages(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the Debian packages the configured data needs and lacks, space-separated."""
    with reported_failures():
        run_config = load(config, {}, set_)
        from pipeline.sources import missing_debian_packages

        typer.echo(" ".join(missing_debian_packages(run_config.data)))


def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the fully resolved config (every default filled in) as YAML."""
    from pipeline.config import dump_config

    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {}, set_)
    typer.echo(dump_config(run_config))
