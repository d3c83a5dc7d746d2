"""The end of a sweep: the table of trials, the best values, and the best model as challenger.

Everything here runs in the chief (or the only) process once the search has ended: the
parent MLflow run gets the trial table (Markdown and JSON) and a figure of each
hyperparameter against the objective; the best trial's values are retrained on the full
data (`tune.final: retrain`) or its best checkpoint restored (`restore`), evaluated,
exported, registered, and given the registry alias `challenger` (a running `make serve`
loads it first and labels it `canary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ModelConfig, RunConfig
from pipeline.fitting.hypermodel import shown
from pipeline.reports import plots
from pipeline.stages import publish, registry, train
from pipeline.stages.data import make_datasets
from pipeline.tracking import Run, Tracker
from serving.release.rollout import RolloutError


@dataclass(frozen=True)
class TuneResult:
    parent_run_id: str
    best_hyperparameters: dict[str, Any]
    best_score: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    final: publish.TrainResult | None = None


def trial_rows(tuner) -> list[dict[str, Any]]:
    """Return one row per trial: id, status, score, then its hyperparameter values."""
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        rows.append({"trial": trial_id, "status": str(trial.status).lower(),
                     "score": trial.score,
                     **{k: v for k, v in trial.hyperparameters.values.items()
                        if not k.startswith("tuner/")}})
    return rows


def _table(rows: list[dict[str, Any]], objective: str) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    header = [objective if column == "score" else column for column in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if c == "score" and row[c] is not None
                 else shown(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def conclude(config: RunConfig, tuner, tracker: Tracker, parent: Run, project: Path,
             log) -> TuneResult:
    """Report the trials on the parent run, publish the best model, close the sweep."""
    rows = trial_rows(tuner)
    objective = config.tune.objective
    table = _table(rows, objective)
    log(table)
    parent.log_text(table, "sweep/trials.md")
    parent.log_dict({"trials": rows}, "sweep/trials.json")
    names = [name for name in rows[0] if name not in ("trial", "status", "score")] if rows else []
    parent.log_figure(plots.hyperparameter_effects(rows, names, objective),
                      "sweep/hyperparameters.png")
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        raise RuntimeError(f"sweep {config.name}: no trial completed; see the trial runs")
    best = best_trials[0]
    values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    parent.log_params({f"best.{name}": value for name, value in values.items()})
    parent.log_metrics({f"best_{objective}": best.score, "trials": len(rows)})
    parent.set_tags({"best_trial": best.trial_id})
    shown_values = ", ".join(f"{name}={shown(value)}" for name, value in values.items())
    log(f"best trial {best.trial_id}: {objective} {best.score:.4f} | {shown_values}")
    final = _final_model(config, tuner, best.trial_id, values, tracker, parent, project, log)
    if final.model_version is not None:
        _set_challenger(config, tracker, final.model_version, log)
        log(f"registered {config.name} version {final.model_version} as challenger "
            f"(test_accuracy {final.metrics.get('test_accuracy', float('nan')):.4f})")
    parent.log_metrics({f"final_{key}": value for key, value in final.metrics.items()})
    tracker.close_run(parent, "FINISHED")
    return TuneResult(parent.run_id, values, best.score, rows, final)


def _set_challenger(config: RunConfig, tracker: Tracker, version: int, log) -> None:
    """Give `version` the alias `challenger`; a running `make serve` loads it as `canary` first."""
    try:
        registry.move_aliases(config, tracker, config.name, {"challenger": version}, log)
    except RolloutError as error:  # the sweep's result is kept whatever the server says
        tracker.set_alias(config.name, "challenger", version)
        log(f"warning: {error}; version {version} is the challenger in the registry, and the "
            "server will load it at the next promotion, rollback or `make serve`")


def _final_model(config: RunConfig, tuner, trial_id: str, values: dict[str, Any],
                 tracker: Tracker, parent: Run, project: Path, log) -> publish.TrainResult:
    """Retrain the best hyperparameters on the full data, or restore the best checkpoint."""
    params = {**config.model.params, **values}
    best_config = config.model_copy(update={
        "model": ModelConfig.model_validate({"family": config.model.family, **params}),
        # Its backup lives with the sweep's project: OVERWRITE=1 removes it with the search,
        # and it never touches a `make train` of the same name under train.checkpoint_dir.
        "train": config.train.model_copy(update={
            "epochs": config.tune.retrain_epochs or config.train.epochs,
            "checkpoint_dir": project / "final"})})
    run_name = f"{config.name} · {config.model.family} · best trial {trial_id}"
    if config.tune.final == "retrain":
        log(f"retraining the best model for {best_config.train.epochs} epochs on the full data")
        return train.run(best_config, log=log, parent_run_id=parent.run_id,
                         run_name=f"{run_name} retrained")
    model = tuner.get_best_models(1)[0]
    data = make_datasets(config.data, config.seed)
    with tracker.run(f"{run_name} restored", parent_run_id=parent.run_id,
                     tags={"model_name": config.name}) as mlflow_run:
        mlflow_run.log_params(best_config.flat())
        return publish.run(model, data, best_config, tracker, mlflow_run, log)
