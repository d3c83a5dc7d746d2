"""The lab's figures: plain matplotlib, one function per picture."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.lab.activations import ActivationResult  # noqa: E402
from pipeline.lab.adding import BASELINE_MSE, AddingResult  # noqa: E402

CELL_COLOURS = {"simple_rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def mse_by_length(results: list[AddingResult]) -> Figure:
    """Held-out MSE against T per cell, with the always-1.0 baseline and the 0.01 bar."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for cell in dict.fromkeys(result.cell for result in results):
        mine = sorted((r for r in results if r.cell == cell), key=lambda r: r.length)
        axis.plot([r.length for r in mine], [r.mse for r in mine], "-o",
                  color=CELL_COLOURS.get(cell), label=f"{cell} ({mine[0].parameters} weights)")
    axis.axhline(BASELINE_MSE, color="grey", linestyle="--", label="always 1.0 (MSE 0.167)")
    axis.axhline(0.01, color="black", linestyle=":", label="solved (MSE 0.01)")
    lengths = sorted({result.length for result in results})
    axis.set_xscale("log", base=2)
    axis.set_xticks(lengths, [str(length) for length in lengths])
    axis.set_yscale("log")
    axis.set_xlabel("sequence length T")
    axis.set_ylabel("held-out MSE (log)")
    axis.set_title("Adding problem: who remembers the first marked number?")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def adding_curves(results: list[AddingResult]) -> Figure:
    """Held-out MSE by training step, one panel per T."""
    lengths = sorted({result.length for result in results})
    figure, axes = plt.subplots(1, len(lengths), figsize=(4 * len(lengths), 3.6), squeeze=False)
    for axis, length in zip(axes[0], lengths):
        for result in (r for r in results if r.length == length):
            steps, mse = result.curve
            axis.plot(steps, mse, "-", color=CELL_COLOURS.get(result.cell), label=result.cell)
        axis.axhline(BASELINE_MSE, color="grey", linestyle="--")
        axis.set_yscale("log")
        axis.set_title(f"T = {length}")
        axis.set_xlabel("training step")
    axes[0][0].set_ylabel("held-out MSE (log)")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def hidden_gradients(result: AddingResult) -> Figure:
    """‖∂loss/∂h_t‖ over t for one cell, at initialisation and after training."""
    figure, axis = plt.subplots(figsize=(7, 4))
    hidden = result.monitor.hidden
    for epoch, label, style in ((0, "at initialisation", "--"),
                                (max(hidden), "after training", "-")):
        curve = hidden[epoch]
        axis.plot(np.arange(1, len(curve) + 1), curve, style, label=label,
                  color=CELL_COLOURS.get(result.cell))
    axis.set_yscale("log")
    axis.set_xlabel("time step t (the loss is computed after step T)")
    axis.set_ylabel("mean ‖∂loss/∂h_t‖ (log)")
    axis.set_title(f"{result.cell}, T = {result.length}: the gradient reaching each step")
    axis.legend()
    figure.tight_layout()
    return figure


def layer_norms_by_step(series: dict[str, list[tuple[int, dict[str, float]]]],
                        title: str) -> Figure:
    """Per-layer ‖∂loss/∂W‖ by training step, one panel per model."""
    figure, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.6), squeeze=False)
    for axis, (name, records) in zip(axes[0], series.items()):
        layers = list(records[0][1])
        colours = plt.cm.viridis(np.linspace(0, 1, len(layers)))
        for colour, layer in zip(colours, layers):
            axis.plot([step for step, _ in records], [norms[layer] for _, norms in records],
                      color=colour, label=layer)
        axis.set_yscale("log")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("training step")
    axes[0][0].set_ylabel("‖∂loss/∂W‖ (log)")
    axes[0][-1].legend(fontsize=6)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def first_step_norms(results: list[ActivationResult]) -> Figure:
    """‖∂loss/∂W‖ per layer at initialisation, input to output, one line per activation."""
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for result in results:
        names = list(result.first_step_norms)
        axis.plot(range(len(names)), list(result.first_step_norms.values()), "-o", markersize=3,
                  label=result.activation)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    axis.set_yscale("log")
    axis.set_ylabel("‖∂loss/∂W‖ at step 0 (log)")
    axis.set_title(f"{results[0].model.upper()}: the gradient reaching each layer before training")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def accuracy_curves(results: list[ActivationResult]) -> Figure:
    """Held-out accuracy by training step, one panel per model, one line per activation."""
    models = list(dict.fromkeys(result.model for result in results))
    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for axis, model in zip(axes[0], models):
        for result in (r for r in results if r.model == model):
            axis.plot(*result.curve, "-o", markersize=2, label=result.activation)
        axis.set_title(f"{model.upper()}: held-out accuracy by step")
        axis.set_xlabel("training step")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
