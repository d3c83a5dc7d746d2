"""`train.gradient_monitor`: a Keras callback logging backpropagation to MLflow as it trains.

On a fixed sample of training examples it logs, as MLflow metrics:
- `grad_norm/<layer>`: ‖∂loss/∂W‖ per layer, at step = training batches seen, for the first
  `first_steps` batches (where sigmoid and tanh stacks show their vanishing gradient
  before the optimiser has moved anything) and at every epoch's end;
- for a model with a recurrent layer, `grad_h/epoch_<n>`: ‖∂loss/∂h_t‖ with step = t, at
  initialisation (epoch_0) and after each epoch, and `grad_h/first_over_last` per epoch:
  the share of the gradient at the last step that still reaches the first one.
The callback keeps what it logged (`layer_norms`, `hidden`), so code that trains in
process (the lab) can plot it without reading MLflow back.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from pipeline.fitting.gradients import first_recurrent, hidden_state_gradients, layer_gradient_norms
from pipeline.tracking import Run


class GradientMonitor(keras.callbacks.Callback):
    """Log per-layer gradient norms and ∂loss/∂h_t over t (see the module docstring)."""

    def __init__(self, mlflow_run: Run | None, inputs: np.ndarray, labels: np.ndarray, *,
                 first_steps: int = 10, prefix: str = ""):
        super().__init__()
        self.mlflow_run = mlflow_run
        self.inputs, self.labels = inputs, labels
        self.first_steps = first_steps
        self.prefix = prefix
        self.step = 0
        self.layer_norms: list[tuple[int, dict[str, float]]] = []
        self.hidden: dict[int, np.ndarray] = {}

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self.mlflow_run is not None:
            self.mlflow_run.log_metrics({self.prefix + key: value for key, value in metrics.items()},
                                       step=step)

    def _layers(self) -> None:
        norms = layer_gradient_norms(self.model, self.inputs, self.labels)
        self.layer_norms.append((self.step, norms))
        self._log({f"grad_norm/{name}": value for name, value in norms.items()}, self.step)

    def _hidden(self, epoch: int) -> None:
        if first_recurrent(self.model) is None:
            return
        per_step = hidden_state_gradients(self.model, self.inputs, self.labels)
        self.hidden[epoch] = per_step
        if self.mlflow_run is not None:
            self.mlflow_run.log_series(f"{self.prefix}grad_h/epoch_{epoch}", per_step.tolist(),
                                       first_step=1)
        ratio = float(per_step[0] / per_step[-1]) if per_step[-1] > 0 else 0.0
        self._log({"grad_h/first_over_last": ratio}, epoch)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._layers()
        self._hidden(0)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        if self.step <= self.first_steps:
            self._layers()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.step > self.first_steps:
            self._layers()
        self._hidden(epoch + 1)
