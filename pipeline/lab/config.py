"""The lab's settings: one frozen, validated object; `LabConfig.quick()` is the test preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.blocks import Activation

Experiment = Literal["adding", "activations", "representations"]
Cell = Literal["simple_rnn", "lstm", "gru"]
PositiveInt = Annotated[int, Field(ge=1)]


class LabConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiments: tuple[Experiment, ...] = ("adding", "activations", "representations")
    seed: int = 42
    tracking_uri: str | None = None  # else $MLFLOW_TRACKING_URI, else mlruns/
    experiment: str = "lab"  # the MLflow experiment
    output_dir: Path = Path("lab_results")  # PNGs and summary.md, besides MLflow
    # adding problem
    lengths: tuple[PositiveInt, ...] = (50, 100, 200, 400)
    cells: tuple[Cell, ...] = ("simple_rnn", "lstm", "gru")
    parameter_budget: PositiveInt = 1200  # weights per model, cells sized to match
    adding_steps: PositiveInt = 1500  # training batches per (cell, T)
    adding_batch_size: PositiveInt = 64
    adding_learning_rate: Annotated[float, Field(gt=0)] = 0.01
    gradient_length: PositiveInt = 200  # the T whose ∂loss/∂h_t curves are plotted
    # activations
    activations: tuple[Activation, ...] = ("sigmoid", "tanh", "relu", "gelu", "silu")
    mlp_layers: PositiveInt = 8
    mlp_units: PositiveInt = 64
    activation_examples: PositiveInt = 6000  # Fashion-MNIST training images
    activation_epochs: PositiveInt = 3
    monitor_steps: PositiveInt = 20  # first batches whose gradient norms are logged
    # representations
    representation_examples: PositiveInt = 12000
    representation_epochs: PositiveInt = 2
    langid_config: Path = Path("configs/fortunes_langid.yaml")
    langid_per_class: PositiveInt = 600

    @model_validator(mode="after")
    def _gradient_length_is_trained(self) -> LabConfig:
        if self.gradient_length not in self.lengths:
            raise ValueError(f"gradient_length {self.gradient_length} is not one of lengths "
                             f"{list(self.lengths)}")
        return self

    @classmethod
    def quick(cls, **overrides) -> LabConfig:
        """Return settings for a run of seconds (tests, smoke checks): tiny everything."""
        settings = dict(lengths=(10, 20), adding_steps=40, gradient_length=20,
                        parameter_budget=300, activations=("sigmoid", "relu"), mlp_layers=3,
                        mlp_units=16, activation_examples=256, activation_epochs=1,
                        monitor_steps=3, representation_examples=256,
                        representation_epochs=1, langid_per_class=40)
        return cls(**{**settings, **overrides})
