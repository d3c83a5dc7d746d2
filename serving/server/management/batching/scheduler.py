"""--enable_batching: concurrent calls merged into one batch, as TF Serving's BatchingSession.

One pool of `num_batch_threads` workers serves a queue per (servable, signature, input
shapes and dtypes), like TF's SharedBatchScheduler: calls of different models, signatures
or shapes never share a batch (TF Serving would fail such a batch unless told to pad). A
queue holds batches formed as calls arrive; the last one is open. A call that does not fit
the open batch closes it and opens the next, unless `max_enqueued_batches` are already
waiting: then the call is refused UNAVAILABLE at once, never left to hang. A batch runs
once it is full or its first call has waited `batch_timeout_micros`; it is padded up to
the next `allowed_batch_sizes` entry (padding rows repeat the first row and are dropped),
run once, and split back so each caller gets exactly its rows.

A call larger than `max_batch_size` is refused INVALID_ARGUMENT with TF's message; with
`enable_large_batch_splitting` it is cut into pieces that fill the open batch and then
batches of `max_execution_batch_size`, and the pieces' outputs are joined back. A retired
servable's queues are drained before `detach` returns (CloseAndWaitUntilEmpty), so a
reload loses no queued call.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from serving.server.core import errors
from serving.server.core.servable import Servable
from serving.server.management.batching.options import BatchingOptions
from serving.server.management.batching.queues import BatchQueue, Call, Task


class BatchScheduler:
    """Runs batched signature calls for every servable, at most `num_batch_threads` at once.

    A batch runs on whichever thread is awake when it becomes due, to save thread hand-offs
    (each costs more than a batch-1 model call under load on two cores): the caller whose
    call fills it, or the caller that opened it once `batch_timeout_micros` has passed
    (it waits on its own answer meanwhile). When all `num_batch_threads` run slots are
    taken, the scheduler's own threads pick due batches up as slots free.
    """

    def __init__(self, options: BatchingOptions, metrics=None):
        self.options = options
        self.metrics = metrics
        self._condition = threading.Condition()
        self._queues: dict[tuple, BatchQueue] = {}
        self._stopped = False
        self._draining = 0  # detach() calls waiting for queues to empty
        self._free_slots = max(options.num_batch_threads, 1)  # batches that may start now
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
        """Stop batching for `servable`, returning once its queued calls have all run."""
        servable.run = servable.call
        with self._condition:
            for queue in self._queues.values():
                queue.closed = queue.closed or queue.servable is servable
            self._condition.notify_all()
            self._draining += 1
            while any(queue.servable is servable and not queue.empty() for queue in self._queues.values()):
                self._condition.wait(0.05)
            self._draining -= 1
            self._queues = {key: queue for key, queue in self._queues.items() if queue.servable is not servable}

    def stop(self) -> None:
        """Let the workers finish what is queued, then end."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    def submit(self, servable: Servable, signature_name: str, inputs) -> dict[str, np.ndarray]:
        """Return the outputs of one call, computed as part of one or more merged batches."""
        if servable.run == servable.call:  # detached after this caller picked up `run`
            return servable.call(signature_name, inputs)
        size = _batch_size(inputs)
        if self.metrics is not None:
            for _ in inputs:  # RecordInputBatchSize: once per input tensor, as TF Serving does
                self.metrics.observe("batch_input_size", (), size)
        if size > self.options.max_batch_size:
            raise errors.invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        shapes = tuple(sorted((name, value.shape[1:], value.dtype.str) for name, value in inputs.items()))
        with self._condition:
            queue = self._queues.get((id(servable), signature_name, shapes))
            if queue is None:
                queue = self._queues[(id(servable), signature_name, shapes)] = BatchQueue(servable, signature_name)
            idle = not queue.batches[0]  # this call opens the oldest batch: it times it
            call = self._enqueue(queue, inputs, size)
            timeout = self.options.batch_timeout_micros / 1e6
            batch = self._next_batch(queue) if queue.due(self.options.execution_batch_size) or not timeout else None
            timer = idle and batch is None and queue.batches[0] and not queue.due(self.options.execution_batch_size)
            if timer:
                queue.timed = queue.batches[0]
        if batch is not None:
            self._execute(*batch)
        elif timer and not call.wait(timeout):
            with self._condition:
                batch = self._next_batch(queue)
                if batch is None and queue.timed is not None:
                    queue.timed = None  # no free slot: the scheduler's threads take it over
                    self._condition.notify()
            if batch is not None:
                self._execute(*batch)
        return call.result()

    def _enqueue(self, queue: BatchQueue, inputs, size: int) -> Call:
        """Add a call's task(s) to `queue`'s batches (under the lock), or raise UNAVAILABLE."""
        options, limit = self.options, self.options.execution_batch_size
        if options.enable_large_batch_splitting:
            capacity = (options.max_enqueued_batches - len(queue.batches)) * limit + limit - queue.tail_size()
            if size > capacity:
                raise errors.unavailable(
                    f"The batch scheduling queue to which this task was submitted is full; task size is "
                    f"{size} but scheduling capacity is only {capacity} (num_enqueued_batches="
                    f"{len(queue.batches)}, max_enqueued_batches={options.max_enqueued_batches}, "
                    f"open_batch_size={queue.tail_size()}, max_execution_batch_size={limit})")
            first = min(size, limit - queue.tail_size()) or min(size, limit)
            bounds = [0, first, *range(first + limit, size, limit), size] if size > first else [0, size]
        else:
            if queue.tail_size() + size > limit and len(queue.batches) >= options.max_enqueued_batches:
                raise errors.unavailable(
                    "The batch scheduling queue to which this task was submitted is full; currently "
                    f"{len(queue.batches)} batches enqueued and max_enqueued_batches is "
                    f"{options.max_enqueued_batches}")
            bounds = [0, size]
        call = Call(len(bounds) - 1)
        for index, (start, end) in enumerate(zip(bounds, bounds[1:])):
            piece = inputs if (start, end) == (0, size) else {name: value[start:end] for name, value in inputs.items()}
            queue.add(Task(piece, end - start, call, index), limit)
        return call

    def _work(self) -> None:
        while True:
            with self._condition:
                batch = self._next_batch()
                while batch is None:
                    if self._stopped:
                        return
                    self._condition.wait(self._wait_time())
                    batch = self._next_batch()
            self._execute(*batch)

    def _execute(self, queue: BatchQueue, tasks: list[Task]) -> None:
        """Run a batch taken by `_next_batch`, then give its run slot back."""
        try:
            self._run(queue, tasks)
        finally:
            with self._condition:
                queue.running -= 1
                self._free_slots += 1
                if queue.empty() and not queue.closed:  # shapes come and go; queues with them
                    self._queues = {key: value for key, value in self._queues.items() if value is not queue}
                if self._draining:
                    self._condition.notify_all()
                elif self._next_due(time.monotonic()) is not None:
                    self._condition.notify()  # a batch waited for this slot

    def _schedulable_since(self, queue: BatchQueue, now: float) -> float | None:
        """Return when `queue`'s first batch became due, or None if none is due yet."""
        first = queue.batches[0]
        if not first:
            return None
        started = first[0].enqueued
        if queue.due(self.options.execution_batch_size):
            return started
        return started if (now - started) * 1e6 >= self.options.batch_timeout_micros else None

    def _next_due(self, now: float, only: BatchQueue | None = None) -> BatchQueue | None:
        """Return the queue whose oldest batch has been due the longest, if any."""
        queues = [only] if only is not None else self._queues.values()
        due = [(since, index, queue) for index, queue in enumerate(queues)
               if (since := self._schedulable_since(queue, now)) is not None]
        return min(due)[2] if due else None

    def _next_batch(self, only: BatchQueue | None = None):
        """Take the batch due the longest (of `only`, if given) and a run slot, if both exist."""
        now = time.monotonic()
        queue = self._next_due(now, only) if self._free_slots else None
        if queue is None:
            return None
        tasks = queue.pop()
        queue.running += 1
        self._free_slots -= 1
        if self.metrics is not None:
            for task in tasks:
                self.metrics.observe("batch_queuing_latency", (self.options.thread_pool_name,),
                                     (now - task.enqueued) * 1e6)
        return queue, tasks

    def _wait_time(self) -> float | None:
        if not self._free_slots:
            return None  # woken when a slot frees
        pending = [queue.batches[0][0].enqueued for queue in self._queues.values()
                   if queue.batches[0] and queue.batches[0] is not queue.timed]
        if not pending:
            return None
        return max(min(pending) + self.options.batch_timeout_micros / 1e6 - time.monotonic(), 0.0001)

    def _run(self, queue: BatchQueue, tasks: list[Task]) -> None:
        """Run one merged batch and hand each task its slice of the outputs (or the error)."""
        total = sum(task.size for task in tasks)
        padded = next((size for size in self.options.allowed_batch_sizes if size >= total), total)
        if self.metrics is not None:
            self.metrics.observe("batch_padding_size", (str(padded),), padded - total)
            self.metrics.observe("batch_processed_size", (), padded)
        try:
            merged = {}
            for name in tasks[0].inputs:
                parts = [task.inputs[name] for task in tasks]
                if padded > total:
                    parts.append(np.repeat(parts[0][:1], padded - total, axis=0))
                merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            outputs = queue.servable.call(queue.signature_name, merged)
            if self.metrics is not None:
                self.metrics.count("batch_wrapped_run_count", ())
            for value in outputs.values():
                if value.ndim == 0:
                    raise errors.failed_precondition("Batched output tensor has 0 dimensions")
                if value.shape[0] != padded:
                    raise errors.failed_precondition(
                        "Batched output tensor's 0th dimension does not equal the sum of the "
                        "0th dimension sizes of the input tensors")
        except Exception as failure:
            error = errors.from_exception(failure)
            for task in tasks:
                task.call.finish_piece(task.index, error=error)
            return
        start = 0
        for task in tasks:
            task.call.finish_piece(task.index, {name: value[start:start + task.size] for name, value in outputs.items()})
            start += task.size


def _batch_size(inputs) -> int:
    sizes = set()
    for value in inputs.values():
        if value.ndim == 0:
            raise errors.invalid_argument("Batching Run() input tensors must have at least one dimension")
        sizes.add(value.shape[0])
    if len(sizes) != 1:
        raise errors.invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()
