"""tensorflow_model_server's command-line flags: same names, defaults and meanings.

Every flag of model_servers/main.cc is accepted. Most are implemented; the rest either do
not apply to this server (TPU, TFLite, XLA, profiler: accepted and ignored, as harmless)
or would change security or the API surface (SSL, ALTS, platform configs: refused with a
clear error rather than silently ignored). Two flags are our own: --bind_address and
--max_request_bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, fields

_CPUS = os.cpu_count() or 1
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    """The server's configuration, one field per flag (see `FLAG_HELP`)."""

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = 4 * _CPUS
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    enable_batching: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000
    file_system_poll_wait_seconds: int = 1
    flush_filesystem_caches: bool = True
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    platform_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    saved_model_tags: str = "serve"
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 4 * _CPUS
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    version: bool = False
    monitoring_config_file: str = ""
    remove_unused_fields_from_bundle_metagraph: bool = True
    prefer_tflite_model: bool = False
    num_tflite_pools: int = _CPUS
    num_tflite_interpreters_per_pool: int = 1
    enable_signature_method_name_check: bool = False
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    enable_profiler: bool = True
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    enable_grpc_healthcheck_service: bool = False
    enable_serialization_as_tensor_content: bool = False
    # Ours: TF Serving binds 0.0.0.0; we default to loopback so a dev box exposes nothing.
    bind_address: str = "127.0.0.1"
    # Ours: largest REST body (413 beyond) and gRPC message (RESOURCE_EXHAUSTED beyond).
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


FLAG_HELP = {
    "port": "TCP port for the gRPC API (0 disables it; then --grpc_socket_path is required).",
    "grpc_socket_path": "UNIX socket path for the gRPC API, in addition to --port.",
    "rest_api_port": "Port for the HTTP/REST API (0 disables it). Must differ from --port.",
    "rest_api_num_threads": "Threads running REST requests.",
    "rest_api_timeout_in_ms": "Timeout for REST calls; past it the reply is 504 DEADLINE_EXCEEDED.",
    "rest_api_enable_cors_support": "Add CORS headers to REST responses.",
    "enable_batching": "Merge concurrent requests into batches.",
    "allow_version_labels_for_unavailable_models": "Allow new labels to point at versions not loaded yet.",
    "batching_parameters_file": "Text-format BatchingParameters (requires --enable_batching).",
    "model_config_file": "Text-format ModelServerConfig; overrides --model_name/--model_base_path.",
    "model_config_file_poll_wait_seconds": "Re-read --model_config_file this often (0: once).",
    "model_name": "Model name when serving one model from --model_base_path.",
    "model_base_path": "Absolute path of the model's version folders (single-model mode).",
    "max_num_load_retries": "Retries of a failed load before giving up.",
    "load_retry_interval_micros": "Pause between load retries.",
    "file_system_poll_wait_seconds": "Poll base paths for new versions this often (0: once).",
    "tensorflow_session_parallelism": "Threads for both TF thread pools (0: automatic).",
    "tensorflow_intra_op_parallelism": "TF intra-op threads (0: automatic).",
    "tensorflow_inter_op_parallelism": "TF inter-op threads (0: automatic).",
    "saved_model_tags": "Comma-separated tag set of the MetaGraph to load.",
    "grpc_channel_arguments": "Comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=2000.",
    "grpc_max_threads": "Threads handling gRPC requests.",
    "enable_model_warmup": "Replay assets.extra/tf_serving_warmup_requests at load.",
    "num_request_iterations_for_warmup": "Times each warmup request runs (if > 0).",
    "version": "Print the version and exit.",
    "monitoring_config_file": "Text-format MonitoringConfig enabling Prometheus metrics on the REST port.",
    "enable_signature_method_name_check": "Check SignatureDef method names (TF1 behaviour).",
    "enable_serialization_as_tensor_content": "Send Predict outputs as tensor_content.",
    "bind_address": "(ours) Address both APIs listen on; TF Serving always uses 0.0.0.0.",
    "max_request_bytes": "(ours) Largest REST body / gRPC message accepted.",
}

# Flags that would change security or the API surface: refuse them rather than ignore.
UNSUPPORTED = {
    "use_alts_credentials": "ALTS credentials",
    "ssl_config_file": "SSL",
    "platform_config_file": "platform config maps",
    "tensorflow_session_config_file": "Session ConfigProto files",
    "thread_pool_factory_config_file": "thread pool factories",
    "enable_per_model_batching_parameters": "per-model batching parameters",
    "prefer_tflite_model": "TensorFlow Lite models",
    "enable_grpc_healthcheck_service": "the gRPC health check service",
    "mixed_precision": "mixed precision rewriting",
}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser: `--flag=value` (TF Serving's syntax) and `--flag value` both work."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="TensorFlow-Serving-compatible model server (flags of tensorflow_model_server).",
        allow_abbrev=False,
    )
    for option in fields(ServerOptions):
        flag = f"--{option.name}"
        help_text = FLAG_HELP.get(option.name) or (
            f"Not supported here ({UNSUPPORTED[option.name]}): refused at start-up; "
            "use tensorflow_model_server."
            if option.name in UNSUPPORTED else
            "Accepted and ignored: does not apply to this server.")
        default = ServerOptions.__dataclass_fields__[option.name].default
        if option.type == "bool":
            parser.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=default, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[option.type]
            parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    return parser


def parse_flags(argv: list[str]) -> ServerOptions:
    """Return ServerOptions from command-line arguments.

    Unknown arguments are reported and skipped, as tensorflow_model_server does.
    """
    parser = build_parser()
    known, unknown = parser.parse_known_args(argv)
    for argument in unknown:
        print(f"unknown argument: {argument}", file=sys.stderr)
    return ServerOptions(**vars(known))


def check(options: ServerOptions) -> None:
    """Raise ValueError (one line, naming the flag) for a combination the server rejects."""
    for name, feature in UNSUPPORTED.items():
        if getattr(options, name) != ServerOptions.__dataclass_fields__[name].default:
            raise ValueError(
                f"--{name}: {feature} are not supported by the compatible server; "
                "use the real tensorflow_model_server for this"
            )
    if options.port == 0 and not options.grpc_socket_path:
        raise ValueError("At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.")
    if not options.model_base_path and not options.model_config_file:
        raise ValueError("Both server_options.model_base_path and server_options.model_config_file are empty!")
    if options.batching_parameters_file and not options.enable_batching:
        raise ValueError(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    parallelism = (options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism)
    if all(value > 0 for value in parallelism) and options.tensorflow_session_parallelism > 0:
        raise ValueError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
        )
    if options.max_request_bytes <= 0:
        raise ValueError(f"--max_request_bytes must be positive, got {options.max_request_bytes}")
