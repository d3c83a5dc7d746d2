"""`python -m serving.bench.tune_batching` (make tune-batching SLO_MS=20): batching parameters for an SLO.

For each configuration of a grid over max_batch_size, batch_timeout_micros,
num_batch_threads, max_enqueued_batches and allowed_batch_sizes (plus batching off, for
reference) it starts the server on free loopback ports (tensorflow_model_server when it is
on PATH, else the compatible server), drives it with closed-loop gRPC clients from client
processes at each concurrency level, and stops it. A configuration's score is its highest
throughput, over the concurrency levels, whose p99 meets the SLO with no failed request; the
best-scoring configuration is written as batching_parameters.txt (TF Serving's text format,
parsed back with the BatchingParameters proto before it is kept). The sweep is one MLflow
run with a child run per configuration (metrics per concurrency level as steps), and ends
with a table and a throughput-vs-p99 plot (PNG, also logged to the parent run).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from serving.bench.load import LoadGenerator, LoadResult
from serving.bench.servers import BenchServer, model_inputs, target_model
from serving.common import cpu_description, write_report
from serving.server.management.batching.options import BatchingOptions
from serving.server.proto import session_bundle_config_pb2

EXPERIMENT = "serving-batching"


@dataclass(frozen=True)
class Candidate:
    """One point of the grid; None is batching off."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    allowed_batch_sizes: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        allowed = "+allowed" if self.allowed_batch_sizes else ""
        return (f"b{self.max_batch_size}-t{self.batch_timeout_micros}us-th{self.num_batch_threads}"
                f"-q{self.max_enqueued_batches}{allowed}")

    def params(self) -> dict:
        return {"max_batch_size": self.max_batch_size, "batch_timeout_micros": self.batch_timeout_micros,
                "num_batch_threads": self.num_batch_threads, "max_enqueued_batches": self.max_enqueued_batches,
                "allowed_batch_sizes": ",".join(map(str, self.allowed_batch_sizes)) or "none"}

    def to_text(self) -> str:
        """Return these parameters as a batching_parameters.txt (TF Serving's text format)."""
        message = session_bundle_config_pb2.BatchingParameters()
        message.max_batch_size.value = self.max_batch_size
        message.batch_timeout_micros.value = self.batch_timeout_micros
        message.num_batch_threads.value = self.num_batch_threads
        message.max_enqueued_batches.value = self.max_enqueued_batches
        message.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        return text_format.MessageToString(message)


def powers_of_two_up_to(limit: int) -> tuple[int, ...]:
    """Return allowed_batch_sizes 1, 2, 4, ... ending at `limit` (TF Serving wants it last)."""
    sizes = [1 << exponent for exponent in range(limit.bit_length()) if (1 << exponent) < limit]
    return (*sizes, limit)


def grid(args) -> list[Candidate]:
    """Return every combination of the swept values."""
    candidates = []
    for size, timeout, threads, enqueued, allowed in itertools.product(
            args.max_batch_sizes, args.batch_timeouts_micros, args.num_batch_threads,
            args.max_enqueued_batches, args.allowed_batch_sizes):
        sizes = powers_of_two_up_to(size) if allowed == "pow2" else ()
        candidates.append(Candidate(size, timeout, threads, enqueued, sizes))
    return candidates


def score(results: list[LoadResult], slo_ms: float) -> LoadResult | None:
    """Return the highest-throughput measurement meeting the SLO with no errors, if any."""
    meeting = [result for result in results if result.errors == 0 and result.p99_ms <= slo_ms]
    return max(meeting, key=lambda result: result.throughput_rps, default=None)


def _measure(candidate: Candidate | None, name: str, version_dir: Path, load: LoadGenerator, args,
             scratch: Path) -> list[LoadResult]:
    flags = []
    if candidate is not None:
        path = scratch / f"{candidate.name}.txt"
        path.write_text(candidate.to_text())
        flags = ["--enable_batching", f"--batching_parameters_file={path}"]
    server = BenchServer(name, version_dir.parent, flags + args.server_flags, binary=args.binary)
    try:
        return [load.run(server.grpc_port, clients, args.seconds) for clients in args.concurrency]
    finally:
        server.stop()


