"""KerasTuner's Tuner, with every trial an MLflow run nested under its sweep's run.

`TrackedTrials` is a mixin for any KerasTuner Tuner (random, bayesian, hyperband): it opens
(or reopens) the trial's MLflow run, logs its hyperparameters and per-epoch metrics, backs
every epoch up so that an interrupted trial resumes where it stopped, and records how the
trial ended. The HyperModel it tunes is in pipeline/fitting/hypermodel.py.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras_tuner as kt
import numpy as np
import tensorflow as tf

# KerasTuner's best-epoch checkpoint has no public name; tuner.run_trial adds one per trial.
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch
from tensorflow.python.framework import ops as tf_ops

from pipeline.config import TrainConfig
from pipeline.fitting.callbacks import fit_callbacks, save_weights_atomically
from pipeline.fitting.hypermodel import shown
from pipeline.tracking import Run, Tracker

TRIAL_TAG = "kerastuner.trial_id"
INVALID = "invalid hyperparameters"


def resident_megabytes() -> float:
    """Return this process's resident memory (VmRSS) in MiB."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


@contextmanager
def released_custom_gradients() -> Iterator[None]:
    """Drop the gradient functions TensorFlow registers while the block traces, at its end.

    Keras' TF optimizer all-reduces gradients through tf.distribute even on one replica, and
    that all_reduce is a tf.custom_gradient: each traced train step registers a gradient
    function in TF's global registry that is never removed and keeps the whole traced graph
    alive (about 20 MiB per trial for the default CNN; tensorflow#61791). The backward pass
    was built inside the trace, so once the fit has ended nothing looks these entries up.
    """
    registry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", None)
    before = set(registry or ())
    try:
        yield
    finally:
        for name in [name for name in registry or () if name not in before]:
            if name.startswith("CustomGradient-"):
                del registry[name]


