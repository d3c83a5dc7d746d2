"""`make bench-serve` (serving/bench/serve.py): its report, and its latency rounds' rotating order."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_bench_writes_json_and_markdown(tmp_path):
    from serving.bench import serve

    assert serve.main(["--demo", "--requests", "20", "--seconds", "0.3", "--rounds", "1", "--concurrency", "1,32",
                       "--client-processes", "1", "--output-dir", str(tmp_path)]) == 0
    results = __import__("json").loads((tmp_path / "serving.json").read_text())
    assert set(results["latency"]) == {f"{path} batch {batch}" for batch in (1, 32) for path in
                                       ("in-process", "in-process back to back", "gRPC", "REST", "gRPC echo")}
    target = results["target"]
    assert target["grpc_b1_p50_above_in_process_ms"] == pytest.approx(
        results["latency"]["gRPC batch 1"]["p50_ms"] - results["latency"]["in-process batch 1"]["p50_ms"], abs=1e-3)
    assert target["met"] == (target["grpc_b1_p50_above_in_process_ms"] <= 0.5)
    assert set(results["load"]) == {f"{protocol} batching {mode} x{clients}" for protocol in ("grpc", "rest")
                                    for mode in ("off", "on") for clients in (1, 32)}
    assert all(cell["throughput_rps"] > 0 and cell["errors"] == 0 for cell in results["load"].values())
    assert results["load"]["grpc batching on x32"]["mean_processed_batch"] > 1  # the batcher merged calls
    assert results["analysis"]["targets"]["grpc_x32_on_over_off"] > 0
    assert results["host"]["cores"] and results["host"]["cpu_model"]
    table = (tmp_path / "serving.md").read_text()
    assert "| gRPC |" in table and "above the in-process call" in table and "Where a request's time goes" in table


def test_bench_interleaves_paths_in_rotating_order():
    from serving.bench import serve

    order: list[str] = []
    samples = serve.interleaved_latency({name: (lambda name=name: order.append(name)) for name in "abc"},
                                        count=3, warmup=1)
    assert order == list("abc" "abc" "bca" "cab")  # the warm-up round, then one rotation per round
    assert {name: len(timings) for name, timings in samples.items()} == {"a": 3, "b": 3, "c": 3}


def _cell(clients: int, rps: float, p50: float) -> dict:
    return {"clients": clients, "throughput_rps": rps, "p50_ms": p50, "p99_ms": 2 * p50,
            "client_cpu_ms_per_request": 0.3, "server_cpu_ms_per_request": 0.6}


def test_the_targets_are_not_measured_without_their_cells():
    # `--concurrency 8`: no 1- or 32-client cells, so neither target can be judged.
    from serving.bench import load_matrix

    results = {"concurrency": [8], "host": {"cores": 2}, "echo": {},
               "ceiling": {"single": {"images_per_s": 2000.0},
                           "batched": {"batch": 32, "images_per_s": 9000.0, "cpu_ms_per_image": 0.2}},
               "load": {"grpc batching off x8": _cell(8, 700.0, 11.0),
                        "grpc batching on x8": _cell(8, 900.0, 9.0)}}
    results["analysis"] = load_matrix.analyse(results, 2000, lambda batch: 0.2)
    targets = results["analysis"]["targets"]
    assert targets["grpc_x32_on_over_off"] is None and targets["throughput_met"] is None
    assert targets["grpc_x1_p50_on_minus_off_ms"] is None and targets["latency_met"] is None
    assert results["analysis"]["breakdown"]["on"]["throughput_rps"] == 900.0
    table = load_matrix.markdown(results)
    assert "not measured: --concurrency has no 32" in table and "not measured: --concurrency has no 1" in table
