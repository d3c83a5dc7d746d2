"""Small helpers that several parts of serving/ (and the tests) need, written once.

- `list_versions`: a model's version folders, the integer-named children of its base
  path, found as TF Serving finds them (the server's source, launch, export and bench);
- `free_port`: a free TCP port on the loopback interface (bench, tests).
"""

from __future__ import annotations

import os
import socket


def list_versions(base_path: str | os.PathLike) -> dict[int, str]:
    """Return {version: folder path} for the integer-named folders under `base_path`.

    Raises FileNotFoundError (an OSError) when `base_path` is missing. As in TF Serving,
    '007' and '7' are the same version; the one listed later wins.
    """
    versions: dict[int, str] = {}
    with os.scandir(base_path) as entries:
        for entry in entries:
            if entry.name.isdigit() and entry.is_dir():
                versions[int(entry.name)] = entry.path
    return versions


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` now (another process may take it later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