class TrackedTrials:
    """Mixin placed before a KerasTuner Tuner class; see the module docstring."""

    def __init__(self, *args, tracker: Tracker, parent_run_id: str, fit_config: TrainConfig,
                 examples_per_epoch: int, log=print, **kwargs):
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        # The training section as trials use it: monitor the objective, no early stopping.
        self.fit_config = fit_config
        self.examples_per_epoch = examples_per_epoch
        self.log = log
        self.trial_runs: dict[str, Run] = {}
        self._executions: dict[str, int] = defaultdict(int)
        self._trials_ended = 0
        super().__init__(*args, **kwargs)

    @property
    def objective_name(self) -> str:
        return self.oracle.objective.name

    def on_trial_begin(self, trial) -> None:
        super().on_trial_begin(trial)
        existing = self.tracker.find_child(self.parent_run_id, TRIAL_TAG, trial.trial_id)
        run = self.tracker.open_run(
            f"{self.project_name} · trial {trial.trial_id}", resume_run_id=existing, parent_run_id=self.parent_run_id,
            tags={TRIAL_TAG: trial.trial_id, "kerastuner.tuner_id": self.tuner_id})
        if existing is None:
            run.log_params(trial.hyperparameters.values)
        self.trial_runs[trial.trial_id] = run
        self._executions[trial.trial_id] = 0
        values = " ".join(f"{k}={shown(v)}" for k, v in trial.hyperparameters.values.items()
                          if not k.startswith("tuner/"))
        self.log(f"trial {trial.trial_id} {'resumed' if existing else 'started'} "
                 f"[{self.tuner_id}]: {values}")

    def _try_build(self, hp):
        try:
            return super()._try_build(hp)
        except (ValueError, TypeError) as error:  # e.g. more pooling than the image allows
            raise kt.errors.FailedTrialError(f"{INVALID}: {error}".splitlines()[0]) from error

    def _build_and_fit_model(self, trial, *args, **kwargs):
        execution = self._executions[trial.trial_id]
        self._executions[trial.trial_id] += 1
        run = self.trial_runs[trial.trial_id]
        finished = dict(run.metric_history("execution_objective"))
        if execution in finished:  # done before an interruption: keep its result
            return {self.objective_name: finished[execution]}
        prefix = f"execution{execution}/" if self.executions_per_trial > 1 else ""
        key = prefix + self.objective_name
        self._prepare_best_checkpoint(kwargs["callbacks"], run.metric_history(key))
        # Trials train as the final model will (same callbacks, same learning-rate schedule
        # over their epochs): a constant rate would rank values by how they do without it.
        kwargs["callbacks"] = kwargs["callbacks"] + fit_callbacks(
            self.fit_config.model_copy(update={"epochs": kwargs.get("epochs", 1)}),
            mlflow_run=run,
            backup_dir=Path(self.get_trial_dir(trial.trial_id)) / f"backup{execution}",
            base_learning_rate=self.hypermodel.base_learning_rate(trial.hyperparameters.values),
            examples_per_epoch=self.examples_per_epoch, metric_prefix=prefix)
        try:
            with released_custom_gradients():
                super()._build_and_fit_model(trial, *args, **kwargs)
        except tf.errors.ResourceExhaustedError as error:
            raise kt.errors.FailedTrialError(f"out of memory: {error.message[:300]}") from error
        losses = [value for _, value in run.metric_history(prefix + "loss")]
        if losses and not np.isfinite(losses[-1]):
            raise kt.errors.FailedTrialError(f"loss became {losses[-1]} at epoch {len(losses)}")
        history = [value for _, value in run.metric_history(key)]
        best = self._best(history)
        run.log_metrics({"execution_objective": best}, step=execution)
        return {self.objective_name: best}

    def _best(self, values: list[float]) -> float:
        pick = max if self.oracle.objective.direction == "max" else min
        return float(pick(values))

    def _prepare_best_checkpoint(self, callbacks: list, history: list[tuple[int, float]]) -> None:
        # KerasTuner's best-epoch checkpoint starts from scratch in each fit; after a resume,
        # start it from the best epoch already reached so that a worse one cannot replace it.
        # It overwrites its file in place; write it the crash-safe way instead.
        for callback in callbacks:
            if isinstance(callback, SaveBestEpoch):
                callback._save_model = lambda callback=callback: save_weights_atomically(
                    callback.model, callback.filepath)
                if history:
                    callback.best_value = self._best([value for _, value in history])

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        ended = self.oracle.get_trial(trial.trial_id)
        run = self.trial_runs.pop(trial.trial_id)
        status = str(ended.status).lower()
        if status == "failed" and INVALID in (ended.message or ""):
            status = "invalid"  # could not even be built: the values do not fit together
        run.set_tags({"trial_status": status})
        if ended.score is not None and np.isfinite(ended.score):
            run.log_metrics({f"final_{self.objective_name}": ended.score})
        error = (ended.message or "").strip().splitlines()[-1:] or None
        self.tracker.close_run(run, "FINISHED" if status == "completed" else "FAILED",
                               error[0] if error and status != "completed" else None)
        self._trials_ended += 1
        # Resident memory after each trial: it must not grow from trial to trial.
        Run(self.tracker.client, self.parent_run_id).log_metrics(
            {f"rss_mb.{self.tuner_id}": resident_megabytes()}, step=self._trials_ended)
        best = self.oracle.get_best_trials(1)
        best_text = (f"best {best[0].score:.4f} (trial {best[0].trial_id})"
                     if best and best[0].score is not None else "no completed trial yet")
        score = f"{self.objective_name} {ended.score:.4f}" if ended.score is not None else ""
        self.log(f"trial {trial.trial_id} {status} {score} | {best_text}")

    def mark_interrupted(self) -> None:
        """Mark the trial runs this process has open KILLED (Ctrl-C): the next run resumes them."""
        for run in self.trial_runs.values():
            self.tracker.close_run(run, "KILLED")
        self.trial_runs.clear()


TUNERS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization,
          "hyperband": kt.Hyperband}


def make_tuner(kind: str, *, max_trials: int | None, **kwargs) -> kt.Tuner:
    """Return a KerasTuner tuner of `kind` with MLflow-tracked trials; at most `max_trials`."""
    tuner_class = type(f"Tracked{TUNERS[kind].__name__}", (TrackedTrials, TUNERS[kind]), {})
    if kind != "hyperband":
        return tuner_class(max_trials=max_trials, **kwargs)
    tuner = tuner_class(**kwargs)
    # KerasTuner's Hyperband takes no trial budget, but the Oracle's create_trial stops the
    # search at `max_trials` for every oracle. A worker holds a client: set it on the oracle.
    getattr(tuner.oracle, "_oracle", tuner.oracle).max_trials = max_trials
    return tuner
