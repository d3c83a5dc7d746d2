"""The batches of one (servable, signature, input shapes) key, and the calls they carry.

A queue holds batches formed as calls arrive; the last one is open. A call larger than an
execution batch may be cut into pieces (enable_large_batch_splitting) that run in different
batches; its caller waits until every piece has run.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from serving.server.core.servable import Servable


class Call:
    """One caller's request; with splitting, its pieces may run in different batches.

    The caller waits on a bare lock that the last piece releases: the cheapest wake-up
    CPython has (a concurrent.futures.Future costs several lock operations more per call,
    which showed at hundreds of calls a second on two cores).
    """

    __slots__ = ("_done", "_waited", "_outcome", "_error", "pieces", "parts", "lock")

    def __init__(self, pieces: int):
        self._done = threading.Lock()
        self._done.acquire()
        self._waited = False
        self._outcome: dict[str, np.ndarray] | None = None
        self._error: BaseException | None = None
        self.pieces = pieces
        self.parts: dict[int, dict[str, np.ndarray]] = {}
        self.lock = threading.Lock()

    def wait(self, seconds: float) -> bool:
        """Return whether the call finished within `seconds`."""
        self._waited = self._done.acquire(timeout=seconds)
        return self._waited

    def result(self) -> dict[str, np.ndarray]:
        """Block until every piece has run; return the joined outputs or raise the error."""
        if not self._waited:
            self._done.acquire()
        if self._error is not None:
            raise self._error
        return self._outcome

    def _resolve(self, outputs=None, error=None) -> None:
        self._outcome, self._error = outputs, error
        self._done.release()

    def finish_piece(self, index: int, outputs=None, error=None) -> None:
        """Record one piece's outputs (or error); the last piece (or the first error) resolves."""
        if self.pieces == 1:
            self._resolve(outputs, error)
            return
        with self.lock:  # pieces finish on different batch threads
            if self.parts is None:
                return
            if error is not None:
                self.parts = None
                self._resolve(error=error)
                return
            self.parts[index] = outputs
            if len(self.parts) == self.pieces:
                ordered = [self.parts[key] for key in range(self.pieces)]
                self.parts = None
                self._resolve({name: np.concatenate([part[name] for part in ordered]) for name in ordered[0]})


class Task:
    """One piece of a call, waiting in a batch."""

    __slots__ = ("inputs", "size", "call", "index", "enqueued")

    def __init__(self, inputs, size, call, index):
        self.inputs, self.size, self.call, self.index = inputs, size, call, index
        self.enqueued = time.monotonic()


class BatchQueue:
    """Batches of one (servable, signature, shapes) key; the last batch is open."""

    def __init__(self, servable: Servable, signature_name: str):
        self.servable, self.signature_name = servable, signature_name
        self.batches: deque[list[Task]] = deque([[]])
        self.tail_rows = 0  # rows in the open (last) batch
        self.running = 0
        self.closed = False  # its servable is retiring: run what is queued without waiting
        self.timed: list[Task] | None = None  # oldest batch, whose first caller times it

    def tail_size(self) -> int:
        return self.tail_rows

    def add(self, task: Task, limit: int) -> None:
        """Append `task` to the open batch, first opening a new one if it would not fit."""
        if self.batches[-1] and self.tail_rows + task.size > limit:
            self.batches.append([])
            self.tail_rows = 0
        self.batches[-1].append(task)
        self.tail_rows += task.size

    def pop(self) -> list[Task]:
        """Remove and return the oldest batch (closing it if it was the open one)."""
        tasks = self.batches.popleft()
        if tasks is self.timed:
            self.timed = None
        if not self.batches:
            self.batches.append([])
            self.tail_rows = 0
        return tasks

    def due(self, limit: int) -> bool:
        """Return whether the oldest batch may run without waiting for its timeout."""
        return self.closed or len(self.batches) > 1 or self.tail_rows >= limit

    def empty(self) -> bool:
        return self.running == 0 and len(self.batches) == 1 and not self.batches[0]
