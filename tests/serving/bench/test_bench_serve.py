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