def _plot(rows: list[dict], slo_ms: float, chosen: str | None, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for row in rows:
        points = [(result["p99_ms"], result["throughput_rps"]) for result in row["results"]]
        style = {"linewidth": 3, "color": "black"} if row["name"] == chosen else {"alpha": 0.7}
        axes.plot(*zip(*points, strict=True), marker="o", label=row["name"], **style)
        for (p99, rate), result in zip(points, row["results"], strict=True):
            axes.annotate(f"x{result['clients']}", (p99, rate), fontsize=6, xytext=(3, 3), textcoords="offset points")
    axes.axvline(slo_ms, color="red", linestyle="--", label=f"SLO p99 {slo_ms:g} ms")
    axes.set_xscale("log")
    axes.set_xlabel("p99 latency (ms, log scale); points: concurrency levels")
    axes.set_ylabel("throughput (requests/s)")
    axes.set_title("Batching configurations: throughput vs p99")
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return figure


def table(rows: list[dict], slo_ms: float, chosen: str | None) -> str:
    """Return the sweep as a markdown table, one row per configuration and concurrency."""
    lines = [f"| configuration | clients | req/s | p50 ms | p99 ms | errors | meets p99 <= {slo_ms:g} ms |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for result in row["results"]:
            meets = result["errors"] == 0 and result["p99_ms"] <= slo_ms
            mark = "**" if row["name"] == chosen else ""
            lines.append(f"| {mark}{row['name']}{mark} | {result['clients']} | {result['throughput_rps']} | "
                         f"{result['p50_ms']} | {result['p99_ms']} | {result['errors']} | {'yes' if meets else 'no'} |")
    return "\n".join(lines) + "\n"


def run(args) -> dict:
    """Run the sweep; return {"chosen": name or None, "rows": [...], "parameters_file": path or None}."""
    from pipeline.tracking import Tracker, scratch_dir

    name, version_dir, temporary = target_model(args)
    inputs = model_inputs(version_dir, args.signature, args.request_batch)
    candidates: list[Candidate | None] = [None, *grid(args)]
    tracker = Tracker(args.tracking_uri, args.experiment)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows, best = [], None
    try:
        with tracker.run("tune-batching", tags={"kind": "batching-sweep"}) as parent, \
                LoadGenerator(name, inputs, args.signature, args.client_processes) as load, \
                scratch_dir() as scratch:
            host = cpu_description()
            parent.log_params({"slo_ms": args.slo_ms, "model": name, "signature": args.signature,
                               "concurrency": ",".join(map(str, args.concurrency)), "seconds": args.seconds,
                               "request_batch": args.request_batch, "client_processes": args.client_processes,
                               "server": args.binary or "compatible", **{f"host_{k}": v for k, v in host.items()}})
            for candidate in candidates:
                label = candidate.name if candidate else "batching-off"
                with tracker.run(label, parent_run_id=parent.run_id) as child:
                    child.log_params(candidate.params() if candidate else {"enable_batching": False})
                    results = _measure(candidate, name, version_dir, load, args, scratch)
                    for result in results:
                        child.log_metrics({"throughput_rps": result.throughput_rps, "p50_ms": result.p50_ms,
                                           "p99_ms": result.p99_ms, "errors": result.errors}, step=result.clients)
                    scored = score(results, args.slo_ms)
                    child.log_metrics({"throughput_under_slo_rps": scored.throughput_rps if scored else 0.0})
                row = {"name": label, "candidate": candidate, "results": [result.as_dict() for result in results],
                       "throughput_under_slo_rps": scored.throughput_rps if scored else 0.0}
                rows.append(row)
                print(f"{label}: " + ", ".join(f"x{r.clients} {r.throughput_rps} req/s p99 {r.p99_ms} ms"
                                               + (f" ({r.errors} errors)" if r.errors else "") for r in results),
                      flush=True)
                if candidate is not None and scored and (best is None or scored.throughput_rps > best["throughput_under_slo_rps"]):
                    best = row
            chosen = best["name"] if best else None
            figure = _plot(rows, args.slo_ms, chosen, output / "batching_sweep.png")
            parent.log_figure(figure, "batching_sweep.png")
            markdown = table(rows, args.slo_ms, chosen)
            parent.log_text(markdown, "batching_sweep.md")
            parameters_file = None
            if best is not None:
                staged = scratch / "batching_parameters.txt"
                staged.write_text(best["candidate"].to_text())
                BatchingOptions.from_file(staged)  # only a file the proto parses is kept
                parameters_file = output / "batching_parameters.txt"
                shutil.copyfile(staged, parameters_file)
                parent.log_artifact(parameters_file)
                parent.log_params({"chosen": chosen})
                parent.log_metrics({"throughput_under_slo_rps": best["throughput_under_slo_rps"]})
            off = rows[0]["throughput_under_slo_rps"]
            parent.log_metrics({"batching_off_throughput_under_slo_rps": off})
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    summary = {"chosen": chosen, "parameters_file": str(parameters_file) if parameters_file else None,
               "slo_ms": args.slo_ms, "host": host, "run_id": parent.run_id,
               "rows": [{key: value for key, value in row.items() if key != "candidate"} for row in rows]}
    write_report(output, "batching_sweep", summary, markdown)
    return summary


def _ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _allowed(text: str) -> list[str]:
    values = [item.strip() for item in text.split(",") if item.strip()]
    if not values or set(values) - {"none", "pow2"}:
        raise argparse.ArgumentTypeError(f"expected a list of none/pow2, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m serving.bench.tune_batching", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slo-ms", type=float, default=20.0, help="p99 latency bound (ms).")
    parser.add_argument("--models-dir", default="saved_models")
    parser.add_argument("--demo", action="store_true", help="Sweep on the demo CNN even if saved_models/ has models.")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--request-batch", type=int, default=1, help="Rows in each client request.")
    parser.add_argument("--max-batch-sizes", type=_ints, default=[8, 32])
    parser.add_argument("--batch-timeouts-micros", type=_ints, default=[1000, 4000])
    parser.add_argument("--num-batch-threads", type=_ints, default=[1, 2])
    parser.add_argument("--max-enqueued-batches", type=_ints, default=[100])
    parser.add_argument("--allowed-batch-sizes", type=_allowed, default=["none"],
                        help="none (run batches as formed) and/or pow2 (pad to 1, 2, 4, ... max_batch_size).")
    parser.add_argument("--concurrency", type=_ints, default=[4, 16, 32], help="Closed-loop clients per measurement.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Measured seconds per concurrency level.")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--binary", default=shutil.which("tensorflow_model_server"),
                        help="Server binary (default: tensorflow_model_server if on PATH, else the compatible server).")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default=EXPERIMENT)
    parser.add_argument("--output-dir", default="bench/results")
    parser.add_argument("server_flags", nargs="*", help="Extra flags for every started server, after '--'.")
    args = parser.parse_args(argv)
    if args.slo_ms <= 0:
        parser.error(f"--slo-ms must be positive, got {args.slo_ms}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    if summary["chosen"] is None:
        best_p99 = min((r["p99_ms"] for row in summary["rows"] for r in row["results"]), default=float("nan"))
        print(f"no batching configuration met p99 <= {args.slo_ms:g} ms without errors (lowest p99: "
              f"{best_p99} ms); raise SLO_MS, or sweep fewer clients (--concurrency)", file=sys.stderr)
        return 1
    print(f"chosen: {summary['chosen']} -> {summary['parameters_file']} "
          f"(serve it: make serve BATCHING_PARAMS={summary['parameters_file']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
