"""`make bench-tune`: resident memory across many small trials of one sweep.

Runs a random search of `--trials` small trials (a subset of the data, one epoch each) in
this process, with the tuning stage's tracking, into a scratch MLflow store and project
folder, and reads back the resident memory (VmRSS) logged after every trial. Each trial
builds its model after `keras.backend.clear_session()`; the figure to watch is the growth
from the first trials to the last, which must level off rather than climb with the count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pipeline.bench.common import overrides
from pipeline.kernels import prefer_onednn
from serving.common import write_report


def run(config_path: Path, trials: int, examples: int, overrides: dict,
        output_dir: Path) -> dict:
    """Run the sweep described above; write JSON and Markdown; return the figures."""
    from pipeline.config import load_config
    from pipeline.stages import tune
    from pipeline.tracking import Run, Tracker, scratch_dir

    with scratch_dir() as scratch:
        config = load_config(config_path, {
            "name": "bench_tune", "tracking.tracking_uri": f"sqlite:///{scratch / 'mlflow.db'}",
            "tracking.experiment": "bench-tune", "tune.tuner": "random",
            "tune.max_trials": trials, "tune.epochs": 1, "tune.trial_train_examples": examples,
            "tune.directory": str(scratch / "tuning"), "tune.final": "restore",
            "tune.max_consecutive_failed_trials": trials, "tune.workers": 1,
            "export.base_dir": str(scratch / "saved_models"), "train.insights": False,
            **overrides})
        result = tune.run(config, log=lambda line: None)
        tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
        rss = [value for _, value in Run(tracker.client, result.parent_run_id)
               .metric_history("rss_mb.tuner0")]
    quarter = max(1, len(rss) // 4)
    figures = {
        "config": str(config_path), "trials": len(rss), "train_examples_per_trial": examples,
        "cpu_count": os.cpu_count(),
        "rss_mb_after_each_trial": [round(value, 1) for value in rss],
        "rss_mb_first_trial": round(rss[0], 1), "rss_mb_last_trial": round(rss[-1], 1),
        "rss_mb_peak": round(max(rss), 1),
        # Growth per trial over the second half: ~0 when memory has levelled off.
        "rss_mb_growth_per_trial_second_half": round(float(np.polyfit(
            range(len(rss) // 2, len(rss)), rss[len(rss) // 2:], 1)[0]), 2),
        "rss_mb_mean_first_quarter": round(float(np.mean(rss[:quarter])), 1),
        "rss_mb_mean_last_quarter": round(float(np.mean(rss[-quarter:])), 1),
    }
    _write(figures, output_dir)
    return figures


def _write(figures: dict, output_dir: Path) -> None:
    lines = [f"Resident memory over {figures['trials']} trials of one sweep "
             f"({figures['train_examples_per_trial']} training examples, 1 epoch per trial; "
             f"{figures['cpu_count']} CPUs)", "",
             "| after trial | RSS MiB |", "|---:|---:|"]
    lines += [f"| {index} | {value:,.1f} |"
              for index, value in enumerate(figures["rss_mb_after_each_trial"], start=1)]
    lines += ["", f"First quarter mean {figures['rss_mb_mean_first_quarter']:,.1f} MiB, last "
              f"quarter mean {figures['rss_mb_mean_last_quarter']:,.1f} MiB, growth per trial "
              f"over the second half {figures['rss_mb_growth_per_trial_second_half']:+.2f} MiB."]
    write_report(output_dir, "bench_tune_memory", figures, "\n".join(lines) + "\n")


def main(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("configs/fashion_cnn.yaml"),
    trials: Annotated[int, typer.Option(help="Small trials to run.")] = 20,
    examples: Annotated[int, typer.Option(help="Training examples per trial.")] = 2000,
    output_dir: Annotated[Path, typer.Option()] = Path("bench/results"),
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
) -> None:
    """Measure resident memory across the trials of one sweep."""
    run(config, trials, examples, overrides(set_), output_dir)


if __name__ == "__main__":
    prefer_onednn()  # before TensorFlow is imported, as `python -m pipeline` does
    typer.run(main)
