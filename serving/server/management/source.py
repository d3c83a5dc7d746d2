"""Which version folders of a model exist, are complete, and are aspired by its policy.

Mirrors FileSystemStoragePathSource: children of the base path whose names are integers
are versions; the policy picks the latest N, all, or specific ones. One addition: a
folder is only offered once it holds saved_model.pb(txt) and its files stopped changing
between two polls, so a copy in progress is never loaded half-written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from tensorflow_serving.config import file_system_storage_path_source_pb2

from serving.common import list_versions

log = logging.getLogger("serving.server")

ServableVersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def fingerprint(path: str) -> tuple | None:
    """Return a summary of every file's (name, size, mtime) under `path`, or None if unreadable."""
    summary = []
    try:
        for root, _, files in os.walk(path):
            for name in files:
                stat = os.stat(os.path.join(root, name))
                summary.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(summary))


def has_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(
        os.path.join(path, "saved_model.pbtxt")
    )


def aspired(policy, available: dict[int, str]) -> dict[int, str]:
    """Return the versions the policy wants from `available` (a ModelVersionPolicy)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return dict(available)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        return {version: path for version, path in available.items() if version in wanted}
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    newest = sorted(available, reverse=True)[:count]
    return {version: available[version] for version in newest}


@dataclass
class VersionWatcher:
    """Tracks the folders of one model across polls and reports the complete ones."""

    name: str
    base_path: str
    fingerprints: dict[int, tuple] = field(default_factory=dict)
    settled: dict[int, str] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    def poll(self, known: set[int]) -> dict[int, str] | None:
        """Return {version: path} of complete folders, or None if the base path is missing.

        `known` versions (loaded or failed before) count as complete without re-checking.
        """
        try:
            present = list_versions(self.base_path)
        except OSError as error:
            self._warn_once(
                "base", f"Could not find base path {self.base_path} for servable {self.name} "
                f"with error {error.strerror}",
            )
            return None
        if not present:
            self._warn_once(
                "empty", f"No versions of servable {self.name} found under base path "
                f"{self.base_path}. Did you forget to name your leaf directory as a number "
                "(eg. '/1/')?",
            )
        complete = {}
        for version, path in present.items():
            if version in known or self._is_settled(version, path):
                complete[version] = path
        self.fingerprints = {v: p for v, p in self.fingerprints.items() if v in present}
        return complete

    def _is_settled(self, version: int, path: str) -> bool:
        if not has_saved_model(path):
            self._warn_once(f"pb{version}", f"Waiting for saved_model.pb in {path}")
            return False
        current = fingerprint(path)
        previous = self.fingerprints.get(version)
        self.fingerprints[version] = current
        return current is not None and current == previous

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
