"""Long memory: the adding problem (Hochreiter & Schmidhuber, 1997) for SimpleRNN, LSTM, GRU.

Each example is T steps of two features: a value drawn from U(0, 1) and a marker that is 1
at exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the two
marked values. Always answering 1.0 (the mean) gives an MSE of 1/6 ≈ 0.167: a model near
that has learnt nothing. To solve it the model must carry the first marked value across at
least T/2 steps, which is exactly where the gradient of a SimpleRNN vanishes: ∂loss/∂h_t
shrinks geometrically as t moves away from the end, so the weights never hear about the
first marker. LSTM and GRU carry their state additively through gates.

The three cells get the same parameter budget (units chosen to match it), the same data,
seed, optimiser and number of training steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import keras
import numpy as np

from models.blocks import recurrent_layer
from pipeline.fitting.gradient_monitor import GradientMonitor
from pipeline.lab.common import HeldOutCurve

BASELINE_MSE = 1.0 / 6.0  # the variance of U(0,1) + U(0,1): the MSE of always answering 1.0
SOLVED_MSE = 0.01  # well under the baseline: the model reads both marked values


def adding_problem(count: int, length: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Return inputs [count, length, 2] (value, marker) and targets [count, 1]."""
    values = rng.uniform(0.0, 1.0, (count, length)).astype("float32")
    markers = np.zeros((count, length), dtype="float32")
    rows = np.arange(count)
    first = rng.integers(0, length // 2, count)
    second = rng.integers(length // 2, length, count)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second])[:, np.newaxis]
    return np.stack([values, markers], axis=-1), targets


def build(cell: str, length: int, units: int, learning_rate: float) -> keras.Model:
    """Return a compiled regressor: one recurrent layer of `units`, then one linear output."""
    model = keras.Sequential([
        keras.Input((length, 2), name="sequence"),
        recurrent_layer(cell, units, name=cell),
        keras.layers.Dense(1, name="sum"),
    ], name=f"adding_{cell}")
    # Clipping keeps an exploding gradient (the other face of a SimpleRNN) from one wild step.
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss="mse")
    return model


@functools.cache
def units_for_budget(cell: str, budget: int) -> int:
    """Return the number of units whose model has the parameter count closest to `budget`."""
    def count(units: int) -> int:
        return build(cell, 4, units, 1e-3).count_params()

    low, high = 1, 512  # the count grows with units: bisect for the last one within budget
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if count(middle) <= budget else (low, middle - 1)
    return min((low, low + 1), key=lambda units: (abs(count(units) - budget), units))


@dataclass(frozen=True)
class AddingResult:
    cell: str
    length: int
    units: int
    parameters: int
    mse: float  # on held-out sequences
    curve: tuple[list[int], list[float]]  # training steps, held-out MSE
    seconds: float
    steps: int  # trained: the budget, or fewer when it was solved early
    monitor: GradientMonitor | None  # ∂loss/∂h_t at init and after training, if measured

    @property
    def solved(self) -> bool:
        return self.mse < SOLVED_MSE


def train_one(cell: str, length: int, *, budget: int, steps: int, batch_size: int,
              learning_rate: float, seed: int, monitor: bool, monitor_steps: int = 10
              ) -> AddingResult:
    """Train one cell on the adding problem of length `length`; return its held-out MSE."""
    import time

    rng = np.random.default_rng(seed + length)
    inputs, targets = adding_problem(steps * batch_size, length, rng)
    held_inputs, held_targets = adding_problem(1000, length, np.random.default_rng(seed + 1))
    keras.utils.set_random_seed(seed)
    units = units_for_budget(cell, budget)
    model = build(cell, length, units, learning_rate)
    curve = HeldOutCurve(held_inputs, held_targets, every=min(100, max(1, steps // 10)),
                         stop_below=SOLVED_MSE / 5)
    callbacks: list[keras.callbacks.Callback] = [curve]
    gradient_monitor = None
    if monitor:
        gradient_monitor = GradientMonitor(None, held_inputs[:64], held_targets[:64],
                                           first_steps=monitor_steps)
        callbacks.append(gradient_monitor)
    started = time.perf_counter()
    model.fit(inputs, targets, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
              callbacks=callbacks)
    seconds = time.perf_counter() - started
    mse = float(model.evaluate(held_inputs, held_targets, verbose=0, batch_size=500))
    return AddingResult(cell, length, units, model.count_params(), mse, curve.series("loss"),
                        seconds, curve.step, gradient_monitor)
