"""BatchingParameters as TF Serving reads them: its defaults for unset fields, its checks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from serving.server import protos
from serving.server.core import errors

DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"  # server.cc, when no file is given


@dataclass(frozen=True)
class BatchingOptions:
    """BatchingParameters with TF Serving's defaults for fields a file leaves unset."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME

    @property
    def execution_batch_size(self) -> int:
        """Return the most rows one batch runs (max_execution_batch_size only when splitting)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size > 0:
            return self.max_execution_batch_size
        return self.max_batch_size

    @classmethod
    def from_proto(cls, params) -> BatchingOptions:
        """Return options from a BatchingParameters message, validated as TF Serving does."""
        defaults = cls()

        def value(name, default):
            return getattr(params, name).value if params.HasField(name) else default

        options = cls(
            max_batch_size=value("max_batch_size", defaults.max_batch_size),
            batch_timeout_micros=value("batch_timeout_micros", 0),
            max_enqueued_batches=value("max_enqueued_batches", defaults.max_enqueued_batches),
            num_batch_threads=value("num_batch_threads", defaults.num_batch_threads),
            allowed_batch_sizes=tuple(params.allowed_batch_sizes),
            enable_large_batch_splitting=value("enable_large_batch_splitting", False),
            max_execution_batch_size=value("max_execution_batch_size", 0),
            thread_pool_name=value("thread_pool_name", "batch_threads"),
        )
        sizes = options.allowed_batch_sizes
        if sizes and sizes[-1] != options.max_batch_size:
            raise errors.invalid_argument(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {options.max_batch_size}"
            )
        if list(sizes) != sorted(set(sizes)):
            raise errors.invalid_argument("allowed_batch_sizes entries must be monotonically increasing")
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(options, name) < 1:
                raise errors.invalid_argument(f"{name} must be positive; was {getattr(options, name)}")
        return options

    @classmethod
    def from_file(cls, path) -> BatchingOptions:
        """Return the options in a BatchingParameters text file (--batching_parameters_file)."""
        return cls.from_proto(protos.parse_text_file(str(path), "BatchingParameters"))
