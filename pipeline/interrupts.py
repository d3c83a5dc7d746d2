"""Ctrl-C and SIGTERM as `KeyboardInterrupt`, never in the middle of a tracking write.

Python raises `KeyboardInterrupt` wherever the main thread happens to be. Inside an MLflow
write that leaves the SQLite transaction open (its session handler catches `Exception`,
not `BaseException`), the database stays locked, and marking the run KILLED then fails with
"database is locked". `install()` routes both signals through one handler that raises at
once, except inside `shielded()`, where the interrupt waits until the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_depth = 0  # shielded blocks the main thread is inside
_pending = False  # an interrupt arrived inside one and waits for the outermost to end


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGINT and SIGTERM raise `KeyboardInterrupt`, deferred inside `shielded()`."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold an interrupt that arrives in this block until the block has finished.

    Only the main thread (where Python runs signal handlers) is shielded; other threads
    pass through unchanged. A held interrupt is raised when the outermost block ends,
    unless an exception is already leaving it (then the next block's end raises it).
    """
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if not _depth and _pending:
        _pending = False
        raise KeyboardInterrupt


class ShieldedCalls:
    """Wrap an object so that every method call on it runs inside `shielded()`."""

    def __init__(self, target: Any):
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with shielded():
                return attribute(*args, **kwargs)

        call.__name__ = name
        return call

