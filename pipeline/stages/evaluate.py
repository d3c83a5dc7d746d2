"""The evaluation stage: a trained model on the test split, its metrics and figures in MLflow.

`run` logs `test_*` metrics (Keras' compiled metrics plus macro F1), the confusion matrix,
a per-class report (Markdown and JSON, worst F1 first) and the learning curves of the run.
A metric added to the model's `compile` appears here as `test_<name>` by itself; one that
needs all predictions at once (like macro F1) belongs in `classification_report`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from pipeline.reports import plots
from pipeline.stages.data import Datasets
from pipeline.tracking import Run


@dataclass(frozen=True)
class Report:
    confusion: np.ndarray  # [true class, predicted class] counts
    per_class: list[dict[str, float | int | str]]
    accuracy: float
    macro_f1: float

    def markdown(self) -> str:
        """Return the per-class table as Markdown, worst F1 first (what to look at)."""
        lines = ["| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for row in sorted(self.per_class, key=lambda row: row["f1"]):
            lines.append(f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | "
                         f"{row['f1']:.4f} | {row['support']} |")
        lines.append(f"\naccuracy {self.accuracy:.4f}, macro F1 {self.macro_f1:.4f}")
        return "\n".join(lines) + "\n"


def classification_report(labels: np.ndarray, probabilities: np.ndarray,
                          class_names: tuple[str, ...]) -> Report:
    """Return the confusion matrix and per-class precision, recall, F1 and support."""
    predicted = probabilities.argmax(axis=-1)
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(true_positive / predicted_count)
        recall = np.nan_to_num(true_positive / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    per_class = [
        {"class": name, "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    ]
    return Report(confusion=confusion, per_class=per_class,
                  accuracy=float(true_positive.sum() / max(1, len(labels))),
                  macro_f1=float(f1.mean()))


def run(model: keras.Model, data: Datasets, mlflow_run: Run) -> dict[str, float]:
    """Log test metrics, confusion matrix, per-class report and curves; return the metrics."""
    scores = model.evaluate(data.test, verbose=0, return_dict=True)
    probabilities = np.asarray(model.predict(data.test, verbose=0))
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in data.test])
    report = classification_report(labels, probabilities, data.class_names)
    metrics = {f"test_{name}": float(value) for name, value in scores.items()}
    metrics["test_macro_f1"] = report.macro_f1
    mlflow_run.log_metrics(metrics)
    mlflow_run.log_text(report.markdown(), "evaluation/per_class_report.md")
    mlflow_run.log_dict({"per_class": report.per_class, "accuracy": report.accuracy,
                         "macro_f1": report.macro_f1,
                         "confusion_matrix": report.confusion.tolist(),
                         "class_names": list(data.class_names)},
                        "evaluation/per_class_report.json")
    mlflow_run.log_figure(plots.confusion_matrix(report.confusion, data.class_names),
                          "evaluation/confusion_matrix.png")
    history = {key: mlflow_run.metric_history(key) for key in
               ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate")}
    mlflow_run.log_figure(plots.learning_curves(history), "evaluation/learning_curves.png")
    return metrics
