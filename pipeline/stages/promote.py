"""Promotion: the registered `challenger` replaces the `champion` only if it is better.

Both SavedModels (the exported versions, as TF Serving would load them) are evaluated on the
same test split; the challenger takes the `champion` alias when its test accuracy beats the
champion's by more than `tune.promotion_margin`. The first challenger becomes champion. The
decision is printed, logged as an MLflow run, and tagged on the model versions.

Before any of that, the challenger passes a gate (serving/release/gate.py): served alone by a real
server process, it must answer test inputs and its warmup requests over gRPC and REST as
the in-process SavedModel does, within a latency budget. A failed gate moves nothing.
The alias moves through `registry.move_aliases`: a running `make serve` server follows
live, before the registry changes. The champion it replaces is pushed on the registered
model's `champion_history` tag, which `rollback` pops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.config import ConfigError, RunConfig
from pipeline.stages import registry
from pipeline.stages.data import Datasets, make_datasets
from pipeline.tracking import Tracker
from serving.release import gate
from serving.release.rollout import RolloutError

HISTORY_TAG = "champion_history"


class PromotionError(RuntimeError):
    """A promotion or rollback that moved nothing: the gate failed or the server refused."""


@dataclass(frozen=True)
class Promotion:
    model_name: str
    challenger: int
    champion_before: int | None
    champion_after: int
    promoted: bool
    reason: str
    scores: dict[int, dict[str, float]]
    gate: gate.GateReport | None = None


def evaluate_saved_model(path: Path, data: Datasets) -> dict[str, float]:
    """Return test accuracy and loss of an exported SavedModel's `serving_default`."""
    predict = tf.saved_model.load(str(path)).signatures["serving_default"]
    correct, loss, count = 0, 0.0, 0
    for inputs, labels in data.test:
        probabilities = predict(**{data.input_spec.name: inputs})["probabilities"].numpy()
        labels = labels.numpy()
        correct += int((probabilities.argmax(axis=-1) == labels).sum())
        picked = probabilities[np.arange(len(labels)), labels]
        loss -= float(np.log(np.clip(picked, 1e-7, 1.0)).sum())
        count += len(labels)
    return {"test_accuracy": correct / count, "test_loss": loss / count}


def _version_path(config: RunConfig, model_name: str, version: int) -> Path:
    path = config.export.base_dir / model_name / str(version)
    if not (path / "saved_model.pb").exists():
        raise ConfigError(f"{path} has no SavedModel; promotion evaluates the exported "
                          f"versions under {config.export.base_dir}/")
    return path


def decide(challenger: float, champion: float, margin: float) -> tuple[bool, str]:
    """Return whether the challenger wins, and why, from the two test accuracies."""
    gain = challenger - champion
    if gain > margin:
        return True, f"challenger better by {gain:+.4f} (margin {margin:.4f})"
    return False, f"challenger not better by more than the margin: {gain:+.4f} <= {margin:.4f}"


