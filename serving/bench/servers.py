"""What a serving benchmark runs against: the model, its inputs and servers on free loopback ports.

Shared by `make bench-serve` (serve.py) and `make tune-batching` (tune_batching.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from serving.common import free_port, list_versions

MONITORING_PATH = "/monitoring/prometheus/metrics"


def find_model(models_dir: Path) -> tuple[str, Path] | None:
    """Return (name, latest version folder) of the first model under `models_dir`, if any."""
    for base in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        versions = list_versions(base) if base.is_dir() else {}
        if versions and not base.name.startswith("."):
            return base.name, Path(versions[max(versions)])
    return None

class BenchServer:
    """A server subprocess on free loopback ports: the compatible one, or `binary` if given.

    `binary` is tensorflow_model_server's path (it takes the same flags).
    """

    def __init__(self, name: str, base_path: Path, extra_flags: list[str], binary: str | None = None):
        self.grpc_port, self.rest_port = free_port(), free_port()
        server = [binary] if binary else [sys.executable, "-m", "serving"]
        command = [*server, f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                   f"--model_name={name}", f"--model_base_path={base_path.resolve()}", *extra_flags]
        # The server runs the kernels this process runs, so the floor is comparable.
        from serving.server.core.servable import onednn_enabled  # imports TensorFlow

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_ENABLE_ONEDNN_OPTS": "1" if onednn_enabled() else "0"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line)
            if "Exporting HTTP/REST API" in line:
                # Keep reading (and dropping) its output, so a full pipe never blocks it.
                threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
                return
        raise SystemExit("the server did not start; run it by hand to see why: " + " ".join(command)
                         + "\n" + "".join(self.lines[-10:]))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def target_model(args) -> tuple[str, Path, Path | None]:
    """Return (name, version folder, temporary folder to delete or None)."""
    found = None if args.demo else find_model(Path(args.models_dir))
    if found is not None:
        return (*found, None)
    from serving.bench.demo_model import export_demo_model

    temporary = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    print("no model under saved_models/ (or --demo): benchmarking the demo CNN (serving/bench/demo_model.py)")
    return "demo", export_demo_model(temporary / "demo", 1), temporary


def model_inputs(version_dir: Path, signature_name: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Return seeded inputs of `batch` rows for the signature's first input (unknown dims: 1)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[signature_name]
    input_name, spec = next(iter(signature.structured_input_signature[1].items()))
    shape = [dim if dim is not None else 1 for dim in spec.shape.as_list()[1:]]
    rng = np.random.default_rng(seed)
    return {input_name: rng.integers(0, 256, size=(batch, *shape)).astype(spec.dtype.as_numpy_dtype)}


def monitoring_file(scratch: Path) -> Path:
    path = scratch / "monitoring.config"
    path.write_text(f'prometheus_config {{ enable: true, path: "{MONITORING_PATH}" }}')
    return path


class EchoServer:
    """`python -m serving.bench.load PORT` as a subprocess: the transport alone, no model."""

    def __init__(self):
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "serving.bench.load", str(self.port)],
                                        stdout=subprocess.PIPE, text=True)
        if "ready" not in self.process.stdout.readline():
            raise SystemExit("the gRPC echo server did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
