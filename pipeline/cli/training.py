# Owns the commands that train: train, tune and the lab.
"""`train`, `tune` and `lab`: the commands that fit models and log them to MLflow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.errors import fail, quiet_tensorflow, reported_failures, terminate_as_interrupt
from pipeline.cli.options import ConfigOption, SetOption, load


def train(
    config: ConfigOption = None,
    epochs: Annotated[int | None, typer.Option(help="train.epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="data.batch_size")] = None,
    name: Annotated[str | None, typer.Option(help="Model name: saved_models/<name>/.")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else mlruns/).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue an interrupted run of the same config.")] = True,
    workers: Annotated[int | None, typer.Option(help=(
        "Train on N worker processes on loopback (MultiWorkerMirroredStrategy); on a cluster, "
        "set TF_CONFIG on each node and run the same command there instead."))] = None,
    set_: SetOption = None,
) -> None:
    """Train one model, evaluate it on the test split, export and register a SavedModel."""
    quiet_tensorflow()
    terminate_as_interrupt()
    with reported_failures(interrupted="interrupted: the MLflow run is marked KILLED; run the "
                            "same command to resume from the last completed epoch"):
        run_config = load(config, {
            "train.epochs": epochs, "data.batch_size": batch_size, "name": name,
            "tracking.experiment": experiment, "tracking.tracking_uri": tracking_uri,
            "train.resume": None if resume else False}, set_)
        from pipeline.stages import train as train_stage

        if workers is not None and workers > 1 and "TF_CONFIG" not in os.environ:
            raise typer.Exit(train_stage.run_workers(run_config, workers,
                                                     log=lambda line: typer.echo(line)))
        result = train_stage.run(run_config, log=lambda line: typer.echo(line))
    _print_result(train_stage.describe(result))


def _print_result(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title="training run")
    for key, value in summary.items():
        if key.endswith("_seconds"):  # where the command's time went
            table.add_row(key, f"{value:.1f} s")
        else:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def tune(
    config: ConfigOption = None,
    tuner: Annotated[str | None, typer.Option(help="tune.tuner: random, bayesian, hyperband")] = None,
    max_trials: Annotated[int | None, typer.Option(help="tune.max_trials")] = None,
    epochs: Annotated[int | None, typer.Option(help="tune.epochs (per trial)")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(
        help="tune.retrain_epochs: the best model's retraining (default: train.epochs)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="data.batch_size")] = None,
    name: Annotated[str | None, typer.Option(help="Model name: tuning/<name>/, saved_models/<name>/.")] = None,
    objective: Annotated[str | None, typer.Option(help="tune.objective")] = None,
    executions: Annotated[int | None, typer.Option(help="tune.executions_per_trial")] = None,
    workers: Annotated[int | None, typer.Option(help="tune.workers: >1 runs chief + workers")] = None,
    overwrite: Annotated[bool, typer.Option(help="Start a fresh search.")] = False,
    set_: SetOption = None,
) -> None:
    """Search hyperparameters with KerasTuner (each trial an MLflow run); register the best."""
    quiet_tensorflow()
    terminate_as_interrupt()
    with reported_failures(interrupted="interrupted: run the same command to resume the search"):
        run_config = load(config, {
            "tune.tuner": tuner, "tune.max_trials": max_trials, "tune.epochs": epochs,
            "tune.retrain_epochs": retrain_epochs, "data.batch_size": batch_size, "name": name,
            "tune.objective": objective, "tune.executions_per_trial": executions,
            "tune.workers": workers, "tune.overwrite": True if overwrite else None}, set_)
        from pipeline.stages import tune as tune_stage

        tune_stage.run(run_config, log=lambda line: typer.echo(line))


def lab(
    only: Annotated[list[str] | None, typer.Option(
        help="Run only these experiments: adding, activations, representations.")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        help="Folder for the PNGs and summary.md (default lab_results/).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else mlruns/).")] = None,
    quick: Annotated[bool, typer.Option(help="Tiny settings: a smoke run of ~2 minutes.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any lab setting: --set adding_steps=3000 (pipeline/lab/config.py).")] = None,
) -> None:
    """Run the lab: adding problem, vanishing gradients, activations, representations."""
    quiet_tensorflow()
    terminate_as_interrupt()
    from pydantic import ValidationError

    from pipeline.config import ConfigError, describe_validation_error, parse_override
    from pipeline.lab.config import LabConfig

    settings = {key: value for key, value in {
        "experiments": tuple(only) if only else None, "output_dir": output_dir,
        "tracking_uri": tracking_uri}.items() if value is not None}
    try:
        settings.update(parse_override(item) for item in set_ or [])
    except ConfigError as error:
        fail(error, 2)
    try:
        lab_config = LabConfig.quick(**settings) if quick else LabConfig(**settings)
    except ValidationError as error:
        fail(describe_validation_error(error, known=list(LabConfig.model_fields)), 2)
    with reported_failures(interrupted="interrupted: the lab's MLflow runs are marked KILLED"):
        from pipeline.lab.run import run as run_lab

        result = run_lab(lab_config, log=lambda line: typer.echo(line))
    typer.echo(result.summary)
    typer.echo(f"figures and summary.md in {result.output_dir}/; MLflow parent run "
               f"{result.run_id} in {result.tracking_uri}")
