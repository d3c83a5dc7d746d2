"""`make tune-batching`: the grid, the SLO choice, the parameters file, and a real small sweep."""

from __future__ import annotations

import json

import pytest

from serving.bench import tune_batching
from serving.bench.load import LoadResult
from serving.server.management.batching.options import BatchingOptions


def result(clients, rps, p99, errors=0):
    return LoadResult("grpc", clients, 1.0, int(rps), errors, rps, p99 / 2, p99, 0.1)


def test_grid_covers_every_swept_value_and_files_parse_with_the_real_proto(tmp_path):
    args = tune_batching.parse_args(["--max-batch-sizes", "8,24", "--batch-timeouts-micros", "500",
                                     "--num-batch-threads", "1,2", "--max-enqueued-batches", "4",
                                     "--allowed-batch-sizes", "none,pow2"])
    candidates = tune_batching.grid(args)
    assert len(candidates) == 8
    assert {candidate.allowed_batch_sizes for candidate in candidates} == {(), (1, 2, 4, 8), (1, 2, 4, 8, 16, 24)}
    for candidate in candidates:
        path = tmp_path / f"{candidate.name}.txt"
        path.write_text(candidate.to_text())
        options = BatchingOptions.from_file(path)
        assert (options.max_batch_size, options.batch_timeout_micros, options.num_batch_threads,
                options.max_enqueued_batches, options.allowed_batch_sizes) == (
            candidate.max_batch_size, 500, candidate.num_batch_threads, 4, candidate.allowed_batch_sizes)


def test_score_keeps_the_fastest_measurement_inside_the_slo_without_errors():
    results = [result(4, 800, 5), result(16, 1500, 19), result(32, 1900, 35), result(8, 2000, 10, errors=3)]
    assert tune_batching.score(results, 20.0).clients == 16
    assert tune_batching.score(results, 1.0) is None


def test_bad_arguments_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        tune_batching.parse_args(["--max-batch-sizes", "8,x"])
    assert "--max-batch-sizes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tune_batching.parse_args(["--slo-ms", "0"])
    assert "--slo-ms must be positive" in capsys.readouterr().err


def test_small_sweep_logs_mlflow_runs_and_writes_the_chosen_parameters(tmp_path):
    from pipeline.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = tune_batching.main(["--demo", "--max-batch-sizes", "8", "--batch-timeouts-micros", "1000",
                               "--num-batch-threads", "1", "--concurrency", "2", "--seconds", "0.4",
                               "--slo-ms", "5000", "--client-processes", "1", "--tracking-uri", uri,
                               "--output-dir", str(tmp_path / "out"), "--binary", ""])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "batching_sweep.json").read_text())
    assert summary["chosen"] == "b8-t1000us-th1-q100"
    assert [row["name"] for row in summary["rows"]] == ["batching-off", "b8-t1000us-th1-q100"]
    options = BatchingOptions.from_file(tmp_path / "out" / "batching_parameters.txt")
    assert options == BatchingOptions(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1,
                                      max_enqueued_batches=100, thread_pool_name="batch_threads")
    assert (tmp_path / "out" / "batching_sweep.png").read_bytes()[:4] == b"\x89PNG"
    tracker = Tracker(uri, tune_batching.EXPERIMENT)
    parent = tracker.client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["chosen"] == "b8-t1000us-th1-q100"
    children = tracker.children(summary["run_id"])
    assert sorted(child.info.run_name for child in children) == ["b8-t1000us-th1-q100", "batching-off"]
    assert all(child.info.status == "FINISHED" and child.data.metrics["throughput_rps"] > 0 for child in children)
    artifacts = {item.path for item in tracker.client.list_artifacts(summary["run_id"])}
    assert {"batching_sweep.png", "batching_parameters.txt", "batching_sweep.md"} <= artifacts
