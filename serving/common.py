"""Small helpers that several parts of serving/ (and the tests) need, written once.

- `list_versions`: a model's version folders, the integer-named children of its base
  path, found as TF Serving finds them (the server's source, launch, export and bench);
- `free_port`: a free TCP port on the loopback interface (bench, tests);
- `stop_process`: SIGTERM to a server subprocess, SIGKILL if it outlives the grace time
  (the promotion gate, tests);
- `cpu_description`: the CPU model, cores and vector instruction sets every benchmark prints
  with its figures (serving's benchmarks and the pipeline's);
- `write_report`: a benchmark's results as <name>.json and <name>.md, printed too;
- `read_lineage`: the MLflow run and registered version an export came from, which the
  exporter writes into the SavedModel and the server shows as a Prometheus info metric.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

# Beside TF Serving's warmup file: assets.extra/ travels with the version, unread by TF.
LINEAGE_FILE = os.path.join("assets.extra", "tfpipe_lineage.json")
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def list_versions(base_path: str | os.PathLike) -> dict[int, str]:
    """Return {version: folder path} for the integer-named folders under `base_path`.

    Raises FileNotFoundError (an OSError) when `base_path` is missing. As in TF Serving,
    '007' and '7' are the same version; the one listed later wins.
    """
    versions: dict[int, str] = {}
    with os.scandir(base_path) as entries:
        for entry in entries:
            if entry.name.isdigit() and entry.is_dir():
                versions[int(entry.name)] = entry.path
    return versions


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` now (another process may take it later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def answer_interrupts() -> None:
    """Let Ctrl-C (SIGINT) and SIGTERM reach this process whatever it inherited.

    For the commands that run a server in the foreground and stop it on Ctrl-C
    (serving.launch, the MLflow tracking server). A non-interactive shell starts a
    background job (`make serve &` in a script) with SIGINT ignored, and a parent may leave
    signals blocked; both are inherited, and either would leave the server running.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_process(process: subprocess.Popen, grace_seconds: float = 30) -> int:
    """Return the exit code of `process`, after SIGTERM (and SIGKILL past `grace_seconds`) if running."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def cpu_description() -> dict[str, object]:
    """Return {"cpu_model", "cores", "instruction_sets"} of this machine from /proc/cpuinfo.

    `instruction_sets` lists the vector extensions speed depends on (AVX2, AVX-512,
    bfloat16, AMX), space-separated; "none" when there are none or no /proc/cpuinfo.
    """
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count(),
            "instruction_sets": " ".join(flag for flag in VECTOR_FLAGS if flag in flags) or "none"}


def write_report(output_dir: str | Path, name: str, results: dict, markdown: str) -> Path:
    """Write `results` as <name>.json and `markdown` as <name>.md; print both paths; return the folder."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {output / f'{name}.json'} and {output / f'{name}.md'}")
    return output


def read_lineage(version_dir: str | os.PathLike) -> dict[str, str]:
    """Return {"model_name", "version", "run_id", ...} of an export, {} if it has no lineage."""
    try:
        lineage = json.loads((Path(version_dir) / LINEAGE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in lineage.items()} if isinstance(lineage, dict) else {}
