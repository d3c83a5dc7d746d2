# Owns the typer app: which commands it has, under which names, in the order `--help` lists them.
"""`python -m pipeline <command>`: the command line behind the Makefile's targets.

Every command loads one validated config (YAML file, then flags, then `--set` overrides)
and calls one stage's `run`. Expected failures (bad config, unreadable data, a refused
export) print one line naming the field or file and exit non-zero, without a traceback
(errors.py). The commands live by what they do: training.py, registry.py, inputs.py.
"""

from __future__ import annotations

import typer

from pipeline.cli import inputs, registry, training

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, tune and inspect Keras models tracked in MLflow.")

app.command()(training.train)
app.command()(training.tune)
app.command()(registry.promote)
app.command()(registry.rollback)
app.command("serving-config")(registry.serving_config)
app.command()(registry.status)
app.command()(inputs.data)
app.command()(inputs.packages)
app.command()(training.lab)
app.command("config")(inputs.show_config)
app.command("mlflow-links")(registry.mlflow_links)
app.command("fetch-models")(registry.fetch_models)
app.command("mlflow-server")(registry.mlflow_server)


def main() -> None:
    app(prog_name="python -m pipeline")
