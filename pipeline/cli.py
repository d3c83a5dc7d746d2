"""`python -m pipeline <command>`: the command line behind the Makefile's targets.

Every command loads one validated config (YAML file, then flags, then `--set` overrides)
and calls one stage's `run`. Expected failures (bad config, unreadable data, a refused
export) print one line naming the field or file and exit non-zero, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, tune and inspect Keras models tracked in MLflow.")

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML run config [default: configs/fashion_cnn.yaml, as for make].")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any field: --set model.filters=64 (repeatable).")]


def _quiet_tensorflow() -> None:
    # Before TensorFlow is imported: keep its C++ INFO/WARNING lines out of the user's way.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _load(config: Path | None, overrides: dict[str, Any], assignments: list[str] | None):
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


@contextmanager
def _reported_failures(interrupted: str | None = None) -> Iterator[None]:
    """Turn an expected failure into one `error:` line and an exit status, without a traceback.

    A bad config exits 2, unreadable data or a refused export 1, data whose Debian packages
    are missing 3 (`packages` names them). With `interrupted`, Ctrl-C
    or SIGTERM prints it and exits 130 (the run is marked KILLED and can be resumed).
    """
    from pipeline.config import ConfigError
    from pipeline.sources import DataError, MissingPackages
    from pipeline.stages.promote import PromotionError
    from serving.export import ExportError
    from serving.release.rollout import RolloutError

    try:
        yield
    except MissingPackages as error:
        # 3 tells the Makefile that installing Debian packages would help (`packages`).
        _fail(error, 3)
    except (ConfigError, DataError, ExportError, PromotionError, RolloutError) as error:
        _fail(error, 2 if isinstance(error, ConfigError) else 1)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        typer.echo(interrupted, err=True)
        raise typer.Exit(130) from None


def _fail(error: BaseException, code: int) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code)


def _terminate_as_interrupt() -> None:
    # SIGTERM (kill, a CI timeout, a scheduler) ends the run like Ctrl-C: marked KILLED in
    # MLflow with its last epoch backed up, so the same command resumes it. Neither lands
    # inside an MLflow write (pipeline.interrupts).
    from pipeline import interrupts

    interrupts.install()


@app.command()
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
    _quiet_tensorflow()
    _terminate_as_interrupt()
    with _reported_failures(interrupted="interrupted: the MLflow run is marked KILLED; run the "
                            "same command to resume from the last completed epoch"):
        run_config = _load(config, {
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
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


@app.command()
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
    _quiet_tensorflow()
    _terminate_as_interrupt()
    with _reported_failures(interrupted="interrupted: run the same command to resume the search"):
        run_config = _load(config, {
            "tune.tuner": tuner, "tune.max_trials": max_trials, "tune.epochs": epochs,
            "tune.retrain_epochs": retrain_epochs, "data.batch_size": batch_size, "name": name,
            "tune.objective": objective, "tune.executions_per_trial": executions,
            "tune.workers": workers, "tune.overwrite": True if overwrite else None}, set_)
        from pipeline.stages import tune as tune_stage

        tune_stage.run(run_config, log=lambda line: typer.echo(line))


@app.command()
def promote(
    config: ConfigOption = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: name).")] = None,
    margin: Annotated[float | None, typer.Option(help="tune.promotion_margin")] = None,
    set_: SetOption = None,
) -> None:
    """Move the `champion` alias to the `challenger` if it beats it on the test split."""
    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {"tune.promotion_margin": margin}, set_)
        from pipeline.stages import promote as promote_stage

        promote_stage.run(run_config, model_name=model, log=lambda line: typer.echo(line))


ModelOption = Annotated[str | None, typer.Option(
    "--model", help="Registered model name (default: the config's name).")]


@app.command()
def rollback(config: ConfigOption = None, model: ModelOption = None, set_: SetOption = None) -> None:
    """Give `champion` back to the previous champion; a running `make serve` follows live."""
    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.stages import promote as promote_stage

        promote_stage.rollback(run_config, model_name=model, log=lambda line: typer.echo(line))


@app.command("serving-config")
def serving_config(
    config: ConfigOption = None,
    output: Annotated[Path | None, typer.Option(
        help="Where to write it (default: <export.base_dir>/models.config).")] = None,
    set_: SetOption = None,
) -> None:
    """Write TF Serving's models.config from the registry (aliases -> version labels); print its path."""
    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.stages import registry

        path = registry.write_serving_config(run_config, output,
                                             log=lambda line: typer.echo(line, err=True))
    typer.echo(str(path))


