"""Ctrl-C/SIGTERM never land inside an MLflow write, so an interrupted run is always closed."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from pipeline import interrupts
from pipeline.tracking import Tracker


@pytest.fixture()
def installed():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_an_interrupt_outside_a_shield_is_raised_at_once(installed):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends


def test_an_interrupt_inside_a_shield_waits_for_its_end(installed):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.shielded():
            with interrupts.shielded():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                finished.append("inner")
            finished.append("outer")  # the inner block's end does not raise
    assert finished == ["inner", "outer"]
    with interrupts.shielded():  # nothing is left pending
        pass


def test_interrupted_runs_are_always_closed_killed(installed, tmp_path):
    # Signals at random moments while runs log metrics: unshielded, some land inside a
    # SQLite transaction and closing the run fails with "database is locked".
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "interrupts")
    quiet, stop = threading.Event(), threading.Event()

    def pester() -> None:
        while not stop.is_set():
            time.sleep(random.uniform(0.005, 0.03))
            if not quiet.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=pester, daemon=True)
    thread.start()
    statuses = []
    try:
        deadline = time.time() + 3
        while time.time() < deadline:
            quiet.clear()
            opened = []
            try:
                with tracker.run("pestered") as run:
                    opened.append(run.run_id)
                    for step in range(10_000):
                        run.log_metrics({"loss": 1 / (step + 1)}, step=step)
            except KeyboardInterrupt:
                pass
            quiet.set()
            try:  # a signal already on its way arrives here, before the check
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
            statuses += [tracker.status(run_id) for run_id in opened]
    finally:
        stop.set()
        quiet.set()
        thread.join()
    assert len(statuses) >= 5
    assert set(statuses) == {"KILLED"}
