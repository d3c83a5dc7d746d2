"""--enable_batching: concurrent calls of the same signature merged into one batch.

Like TF Serving's shared batch scheduler, one pool of `num_batch_threads` workers serves a
queue per (servable, signature). A worker takes the oldest ready queue: ready once it holds
`max_batch_size` rows or its oldest call has waited `batch_timeout_micros`. Calls are
concatenated along dimension 0 (only calls whose other dimensions agree share a batch),
padded up to the next `allowed_batch_sizes` entry if given, run once, and split back.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from serving.server.core import errors
from serving.server.core.servable import Servable


@dataclass(frozen=True)
class BatchingOptions:
    """BatchingParameters with TF Serving's defaults for fields a file leaves unset."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, params) -> BatchingOptions:
        """Return options from a BatchingParameters message, validated as TF Serving does."""
        defaults = cls()
        options = cls(
            max_batch_size=params.max_batch_size.value if params.HasField("max_batch_size") else defaults.max_batch_size,
            batch_timeout_micros=params.batch_timeout_micros.value if params.HasField("batch_timeout_micros") else 0,
            max_enqueued_batches=params.max_enqueued_batches.value if params.HasField("max_enqueued_batches") else defaults.max_enqueued_batches,
            num_batch_threads=params.num_batch_threads.value if params.HasField("num_batch_threads") else defaults.num_batch_threads,
            allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        )
        if options.allowed_batch_sizes and options.allowed_batch_sizes[-1] != options.max_batch_size:
            raise errors.invalid_argument(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{options.allowed_batch_sizes[-1]}; expected {options.max_batch_size}"
            )
        return options


class _Call:
    __slots__ = ("inputs", "size", "key", "future", "enqueued")

    def __init__(self, inputs, size, key):
        self.inputs, self.size, self.key = inputs, size, key
        self.future: Future = Future()
        self.enqueued = time.monotonic()


class _Queue:
    def __init__(self, servable: Servable, signature_name: str):
        self.servable, self.signature_name = servable, signature_name
        self.calls: deque[_Call] = deque()
        self.rows = 0


class BatchScheduler:
    """Runs batched signature calls for every servable on a shared pool of threads."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._condition = threading.Condition()
        self._queues: dict[tuple[int, str], _Queue] = {}
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{index}", daemon=True)
            for index in range(max(options.num_batch_threads, 1))
        ]
        for thread in self._threads:
            thread.start()

    def attach(self, servable: Servable) -> None:
        """Route `servable.run` through this scheduler."""
        servable.run = lambda signature_name, inputs: self.submit(servable, signature_name, inputs)

    def detach(self, servable: Servable) -> None:
        """Stop batching for `servable`; queued calls still run."""
        servable.run = servable.call

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    def submit(self, servable: Servable, signature_name: str, inputs) -> dict[str, np.ndarray]:
        """Return the outputs of one call, computed as part of a merged batch."""
        size = _batch_size(inputs)
        if size > self.options.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        key = tuple(sorted((name, value.shape[1:], value.dtype.str) for name, value in inputs.items()))
        call = _Call(inputs, size, key)
        with self._condition:
            queue = self._queues.setdefault((id(servable), signature_name), _Queue(servable, signature_name))
            limit = self.options.max_enqueued_batches * self.options.max_batch_size
            if queue.rows + size > limit:
                raise errors.unavailable("The batch scheduling queue to which this task was submitted is full")
            queue.calls.append(call)
            queue.rows += size
            self._condition.notify()
        return call.future.result()

    def _work(self) -> None:
        while True:
            with self._condition:
                batch = self._next_batch()
                while batch is None:
                    if self._stopped:
                        return
                    self._condition.wait(self._wait_time())
                    batch = self._next_batch()
            queue, calls = batch
            _run_batch(queue, calls, self.options.allowed_batch_sizes)

    def _ready(self, queue: _Queue, now: float) -> bool:
        if not queue.calls:
            return False
        waited = now - queue.calls[0].enqueued
        return queue.rows >= self.options.max_batch_size or waited * 1e6 >= self.options.batch_timeout_micros

    def _next_batch(self):
        now = time.monotonic()
        ready = [queue for queue in self._queues.values() if self._ready(queue, now)]
        if not ready:
            return None
        queue = min(ready, key=lambda candidate: candidate.calls[0].enqueued)
        first = queue.calls.popleft()
        calls, rows, kept = [first], first.size, deque()
        while queue.calls:
            call = queue.calls.popleft()
            if call.key == first.key and rows + call.size <= self.options.max_batch_size:
                calls.append(call)
                rows += call.size
            else:
                kept.append(call)
        queue.calls = kept
        queue.rows -= rows
        if not queue.calls:
            self._queues = {key: value for key, value in self._queues.items() if value is not queue}
        return queue, calls

    def _wait_time(self) -> float | None:
        pending = [queue.calls[0].enqueued for queue in self._queues.values() if queue.calls]
        if not pending:
            return None
        oldest = min(pending)
        return max(oldest + self.options.batch_timeout_micros / 1e6 - time.monotonic(), 0.0005)


def _batch_size(inputs) -> int:
    sizes = set()
    for value in inputs.values():
        if value.ndim == 0:
            raise errors.invalid_argument(
                "Batching Run() input tensors must have at least one dimension"
            )
        sizes.add(value.shape[0])
    if len(sizes) != 1:
        raise errors.invalid_argument(
            "Batching Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


def _run_batch(queue: _Queue, calls: list[_Call], allowed_sizes: tuple[int, ...]) -> None:
    """Run one merged batch and hand each call its slice of the outputs (or the error)."""
    try:
        total = sum(call.size for call in calls)
        padded = next((size for size in allowed_sizes if size >= total), total)
        merged = {}
        for name in calls[0].inputs:
            parts = [call.inputs[name] for call in calls]
            if padded > total:
                # Padding rows repeat the first row; their outputs are dropped below.
                parts.append(np.repeat(parts[0][:1], padded - total, axis=0))
            merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        outputs = queue.servable.call(queue.signature_name, merged)
        for value in outputs.values():
            if value.ndim == 0:
                raise errors.failed_precondition("Batched output tensor has 0 dimensions")
            if value.shape[0] != padded:
                raise errors.failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the "
                    "0th dimension sizes of the input tensors"
                )
    except Exception as failure:
        error = errors.from_exception(failure)
        for call in calls:
            call.future.set_exception(error)
        return
    start = 0
    for call in calls:
        call.future.set_result({name: value[start : start + call.size] for name, value in outputs.items()})
        start += call.size