def run(config: RunConfig, model_name: str | None = None, log=print) -> Promotion:
    """Gate the challenger of `model_name`, compare it with the champion, move `champion` if earned."""
    name = model_name or config.name
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    challenger = tracker.version_for_alias(name, "challenger")
    if challenger is None:
        raise ConfigError(f"model {name!r} has no version with the alias 'challenger' in "
                          f"{tracker.tracking_uri}; `make tune` registers one")
    champion = tracker.version_for_alias(name, "champion")
    data = make_datasets(config.data, config.seed)
    report = None
    if champion != challenger:
        report = run_gate(config, name, _version_path(config, name, challenger), data, log)
    versions = [challenger] + ([champion] if champion not in (None, challenger) else [])
    scores = {v: evaluate_saved_model(_version_path(config, name, v), data) for v in versions}
    if champion is None:
        promoted, reason = True, "no champion yet: the first challenger becomes champion"
    elif champion == challenger:
        promoted, reason = False, "the challenger already is the champion"
    else:
        promoted, reason = decide(scores[challenger]["test_accuracy"],
                                  scores[champion]["test_accuracy"], config.tune.promotion_margin)
    after = challenger if promoted else champion
    if promoted:
        _move_champion(config, tracker, name, challenger, log)
        if champion is not None:
            tracker.set_model_tag(name, HISTORY_TAG, ",".join(
                str(v) for v in [*champion_history(tracker, name), champion]))
    with tracker.run(f"promote-{name}", tags={"model_name": name, "decision":
                                              "promoted" if promoted else "kept"}) as mlflow_run:
        mlflow_run.log_params({"challenger_version": challenger, "champion_version": champion,
                               "margin": config.tune.promotion_margin})
        for version, values in scores.items():
            role = "challenger" if version == challenger else "champion"
            mlflow_run.log_metrics({f"{role}_{key}": value for key, value in values.items()})
        if report is not None:
            mlflow_run.log_metrics({"gate_max_abs_diff": report.max_abs_diff,
                                    **{f"gate_p99_ms_{p}": v for p, v in report.p99_ms.items()}})
        mlflow_run.set_tags({"reason": reason})
    tracker.tag_version(name, challenger, "promotion", "promoted" if promoted else f"kept v{champion}")
    log(f"{name}: {'PROMOTED' if promoted else 'KEPT'} champion = version {after} ({reason})")
    for version, values in scores.items():
        log(f"  version {version}: test_accuracy {values['test_accuracy']:.4f}, "
            f"test_loss {values['test_loss']:.4f}")
    return Promotion(name, challenger, champion, after, promoted, reason, scores, report)


def run_gate(config: RunConfig, name: str, path: Path, data: Datasets, log=print) -> gate.GateReport:
    """Serve the challenger alone in a server process and check its answers; raise if it fails."""
    inputs, _ = data.examples("test", config.tune.gate_examples)
    log(f"gate: serving {name} version {path.name} alone in a model server ...")
    try:
        report = gate.check(name, path, {data.input_spec.name: inputs},
                            tolerance=config.tune.gate_tolerance,
                            p99_budget_ms=config.tune.gate_p99_ms)
    except gate.GateError as error:
        raise PromotionError(f"gate failed, nothing promoted: {error}") from None
    log(f"gate: passed, {report.requests} answers over gRPC and REST equal in-process "
        f"(max |diff| {report.max_abs_diff:.2g} <= {config.tune.gate_tolerance:g}), p99 "
        + ", ".join(f"{p} {v:.1f} ms" for p, v in report.p99_ms.items())
        + f" <= {config.tune.gate_p99_ms:g} ms")
    return report


def _move_champion(config: RunConfig, tracker: Tracker, name: str, version: int, log) -> None:
    try:
        registry.move_aliases(config, tracker, name, {"champion": version}, log)
    except RolloutError as error:
        raise PromotionError(f"{error}; the registry and the served labels are unchanged") from None


def champion_history(tracker: Tracker, name: str) -> list[int]:
    """Return the previous champions of `name`, oldest first (the registered model's tag)."""
    text = tracker.model_tag(name, HISTORY_TAG) or ""
    return [int(item) for item in text.split(",") if item.strip().isdigit()]


def rollback(config: RunConfig, model_name: str | None = None, log=print) -> int:
    """Give `champion` back to the previous champion (live on a running server); return it."""
    name = model_name or config.name
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    history = champion_history(tracker, name)
    current = tracker.version_for_alias(name, "champion")
    if not history:
        raise PromotionError(f"model {name!r} has no previous champion to roll back to (its "
                             f"{HISTORY_TAG!r} tag in {tracker.tracking_uri} is empty)")
    previous = history[-1]
    _version_path(config, name, previous)
    _move_champion(config, tracker, name, previous, log)
    tracker.set_model_tag(name, HISTORY_TAG, ",".join(str(v) for v in history[:-1]))
    if current is not None:
        tracker.tag_version(name, current, "promotion", f"rolled back to v{previous}")
    log(f"{name}: ROLLED BACK champion = version {previous} (was {current})")
    return previous
