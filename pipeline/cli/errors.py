# Owns how a command ends: an expected failure as one line and an exit code; Ctrl-C, SIGTERM.
"""Expected failures print one `error:` line and exit non-zero, without a traceback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer


def quiet_tensorflow() -> None:
    # Before TensorFlow is imported: keep its C++ INFO/WARNING lines out of the user's way.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextmanager
def reported_failures(interrupted: str | None = None) -> Iterator[None]:
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
        fail(error, 3)
    except (ConfigError, DataError, ExportError, PromotionError, RolloutError) as error:
        fail(error, 2 if isinstance(error, ConfigError) else 1)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        typer.echo(interrupted, err=True)
        raise typer.Exit(130) from None


def fail(error: BaseException, code: int) -> NoReturn:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(code)


def terminate_as_interrupt() -> None:
    # SIGTERM (kill, a CI timeout, a scheduler) ends the run like Ctrl-C: marked KILLED in
    # MLflow with its last epoch backed up, so the same command resumes it. Neither lands
    # inside an MLflow write (pipeline.interrupts).
    from pipeline import interrupts

    interrupts.install()
