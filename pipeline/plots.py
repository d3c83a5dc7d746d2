"""Figures logged to MLflow: learning curves and the confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(history: dict[str, list[tuple[int, float]]]) -> Figure:
    """Return loss and accuracy per epoch, train against validation, and the learning rate."""
    panels = [("loss", "loss"), ("accuracy", "accuracy"), ("learning_rate", "learning rate")]
    panels = [(key, title) for key, title in panels if history.get(key)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels):
        for name, style in ((key, "-o"), (f"val_{key}", "--o")):
            if history.get(name):
                steps, values = zip(*history[name])
                axis.plot(steps, values, style, markersize=3, label=name)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(confusion: np.ndarray, class_names: tuple[str, ...]) -> Figure:
    """Return the confusion matrix, rows normalised to recall, with counts in the cells."""
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.nan_to_num(confusion / confusion.sum(axis=1, keepdims=True))
    image = axis.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for (row, column), count in np.ndenumerate(confusion):
            axis.text(column, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if recall[row, column] > 0.5 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of true class")
    figure.tight_layout()
    return figure
