# Owns the commands on the registry and what it serves: promote, rollback, serving-config, status,
# fetch-models, and the MLflow server and UI links.
"""The registry's commands: move aliases, write models.config, compare with the server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import fail, quiet_tensorflow, reported_failures
from pipeline.cli.options import ConfigOption, ModelOption, SetOption, load


def promote(
    config: ConfigOption = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: name).")] = None,
    margin: Annotated[float | None, typer.Option(help="tune.promotion_margin")] = None,
    set_: SetOption = None,
) -> None:
    """Move the `champion` alias to the `challenger` if it beats it on the test split."""
    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {"tune.promotion_margin": margin}, set_)
        from pipeline.stages import promote as promote_stage

        promote_stage.run(run_config, model_name=model, log=lambda line: typer.echo(line))


def rollback(config: ConfigOption = None, model: ModelOption = None, set_: SetOption = None) -> None:
    """Give `champion` back to the previous champion; a running `make serve` follows live."""
    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {}, set_)
        from pipeline.stages import promote as promote_stage

        promote_stage.rollback(run_config, model_name=model, log=lambda line: typer.echo(line))


def serving_config(
    config: ConfigOption = None,
    output: Annotated[Path | None, typer.Option(
        help="Where to write it (default: <export.base_dir>/models.config).")] = None,
    base_path_root: Annotated[str | None, typer.Option(
        help="Write base paths as <this>/<name>, where a container mounts the exports "
             "(deploy/: /models), instead of the local folders.")] = None,
    set_: SetOption = None,
) -> None:
    """Write TF Serving's models.config from the registry (aliases -> version labels); print its path."""
    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {}, set_)
        from pipeline.stages import registry

        path = registry.write_serving_config(run_config, output,
                                             log=lambda line: typer.echo(line, err=True),
                                             base_path_root=base_path_root)
    typer.echo(str(path))


def status(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Show each model's registry versions and aliases beside what the running server serves."""
    quiet_tensorflow()
    with reported_failures():
        run_config = load(config, {}, set_)
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


def fetch_models(
    config: ConfigOption = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Registered model to fetch (repeatable; default: every one).")] = None,
    dest: Annotated[Path | None, typer.Option(
        help="Folder of <name>/<version>/ (default export.base_dir, saved_models/).")] = None,
    set_: SetOption = None,
) -> None:
    """Download the registry's aliased versions (champion, challenger) into saved_models/."""
    with reported_failures():
        run_config = load(config, {}, set_)
        from pipeline.stages import fetch

        fetch.run(run_config, model_names=model, destination=dest, log=lambda line: typer.echo(line))


def mlflow_links(
    config: ConfigOption = None,
    ui_url: Annotated[str, typer.Option(help="Where the MLflow UI is served.")] = "http://127.0.0.1:5000",
    set_: SetOption = None,
) -> None:
    """Print the MLflow UI addresses of CONFIG's experiment and its latest run (make mlflow-ui)."""
    quiet_tensorflow()
    # A tracking server that does not answer: say so in seconds, not after MLflow's retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with reported_failures():
        run_config = load(config, {}, set_)
    from pipeline.tracking import ui_links

    for line in ui_links(run_config.tracking.tracking_uri, run_config.tracking.experiment, ui_url):
        typer.echo(line)


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
        fail(error, 1)
    raise typer.Exit(code)
