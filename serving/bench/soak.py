"""`python -m serving.bench.soak` (make bench-soak): hot reloads under load, failures and memory.

Starts the compatible server on the demo CNN, keeps --clients threads sending gRPC and REST
predictions to the latest version, and --reloads times drops a new version folder in
(staged, then renamed, as exporters do) and waits until it serves and the old one is
unloaded. Reports the requests that failed (must be 0) and the server's resident memory
(VmRSS) after each reload, which must plateau: the last ten within --plateau-mib. Writes
<output-dir>/soak.json and soak.md; exits 1 when either bar is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import serving.client
from serving.common import cpu_description, free_port, write_report


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class _Load:
    """Client threads predicting on the latest version until stopped; counts failures."""

    def __init__(self, grpc_port: int, rest_port: int, clients: int):
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(index, grpc_port, rest_port), daemon=True)
                         for index in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int, grpc_port: int, rest_port: int) -> None:
        from serving.bench.demo_model import sample_pixels

        client = (serving.client.GrpcClient(port=grpc_port) if index % 2 == 0
                  else serving.client.RestClient(port=rest_port))
        pixels = {"image": sample_pixels(1, seed=index)}
        while not self._stop.is_set():
            try:
                client.predict("demo", pixels)
                outcome = None
            except Exception as error:  # any failure counts; the first few are kept
                outcome = f"{type(error).__name__}: {error}"
            with self._lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors = (self.errors + [outcome])[:5]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _start_server(base: Path, poll_seconds: int) -> tuple[subprocess.Popen, int, int, list[str]]:
    grpc_port, rest_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               "--model_name=demo", f"--model_base_path={base}",
               f"--file_system_poll_wait_seconds={poll_seconds}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "Exporting HTTP/REST API" in line:
            # Keep reading, or a full pipe would block the server's logging.
            threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
            return process, grpc_port, rest_port, lines
    raise SystemExit("the server did not start:\n" + "".join(lines[-30:]))


def _publish(source: Path, base: Path, version: int) -> None:
    staging = base / f".tmp-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))


def _wait_serving(status, version: int, timeout: float = 120.0) -> None:
    """Wait until `version` is the only AVAILABLE one (the previous one unloaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if [v for v, state in status() if state == "AVAILABLE"] == [version]:
            return
        time.sleep(0.05)
    raise SystemExit(f"version {version} did not take over within {timeout:.0f} s")


def run(args) -> dict:
    from serving.bench.demo_model import export_demo_model  # imports TensorFlow: not for --help

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        source = export_demo_model(work / "source", 1)
        base = work / "demo"
        base.mkdir()
        _publish(source, base, 1)
        process, grpc_port, rest_port, _ = _start_server(base, args.poll_seconds)
        status = serving.client.GrpcClient(port=grpc_port).status
        load = _Load(grpc_port, rest_port, args.clients)
        rss, seconds = [], []
        try:
            for version in range(2, args.reloads + 2):
                started = time.perf_counter()
                _publish(source, base, version)
                _wait_serving(lambda: status("demo"), version)
                shutil.rmtree(base / str(version - 1))
                seconds.append(time.perf_counter() - started)
                rss.append(round(resident_mib(process.pid), 1))
                print(f"reload {version - 1}/{args.reloads}: {rss[-1]} MiB resident, "
                      f"{load.ok} requests ok, {load.failed} failed", flush=True)
        finally:
            load.stop()
            process.terminate()
            process.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tail = rss[-10:]
    return {"host": cpu_description(), "reloads": args.reloads, "clients": args.clients,
            "requests_ok": load.ok, "requests_failed": load.failed, "errors": load.errors,
            "rss_mib": rss, "last_ten_spread_mib": round(max(tail) - min(tail), 1),
            "plateau_mib": args.plateau_mib, "reload_seconds_p50": round(sorted(seconds)[len(seconds) // 2], 2)}


def markdown(results: dict) -> str:
    machine = results["host"]
    verdict = "yes" if results["last_ten_spread_mib"] <= results["plateau_mib"] else "NO"
    return "\n".join([
        f"# Soak: {results['reloads']} hot reloads under load ({results['clients']} clients)", "",
        f"Host: {machine['cpu_model']}, {machine['cores']} cores, {machine['instruction_sets']}", "",
        "| requests ok | failed | RSS first / last reload (MiB) | last ten spread (MiB) | plateau | reload p50 (s) |",
        "|---|---|---|---|---|---|",
        f"| {results['requests_ok']} | {results['requests_failed']} | {results['rss_mib'][0]} / "
        f"{results['rss_mib'][-1]} | {results['last_ten_spread_mib']} | {verdict} | {results['reload_seconds_p50']} |",
        "", "RSS after each reload (MiB): " + ", ".join(str(value) for value in results["rss_mib"]), "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--poll-seconds", type=int, default=1, help="--file_system_poll_wait_seconds")
    parser.add_argument("--plateau-mib", type=float, default=8.0, help="allowed spread (MiB) of the last ten RSS")
    parser.add_argument("--output-dir", default="bench/results")
    args = parser.parse_args(argv)
    if args.reloads < 10:
        parser.error("--reloads must be at least 10 (the plateau is judged on the last ten)")
    machine = cpu_description()
    print(f"host: {machine['cpu_model']}, {machine['cores']} cores, {machine['instruction_sets']}")
    results = run(args)
    write_report(args.output_dir, "soak", results, markdown(results))
    plateau = results["last_ten_spread_mib"] <= args.plateau_mib
    return 0 if results["requests_failed"] == 0 and plateau else 1


if __name__ == "__main__":
    sys.exit(main())
