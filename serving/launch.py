"""`python -m serving.launch`: serve saved_models/ with the best server this machine has.

1. models.config: the file given (--model_config_file or $MODEL_CONFIG), else one written
   for every model under saved_models/ (TF Serving's text format, absolute base paths),
   so the same file works for tensorflow_model_server and for the compatible server.
2. The server: `tensorflow_model_server` if it is on PATH; else the `tensorflow/serving`
   Docker image if `docker info` works (the -gpu tag and --gpus all when nvidia-smi sees a
   GPU; model folders mounted read-only and base paths rewritten to the container's);
   else the compatible server, `python -m serving`.
Server flags after `--` go to whichever server starts; the files that
--batching_parameters_file and --monitoring_config_file name must exist, and are copied
beside the container's models.config for Docker.
It prints which one it started and where, and stops it cleanly on Ctrl-C. While it runs,
`<models dir>/.server.json` records its ports and config file, so `make promote` and `make
rollback` can reload it live (serving/release/rollout.py). A config with version labels starts the
server with --allow_version_labels_for_unavailable_models: at start-up no version is loaded
yet, and TF Serving refuses labels on unloaded versions without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from serving.common import answer_interrupts, list_versions
from serving.release import server_record
from serving.release.registry_config import has_labels
from serving.server.core.errors import ServingError
from serving.server.management import config as config_lib

DOCKER_IMAGE = "tensorflow/serving"
CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config/models.config"
# At start-up no version is loaded yet: TF Serving refuses labels on them without this.
LABELS_FLAG = "allow_version_labels_for_unavailable_models"
FLAG_FILES = ("batching_parameters_file", "monitoring_config_file")


@dataclass
class Launch:
    """What to run: `kind` is 'binary', 'docker' or 'compatible'."""

    kind: str
    command: list[str]
    config_path: Path
    notes: list[str] = field(default_factory=list)


def discover_models(models_dir: Path) -> dict[str, Path]:
    """Return {model name: base path} for each folder holding integer-named version folders.

    Hidden and staging folders (.tmp-*) are skipped; names are checked so a config can
    never point outside `models_dir`.
    """
    models = {}
    for child in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        if child.name.startswith(".") or not child.is_dir():
            continue
        if list_versions(child):
            config_lib.check_model_name(child.name)
            models[child.name] = child.resolve()
    return models


def build_config(models: dict[str, Path]):
    """Return a ModelServerConfig serving the latest version of each model."""
    config = config_lib.ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform="tensorflow")
    return config


def container_config(config):
    """Return (config with container paths, [(host path, container path)] mounts)."""
    rewritten = config_lib.ModelServerConfig()
    rewritten.CopyFrom(config)
    mounts = []
    for model in rewritten.model_config_list.config:
        inside = f"{CONTAINER_MODELS}/{model.name}"
        mounts.append((model.base_path, inside))
        model.base_path = inside
    return rewritten, mounts


def check_flag_files(flags: list[str]) -> None:
    """Exit with one line naming the flag if a file-valued server flag names no file."""
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name in FLAG_FILES and not Path(value).is_file():
            raise SystemExit(f"--{name}: no such file: {value!r}")


def container_flags(flags: list[str], staging: Path) -> list[str]:
    """Return `flags` with file-valued flags copied into `staging` (mounted at /config)."""
    rewritten = []
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name in FLAG_FILES:
            shutil.copyfile(value, staging / f"{name}.txt")
            flag = f"--{name}=/config/{name}.txt"
        rewritten.append(flag)
    return rewritten


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def plan(args, config, config_path: Path, *, binary: str | None, docker: bool, gpu: bool) -> Launch:
    """Return the Launch for this machine: binary first, then Docker, then ours."""
    if has_labels(config) and not any(flag.startswith(f"--{LABELS_FLAG}") for flag in args.server_flags):
        args.server_flags = [*args.server_flags, f"--{LABELS_FLAG}=true"]
    ports = [f"--port={args.grpc_port}", f"--rest_api_port={args.rest_port}"]
    if args.backend in ("auto", "binary") and binary:
        notes = [] if args.host == "0.0.0.0" else [
            f"tensorflow_model_server always listens on all interfaces; --host {args.host} cannot be applied"]
        return Launch("binary", [binary, *ports, f"--model_config_file={config_path}", *args.server_flags],
                      config_path, notes)
    if args.backend in ("auto", "docker") and docker:
        inside, mounts = container_config(config)
        staging = Path(tempfile.mkdtemp(prefix="tf-serving-config-"))
        (staging / "models.config").write_text(config_lib.to_text(inside))
        image = f"{args.image}:latest-gpu" if gpu else args.image
        command = ["docker", "run", "--rm", "--name", args.container_name,
                   "-p", f"{args.host}:{args.grpc_port}:8500", "-p", f"{args.host}:{args.rest_port}:8501",
                   "-v", f"{staging}:/config:ro"]
        for host_path, container_path in mounts:
            command += ["-v", f"{host_path}:{container_path}:ro"]
        command += (["--gpus", "all"] if gpu else []) + [image, f"--model_config_file={CONTAINER_CONFIG}",
                                                         *container_flags(args.server_flags, staging)]
        return Launch("docker", command, staging / "models.config", [f"image {image}"])
    if args.backend not in ("auto", "compatible"):
        raise SystemExit(f"--backend {args.backend} is not available on this machine; use auto or compatible")
    command = [sys.executable, "-m", "serving", *ports, f"--model_config_file={config_path}",
               f"--bind_address={args.host}", *args.server_flags]
    return Launch("compatible", command, config_path)


def _config_for(args):
    """Return (ModelServerConfig, path of the file the server should read)."""
    given = args.model_config_file or os.environ.get("MODEL_CONFIG")
    if given:
        path = Path(given).resolve()
        config = config_lib.read_config_file(str(path))
        config_lib.validate(config)
        return config, path
    models = discover_models(Path(args.models_dir))
    if not models:
        raise SystemExit(f"no models under {args.models_dir}/ (expected <name>/<version>/saved_model.pb); "
                         "train and export one first (make train), or name a models.config: "
                         "make serve MODEL_CONFIG=path/models.config (--model_config_file)")
    config = build_config(models)
    path = Path(args.models_dir).resolve() / "models.config"
    path.write_text(config_lib.to_text(config))
    return config, path


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m serving.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default="saved_models", help="Folder of <model>/<version>/ SavedModels.")
    parser.add_argument("--model_config_file", "--model-config-file", default=None,
                        help="Serve this models.config instead of writing one (default: $MODEL_CONFIG).")
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0 for all).")
    parser.add_argument("--backend", choices=("auto", "binary", "docker", "compatible"), default="auto")
    parser.add_argument("--image", default=DOCKER_IMAGE)
    parser.add_argument("--container-name", default="tfpipe-serving")
    parser.add_argument("--from-registry", action="store_true",
                        help="The config was written from the MLflow registry (`python -m pipeline "
                        "serving-config`): promotions and rollbacks may reload it live.")
    parser.add_argument("server_flags", nargs="*", help="Extra server flags, after '--'.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start the chosen server, wait for it, stop it on Ctrl-C; return its exit code."""
    answer_interrupts()
    args = parse_args(argv)
    check_flag_files(args.server_flags)
    try:
        config, config_path = _config_for(args)
    except ServingError as error:
        raise SystemExit(f"invalid model config: {error.message}") from None
    binary = shutil.which("tensorflow_model_server")
    docker = args.backend in ("auto", "docker") and not binary and _docker_works()
    launch = plan(args, config, config_path, binary=binary, docker=docker, gpu=docker and _has_nvidia_gpu())
    names = ", ".join(model.name for model in config.model_config_list.config)
    print(f"Starting {launch.kind} server for models [{names}] (config {launch.config_path})", flush=True)
    print(f"  gRPC {args.host}:{args.grpc_port}   REST http://{args.host}:{args.rest_port}/v1/models/<name>",
          flush=True)
    for note in launch.notes:
        print(f"  note: {note}", flush=True)
    process = subprocess.Popen(launch.command)
    # Beside a registry config (<export dir>/models.config), where promotions look for it.
    models_dir = config_path.parent if args.from_registry else Path(args.models_dir)
    server_record.write_record(models_dir, server_record.ServerRecord(
        pid=process.pid, host=args.host, grpc_port=args.grpc_port, rest_port=args.rest_port,
        config_path=str(config_path), kind=launch.kind,
        # Docker reads a copy with container paths: a reload from the host could not use it.
        from_registry=args.from_registry and launch.kind != "docker"))

    def stop(*_):
        if launch.kind == "docker":
            subprocess.run(["docker", "stop", args.container_name], capture_output=True)
        elif process.poll() is None:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop()
        return_code = process.wait()
        print(f"Stopped the {launch.kind} server.", flush=True)
        return 0 if return_code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else return_code
    finally:
        server_record.remove_record(models_dir, process.pid)


if __name__ == "__main__":
    sys.exit(main())
