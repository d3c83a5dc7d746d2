"""What the lab's experiments share: a held-out learning curve by step, saving figures."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from pipeline.tracking import Run


class HeldOutCurve(keras.callbacks.Callback):
    """Record the held-out loss and metrics every `every` training steps, and at step 0.

    With `stop_below`, training stops once the held-out loss is below it: a solved problem
    does not need the rest of its budget.
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, every: int,
                 stop_below: float | None = None):
        super().__init__()
        self.inputs, self.targets, self.every = inputs, targets, every
        self.stop_below = stop_below
        self.curve: list[tuple[int, dict[str, float]]] = []
        self.step = 0

    def _measure(self) -> None:
        scores = self.model.evaluate(self.inputs, self.targets, verbose=0, batch_size=500,
                                     return_dict=True)
        self.curve.append((self.step, {name: float(value) for name, value in scores.items()}))

    def on_train_begin(self, logs=None) -> None:
        self._measure()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self._measure()
            if self.stop_below is not None and self.curve[-1][1]["loss"] < self.stop_below:
                self.model.stop_training = True

    def series(self, key: str) -> tuple[list[int], list[float]]:
        return [step for step, _ in self.curve], [scores[key] for _, scores in self.curve]


def save_figure(figure, run: Run, output_dir: Path, name: str) -> str:
    """Write `figure` as output_dir/name and log it to `run` (under lab/); return the path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / name
    figure.savefig(path, dpi=90)
    run.log_figure(figure, f"lab/{name}")
    return str(path)
