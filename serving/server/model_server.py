"""The server itself: models loaded, batching, the gRPC and REST fronts, started and stopped together."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import tensorflow as tf

from serving.common import read_lineage
from serving.server import protos
from serving.server.core import errors
from serving.server.core.servable import onednn_enabled
from serving.server.grpc_api.services import add_services
from serving.server.management import config as config_lib
from serving.server.management import warmup_replay
from serving.server.management.batching.options import BatchingOptions
from serving.server.management.batching.scheduler import BatchScheduler
from serving.server.management.manager import ManagerOptions, ModelManager
from serving.server.metrics import DEFAULT_PATH, Metrics
from serving.server.options import ServerOptions
from serving.server.rest_api.handler import RestHandler
from serving.server.rest_api.http_app import RestApp

log = logging.getLogger("serving.server")
_INT32_MAX = 2**31 - 1
MAX_BATCHING_HANDLER_THREADS = 256


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """Return --grpc_channel_arguments ('k=v,k=v') with integer values as ints, as TF does."""
    arguments = []
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        arguments.append((key.strip(), int(value) if value.strip().lstrip("-").isdigit() else value))
    return arguments


class ModelServer:
    """Everything one `python -m serving` process runs, started and stopped together."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.metrics = Metrics()
        self.scheduler: BatchScheduler | None = None
        self.manager: ModelManager | None = None
        self.grpc_server: grpc.Server | None = None
        self.rest_server = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.grpc_port = self.rest_port = 0
        self.check_shapes = onednn_enabled()

    # ----------------------------------------------------------------------- startup
    def start(self) -> None:
        """Load the models, then open the gRPC and REST ports (raises on any failure)."""
        options = self.options
        _configure_tensorflow(options)
        if options.enable_batching:
            batching = (BatchingOptions.from_file(options.batching_parameters_file)
                        if options.batching_parameters_file else BatchingOptions())
            self.scheduler = BatchScheduler(batching, self.metrics)
        self.manager = ModelManager(self._manager_options())
        self.manager.reload(self._initial_config())
        self.manager.start_polling()
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._spawn(self._poll_config_file, "config-poll")
        self._start_grpc()
        if options.rest_api_port and options.rest_api_port == options.port:
            log.error("server_options.http_port cannot be same as grpc_port. Please use a "
                      "different port for HTTP/REST API. Skipped exporting HTTP/REST API.")
        elif options.rest_api_port:
            self._start_rest()

    def _manager_options(self) -> ManagerOptions:
        options = self.options
        return ManagerOptions(
            saved_model_tags=frozenset(tag for tag in options.saved_model_tags.split(",") if tag),
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_seconds=max(options.load_retry_interval_micros, 0) / 1e6,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            prepare=self._prepare,
            retire=self._retire,
            release=self._release,
            on_load=self._on_load,
        )

    def _initial_config(self):
        if self.options.model_config_file:
            return config_lib.read_config_file(self.options.model_config_file)
        config_lib.check_model_name(self.options.model_name)
        return config_lib.single_model_config(self.options.model_name, self.options.model_base_path)

    def _prepare(self, servable) -> None:
        servable.check_shapes = self.check_shapes
        if self.scheduler is not None:
            self.scheduler.attach(servable)
        if not self.options.enable_model_warmup:
            return
        started, status = time.perf_counter(), "OK"
        try:
            warmup_replay.run_warmup(servable, self.options.num_request_iterations_for_warmup,
                              self.options.enable_signature_method_name_check)
        except Exception as failure:
            status = errors.from_exception(failure).code_name
            raise
        finally:
            if os.path.isfile(warmup_replay.warmup_path(servable)):
                self.metrics.observe("warmup_latency", (servable.path, status), (time.perf_counter() - started) * 1e6)

    def _retire(self, servable) -> None:
        self.metrics.set_lineage(servable.name, servable.version, {})
        if self.scheduler is not None:
            self.scheduler.detach(servable)

    @staticmethod
    def _release() -> None:
        # _on_load's gc.freeze() put the unloaded version's objects where no collection
        # looks; its graphs and functions hold reference cycles, so without this each hot
        # reload kept ~5 MiB for good. One full collection per unload (~100 ms).
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _on_load(self, name, version, path, error, seconds) -> None:
        self.metrics.count("load_attempts", (path, "success" if error is None else "fail"))
        if error is None:
            self.metrics.set_lineage(name, version, read_lineage(path))
            # A loaded model adds hundreds of thousands of long-lived objects; freezing them
            # keeps full garbage collections (triggered by request JSON) from walking them
            # all, which otherwise costs up to ~200 ms at p99 on a large REST body.
            gc.freeze()

    def _handler_threads(self, flag: str) -> int:
        """Return how many requests the front may handle at once (--grpc_max_threads, ...).

        A batching caller holds its handler thread until its batch has run, so the default
        (4 per core) would cap every batch at 8 calls on 2 cores however large
        max_batch_size is. Left at its default, the count is raised so that every batch
        thread's batch and the next one can fill; a value given on the command line stands.
        """
        configured = getattr(self.options, flag)
        if self.scheduler is None or configured != ServerOptions.__dataclass_fields__[flag].default:
            return max(configured, 1)
        batching = self.scheduler.options
        needed = min((batching.num_batch_threads + 1) * batching.max_batch_size, MAX_BATCHING_HANDLER_THREADS)
        if needed > configured:
            log.info("--enable_batching: --%s raised from %d to %d so that batches of max_batch_size %d "
                     "can form (set --%s to choose)", flag, configured, needed, batching.max_batch_size, flag)
        return max(needed, configured)

    def _start_grpc(self) -> None:
        options = self.options
        channel_options = [
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
            ("grpc.max_receive_message_length", min(options.max_request_bytes, _INT32_MAX)),
            ("grpc.max_send_message_length", _INT32_MAX),
            *_channel_arguments(options.grpc_channel_arguments),
        ]
        server = grpc.server(ThreadPoolExecutor(max_workers=self._handler_threads("grpc_max_threads"),
                                                thread_name_prefix="grpc"), options=channel_options)
        add_services(server, self.manager, self.metrics,
                     method_check=options.enable_signature_method_name_check,
                     as_content=options.enable_serialization_as_tensor_content)
        if options.port:
            self.grpc_port = server.add_insecure_port(_address(options.bind_address, options.port))
            if not self.grpc_port:
                raise errors.invalid_argument(f"Failed to BuildAndStart gRPC server: cannot bind port {options.port}")
        if options.grpc_socket_path:
            server.add_insecure_port(f"unix:{options.grpc_socket_path}")
        server.start()
        self.grpc_server = server
        if options.port:
            log.info("Running gRPC ModelServer at %s ...", _address(options.bind_address, self.grpc_port))
        if options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

    def _start_rest(self) -> None:
        import uvicorn

        options = self.options
        monitoring_path = None
        if options.monitoring_config_file:
            monitoring = protos.parse_text_file(options.monitoring_config_file, "MonitoringConfig")
            if monitoring.prometheus_config.enable:
                monitoring_path = monitoring.prometheus_config.path or DEFAULT_PATH
        app = RestApp(RestHandler(self.manager, options.enable_signature_method_name_check), self.metrics,
                      num_threads=self._handler_threads("rest_api_num_threads"), timeout_ms=options.rest_api_timeout_in_ms,
                      max_body_bytes=options.max_request_bytes, monitoring_path=monitoring_path,
                      cors=options.rest_api_enable_cors_support)
        has = importlib.util.find_spec
        config = uvicorn.Config(
            app, host=options.bind_address, port=options.rest_api_port, log_level="warning",
            access_log=False, server_header=False, lifespan="on",
            loop="uvloop" if has("uvloop") else "asyncio", http="httptools" if has("httptools") else "h11",
        )
        self.rest_server = uvicorn.Server(config)
        thread = self._spawn(self.rest_server.run, "rest")
        address = _address(options.bind_address, options.rest_api_port)
        while not self.rest_server.started:
            if not thread.is_alive():
                # As TF Serving: the REST API is lost, gRPC goes on serving.
                log.error("Failed to start HTTP Server at %s", address)
                self.rest_server = None
                return
            time.sleep(0.01)
        self.rest_port = options.rest_api_port
        log.info("Exporting HTTP/REST API at:%s ...", address)

    def _spawn(self, target, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _poll_config_file(self) -> None:
        """Re-read --model_config_file periodically (Server::PollFilesystemAndReloadConfig)."""
        while not self._stopping.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                new_config = config_lib.read_config_file(self.options.model_config_file)
            except errors.ServingError as error:
                log.error("Failed to read ModelServerConfig file: %s", error.message)
                continue
            try:
                self.manager.reload(new_config)
            except Exception as failure:
                log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s",
                          errors.from_exception(failure).message)

    # ---------------------------------------------------------------------- shutdown
    def interrupt(self) -> None:
        """Abandon a startup still waiting for models (safe to call from a signal handler)."""
        self._stopping.set()
        if self.manager is not None:
            self.manager.interrupt()

    def stop(self) -> None:
        """Close both APIs (letting in-flight requests finish), then unload every model."""
        self._stopping.set()
        if self.rest_server is not None:
            self.rest_server.should_exit = True
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=5).wait()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.manager is not None:
            self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()


def _configure_tensorflow(options: ServerOptions) -> None:
    intra = options.tensorflow_intra_op_parallelism or options.tensorflow_session_parallelism
    inter = options.tensorflow_inter_op_parallelism or options.tensorflow_session_parallelism
    if intra > 0:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter > 0:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
