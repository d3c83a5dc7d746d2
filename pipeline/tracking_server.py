"""`make mlflow-server`: a shared MLflow tracking server on PostgreSQL, its data in one folder.

    <data>/postgres/      the PostgreSQL cluster (Debian's `postgresql` package), made by
                          initdb on first use, with the database `mlflow` in it
    <data>/postgres.log   PostgreSQL's log
    <data>/artifacts/     the artifact store the server serves, unless the caller names
                          another (`--artifacts-destination s3://bucket/path`, `gs://...`)

PostgreSQL listens on a Unix socket inside its own folder and on no TCP port: nothing to
collide with, nothing exposed; only the MLflow server (HTTP) is reachable from other
machines, and clients need nothing but MLFLOW_TRACKING_URI=http://<host>:<port>. This module
runs the `mlflow server` command; it does not import mlflow (pipeline/tracking/ does).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from serving.common import answer_interrupts

DATABASE = "mlflow"
ROLE = "mlflow"
POSTGRES_USER = "postgres"  # PostgreSQL refuses to run as root; Debian's package makes this user


class ServerError(RuntimeError):
    """The tracking server or its database could not be started; the message says why."""


def postgres_program(name: str) -> str:
    """Return the path of a PostgreSQL program (initdb, pg_ctl, psql): Debian keeps them
    under /usr/lib/postgresql/<version>/bin, off PATH."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[4]) if Path(path).parts[4].isdigit() else 0,
        reverse=True)), None)
    if found is None:
        raise ServerError(f"PostgreSQL's {name} not found: install Debian's postgresql package "
                          "(sudo apt-get install postgresql)")
    return found


def _as_owner(command: list[str]) -> list[str]:
    """Run PostgreSQL's programs as the cluster's owner: `postgres` when we are root."""
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], cluster: Path) -> str:
    result = subprocess.run(_as_owner(command), capture_output=True, text=True, cwd=cluster)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ServerError(f"{Path(command[0]).name} failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


@dataclass(frozen=True)
class Database:
    """A running PostgreSQL cluster under `cluster`, reachable on its Unix socket."""

    cluster: Path

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow's --backend-store-uri takes (psycopg2, Unix socket)."""
        return f"postgresql+psycopg2://{ROLE}@/{DATABASE}?host={self.cluster}"

    def stop(self) -> None:
        _run([postgres_program("pg_ctl"), "-D", str(self.cluster), "-m", "fast", "-w", "stop"],
             self.cluster)


def start_database(data_dir: Path) -> Database:
    """Start (making it first if needed) the cluster under `data_dir`/postgres; return it.

    The cluster trusts local connections only (its socket's folder is readable by its owner
    alone); the `mlflow` database is created on first use. A cluster already running there
    is reused.
    """
    cluster = (data_dir / "postgres").resolve()
    if not (cluster / "PG_VERSION").exists():
        cluster.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(cluster, POSTGRES_USER, POSTGRES_USER)
        _run([postgres_program("initdb"), "-D", str(cluster), "-U", ROLE, "-A", "trust",
              "-E", "UTF8", "--locale=C.UTF-8"], cluster)
    pg_ctl = postgres_program("pg_ctl")
    status = subprocess.run(_as_owner([pg_ctl, "-D", str(cluster), "status"]),
                            capture_output=True, cwd=cluster)
    if status.returncode != 0:  # 3: not running
        log = cluster.parent / "postgres.log"
        log.touch()
        if os.geteuid() == 0:
            shutil.chown(log, POSTGRES_USER, POSTGRES_USER)
        _run([pg_ctl, "-D", str(cluster), "-l", str(log), "-w", "-t", "60", "-o",
              f"-c listen_addresses='' -k {cluster}", "start"], cluster)
    psql = [postgres_program("psql"), "-h", str(cluster), "-U", ROLE, "-d", "postgres", "-tAc"]
    if not _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"], cluster).strip():
        _run([*psql, f"CREATE DATABASE {DATABASE}"], cluster)
    return Database(cluster)


def server_command(database: Database, *, host: str, port: int, artifacts_destination: str,
                   workers: int, allowed_hosts: str | None = None) -> list[str]:
    """Return the `mlflow server` command line (this Python's mlflow)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", database.uri,
               "--artifacts-destination", artifacts_destination, "--serve-artifacts",
               "--host", host, "--port", str(port), "--workers", str(workers)]
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def tracking_uri(host: str, port: int) -> str:
    """Return the URI clients export: this machine's name when listening on every interface."""
    return f"http://{socket.getfqdn() if host in ('0.0.0.0', '::') else host}:{port}"


def wait_until_up(uri: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Return once GET <uri>/health answers; ServerError if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"mlflow server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ServerError(f"mlflow server did not answer on {uri}/health within {timeout:.0f} s")


def serve(data_dir: Path, *, host: str = "127.0.0.1", port: int = 5000,
          artifacts_destination: str | None = None, workers: int = 2,
          allowed_hosts: str | None = None, log=print) -> int:
    """Run the server in the foreground until Ctrl-C/SIGTERM; stop PostgreSQL after it.

    Returns the server's exit status (0 after Ctrl-C or SIGTERM).
    """
    answer_interrupts()
    data_dir.mkdir(parents=True, exist_ok=True)
    destination = artifacts_destination or str((data_dir / "artifacts").resolve())
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    database = start_database(data_dir)
    uri = tracking_uri(host, port)
    process = subprocess.Popen(server_command(
        database, host=host, port=port, artifacts_destination=destination, workers=workers,
        allowed_hosts=allowed_hosts))
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGINT))
    try:
        wait_until_up(uri, process)
        log(f"MLflow tracking server on PostgreSQL ({database.cluster}), artifacts in {destination}")
        log(f"export MLFLOW_TRACKING_URI={uri}")
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        code = process.wait()
    except ServerError:
        process.terminate()
        process.wait()
        database.stop()
        raise
    database.stop()
    return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM, 130) else code
