"""Promotion: the registered `challenger` replaces the `champion` only if it is better.

Both SavedModels (the exported versions, as TF Serving would load them) are evaluated on the
same test split; the challenger takes the `champion` alias when its test accuracy beats the
champion's by more than `tune.promotion_margin`. The first challenger becomes champion. The
decision is printed, logged as an MLflow run, and tagged on the model versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.config import ConfigError, RunConfig
from pipeline.stages.data import Datasets, make_datasets
from pipeline.tracking import Tracker


@dataclass(frozen=True)
class Promotion:
    model_name: str
    challenger: int
    champion_before: int | None
    champion_after: int
    promoted: bool
    reason: str
    scores: dict[int, dict[str, float]]


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
    """Compare challenger and champion of `model_name` and move `champion` if earned."""
    name = model_name or config.name
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    challenger = tracker.version_for_alias(name, "challenger")
    if challenger is None:
        raise ConfigError(f"model {name!r} has no version with the alias 'challenger' in "
                          f"{tracker.tracking_uri}; `make tune` registers one")
    champion = tracker.version_for_alias(name, "champion")
    data = make_datasets(config.data, config.seed)
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
        tracker.set_alias(name, "champion", challenger)
    with tracker.run(f"promote-{name}", tags={"model_name": name, "decision":
                                              "promoted" if promoted else "kept"}) as mlflow_run:
        mlflow_run.log_params({"challenger_version": challenger, "champion_version": champion,
                               "margin": config.tune.promotion_margin})
        for version, values in scores.items():
            role = "challenger" if version == challenger else "champion"
            mlflow_run.log_metrics({f"{role}_{key}": value for key, value in values.items()})
        mlflow_run.set_tags({"reason": reason})
    tracker.tag_version(name, challenger, "promotion", "promoted" if promoted else f"kept v{champion}")
    log(f"{name}: {'PROMOTED' if promoted else 'KEPT'} champion = version {after} ({reason})")
    for version, values in scores.items():
        log(f"  version {version}: test_accuracy {values['test_accuracy']:.4f}, "
            f"test_loss {values['test_loss']:.4f}")
    return Promotion(name, challenger, champion, after, promoted, reason, scores)
