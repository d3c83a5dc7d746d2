"""The record `make serve` keeps of the server it started (<models dir>/.server.json), so
`make promote`, `make rollback` and `make status` can find it. Light: no gRPC, no TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = ".server.json"


@dataclass(frozen=True)
class ServerRecord:
    """What `make serve` started: where to reach it and which config file it reads."""

    pid: int
    host: str
    grpc_port: int
    rest_port: int
    config_path: str
    from_registry: bool  # False: the user's own MODEL_CONFIG, which promotion leaves alone
    kind: str = "compatible"

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{host}:{self.grpc_port}"


def write_record(models_dir: Path, record: ServerRecord) -> Path:
    path = Path(models_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record)))
    return path


def remove_record(models_dir: Path, pid: int) -> None:
    """Remove the record if it is still the one of process `pid`."""
    record = read_record(models_dir, check_alive=False)
    if record is not None and record.pid == pid:
        (Path(models_dir) / STATE_FILE).unlink(missing_ok=True)


def read_record(models_dir: Path, check_alive: bool = True) -> ServerRecord | None:
    """Return the running server recorded under `models_dir`, None if none (or it died)."""
    try:
        record = ServerRecord(**json.loads((Path(models_dir) / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if check_alive:
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return record
