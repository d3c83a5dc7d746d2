"""Classification metrics on a held-out split: confusion matrix and per-class report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