@app.command()
def status(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Show each model's registry versions and aliases beside what the running server serves."""
    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.stages import registry

        results = registry.status(run_config, log=lambda line: typer.echo(line, err=True))
    _print_status(results)
    if any(result.server and not result.agree for result in results):
        raise typer.Exit(1)


def _print_status(results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for result in results:
        table = Table(title=f"{result.name}: registry vs server "
                      f"{result.server or '(none running: `make serve`)'}")
        for column in ("version", "aliases", "test_accuracy", "run id", "served"):
            table.add_column(column)
        for row in result.versions:
            accuracy = row["test_accuracy"]
            table.add_row(str(row["version"]), ", ".join(row["aliases"]),
                          "" if accuracy is None else f"{accuracy:.4f}", row["run_id"] or "",
                          row["served"])
        console.print(table)
        for label, (registry_version, served_version) in result.labels.items():
            console.print(f"  label {label}: registry -> {registry_version}, "
                          f"server -> {served_version if served_version is not None else '-'}")
        if result.server:
            console.print("  [green]server and registry agree[/green]" if result.agree
                          else "  [red]server and registry DISAGREE[/red]")


@app.command()
def data(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Locate (or download) the configured data and print its identity and split sizes."""
    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.stages import data as data_stage

        summary = data_stage.run(run_config.data, run_config.seed)
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def packages(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the Debian packages the configured data needs and lacks, space-separated."""
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.sources import missing_debian_packages

        typer.echo(" ".join(missing_debian_packages(run_config.data)))


@app.command()
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
    _quiet_tensorflow()
    _terminate_as_interrupt()
    from pydantic import ValidationError

    from pipeline.config import ConfigError, describe_validation_error, parse_override
    from pipeline.lab.config import LabConfig

    settings = {key: value for key, value in {
        "experiments": tuple(only) if only else None, "output_dir": output_dir,
        "tracking_uri": tracking_uri}.items() if value is not None}
    try:
        settings.update(parse_override(item) for item in set_ or [])
    except ConfigError as error:
        _fail(error, 2)
    try:
        lab_config = LabConfig.quick(**settings) if quick else LabConfig(**settings)
    except ValidationError as error:
        _fail(describe_validation_error(error, known=list(LabConfig.model_fields)), 2)
    with _reported_failures(interrupted="interrupted: the lab's MLflow runs are marked KILLED"):
        from pipeline.lab.run import run as run_lab

        result = run_lab(lab_config, log=lambda line: typer.echo(line))
    typer.echo(result.summary)
    typer.echo(f"figures and summary.md in {result.output_dir}/; MLflow parent run "
               f"{result.run_id} in {result.tracking_uri}")


@app.command("config")
def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the fully resolved config (every default filled in) as YAML."""
    from pipeline.config import dump_config

    _quiet_tensorflow()
    with _reported_failures():
        run_config = _load(config, {}, set_)
    typer.echo(dump_config(run_config))


@app.command("mlflow-links")
def mlflow_links(
    config: ConfigOption = None,
    ui_url: Annotated[str, typer.Option(help="Where the MLflow UI is served.")] = "http://127.0.0.1:5000",
    set_: SetOption = None,
) -> None:
    """Print the MLflow UI addresses of CONFIG's experiment and its latest run (make mlflow-ui)."""
    _quiet_tensorflow()
    # A tracking server that does not answer: say so in seconds, not after MLflow's retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with _reported_failures():
        run_config = _load(config, {}, set_)
    from pipeline.tracking import ui_links

    for line in ui_links(run_config.tracking.tracking_uri, run_config.tracking.experiment, ui_url):
        typer.echo(line)


@app.command("fetch-models")
def fetch_models(
    config: ConfigOption = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Registered model to fetch (repeatable; default: every one).")] = None,
    dest: Annotated[Path | None, typer.Option(
        help="Folder of <name>/<version>/ (default export.base_dir, saved_models/).")] = None,
    set_: SetOption = None,
) -> None:
    """Download the registry's aliased versions (champion, challenger) into saved_models/."""
    with _reported_failures():
        run_config = _load(config, {}, set_)
        from pipeline.stages import fetch

        fetch.run(run_config, model_names=model, destination=dest, log=lambda line: typer.echo(line))


@app.command("mlflow-server")
def mlflow_server(
    data_dir: Annotated[Path, typer.Option(
        help="Folder of the PostgreSQL cluster and the default artifact store.")] = Path("mlflow-server"),
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 5000,
    artifacts_destination: Annotated[str | None, typer.Option(
        help="Artifact store: a folder (default <data-dir>/artifacts), s3://bucket/path, gs://...")] = None,
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 2,
    allowed_hosts: Annotated[str | None, typer.Option(
        help="Host headers accepted besides localhost and private IPs (MLflow's --allowed-hosts).")] = None,
) -> None:
    """Run a shared MLflow tracking server on PostgreSQL; print the MLFLOW_TRACKING_URI to export."""
    from pipeline.tracking_server import ServerError, serve

    try:
        code = serve(data_dir, host=host, port=port, artifacts_destination=artifacts_destination,
                     workers=workers, allowed_hosts=allowed_hosts, log=lambda line: typer.echo(line))
    except ServerError as error:
        _fail(error, 1)
    raise typer.Exit(code)


def main() -> None:
    app(prog_name="python -m pipeline")


if __name__ == "__main__":
    sys.exit(main())
