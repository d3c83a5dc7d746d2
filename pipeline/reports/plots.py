"""Figures logged to MLflow: learning curves, the confusion matrix, hyperparameter effects."""

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
    if not panels:  # a restored model: its epochs were logged by the trial that trained it
        figure, axis = plt.subplots(figsize=(5, 1.5))
        axis.axis("off")
        axis.text(0.5, 0.5, "no epochs trained in this run", ha="center", va="center")
        return figure
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


def hyperparameter_effects(rows: list[dict], names: list[str], objective: str) -> Figure:
    """Return one panel per hyperparameter: its value in each trial against the objective."""
    columns = min(4, max(1, len(names)))
    lines = max(1, -(-len(names) // columns))
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines),
                                squeeze=False)
    scored = [row for row in rows if isinstance(row.get("score"), float)]
    for axis, name in zip(axes.ravel(), names):
        values = [row.get(name) for row in scored]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            positions = values
        else:
            labels = sorted({str(v) for v in values})
            positions = [labels.index(str(v)) for v in values]
            axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        axis.scatter(positions, [row["score"] for row in scored], alpha=0.75)
        if name == "learning_rate" and numeric:
            axis.set_xscale("log")
        axis.set_title(name)
        axis.set_ylabel(objective)
        axis.grid(alpha=0.3)
    for axis in axes.ravel()[len(names):]:
        axis.axis("off")
    figure.suptitle(f"Each hyperparameter against {objective}, one point per trial")
    figure.tight_layout()
    return figure
