"""The default SQLite tracking store when several processes open it for the first time."""

from __future__ import annotations

import multiprocessing

from pipeline.tracking.tracker import Tracker

PROCESSES = 4


def open_tracker(uri: str, barrier, results) -> None:
    barrier.wait()  # every process reaches MLflow's table creation at the same moment
    try:
        results.put(Tracker(uri, "concurrent").experiment_id)
    except Exception as error:  # noqa: BLE001 - the failure itself is what the test reports
        results.put(f"{type(error).__name__}: {str(error).splitlines()[0]}")


def test_processes_creating_a_new_store_at_once_share_one_experiment(tmp_path):
    """Two `make train` on a fresh clone: MLflow creates the tables once, nobody fails."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=open_tracker, args=(uri, barrier, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    answers = [results.get(timeout=5) for _ in workers]
    assert len(set(answers)) == 1, answers
    assert answers[0].isdigit(), answers
