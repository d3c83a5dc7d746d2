"""The sections of a run's configuration: one frozen, validated pydantic section per concern.

Data, train, tracking, export and tune are here; the `model` section, checked against its
family's `build`, and `RunConfig`, which holds them all, are in run_config.py.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
# The languages pipeline/sources/fortunes.py knows (its LANGUAGES table has the same keys).
FortuneLanguage = Literal["en", "de", "es", "it", "pt", "pl", "cs", "eo", "ga"]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the file and the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Section):
    source: Literal["fashion_mnist", "tfds", "image_folder", "text_folder",
                    "fortunes"] = "fashion_mnist"
    name: str | None = None  # TFDS data set name (source tfds), e.g. "mnist" or "mnist:3.0.1"
    data_dir: Path | None = None  # TFDS data_dir; TFDS's own default when unset
    path: Path | None = None  # the folder of image_folder / text_folder: one subfolder per class
    # fortunes: the languages (labels, in this order), offensive sets, per-file encodings
    # (path under the folder -> codec, e.g. {"pl/bajki": "iso-8859-2"}), records per language.
    languages: tuple[FortuneLanguage, ...] | None = None  # None: every language it knows
    include_offensive: bool = False  # the `off/` folders
    encodings: dict[str, str] = Field(default_factory=dict)
    max_per_class: Annotated[int, Field(ge=1)] | None = None  # balance classes by capping
    train_split: str = "train"
    test_split: str | None = "test"  # None: carve the test split out of train_split
    input_key: str | None = None  # TFDS feature holding the input; None: "image" or "text"
    label_key: str = "label"
    image_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    validation_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1  # only used when the source has no test split
    batch_size: Annotated[int, Field(ge=1)] = 128
    # On GPUs: examples per GPU per step (the learning rate scales by the square root of the
    # ratio to batch_size); None keeps batch_size. A CPU step is compute-bound, so small
    # batches cost nothing per example there and give more updates per epoch.
    gpu_batch_size: Annotated[int, Field(ge=1)] | None = 256
    shuffle_buffer: Annotated[int, Field(ge=1)] = 60_000
    cache: bool = True
    autotune: bool = False  # tf.data autotuning; off: see pipeline/data.py for why
    max_examples: Annotated[int, Field(ge=1)] | None = None  # per split, for smoke runs
    download: bool = True  # let TFDS download when its host answers
    vocabulary_size: Annotated[int, Field(ge=2)] = 20_000  # text: most frequent tokens kept
    sequence_length: Annotated[int, Field(ge=1)] = 200  # text: tokens per example
    text_split: Literal["whitespace", "character"] = "whitespace"  # text: words or characters

    @field_validator("encodings")
    @classmethod
    def _known_codecs(cls, encodings: dict[str, str]) -> dict[str, str]:
        for name, encoding in encodings.items():
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(f"data.encodings.{name}: unknown encoding {encoding!r}; "
                                 "use a Python codec name such as utf-8, latin-1, "
                                 "iso-8859-2") from None
        return encodings

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source == "tfds" and not self.name:
            raise ValueError("data.name is required when data.source is tfds")
        if self.source in ("image_folder", "text_folder") and self.path is None:
            raise ValueError(f"data.path is required when data.source is {self.source}")
        if self.source == "image_folder" and self.image_size is None:
            raise ValueError("data.image_size ([height, width]) is required for image_folder")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("data.validation_fraction + data.test_fraction must stay below 0.9")
        return self


class TrainConfig(Section):
    epochs: Annotated[int, Field(ge=1)] = 15
    lr_schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = 5
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    mixed_precision: Literal["auto", "bfloat16", "float16", "off"] = "auto"
    jit_compile: Literal["auto", "on", "off"] = "auto"  # XLA; auto: on GPUs, off on CPUs
    distribution: Literal["auto", "mirrored", "none"] = "auto"
    deterministic: bool = False  # exact op determinism: slower, for debugging
    resume: bool = True  # continue an interrupted run of the same config
    checkpoint_dir: Path = Path("checkpoints")
    insights: bool = True  # gradient flow, feature maps, embeddings in MLflow
    # Per-layer gradient norms and, for RNNs, ∂loss/∂h_t over t, logged while training
    # (pipeline/fitting/gradient_monitor.py), on `gradient_monitor_examples` training examples.
    gradient_monitor: bool = False
    gradient_monitor_examples: Annotated[int, Field(ge=1)] = 64
    # A non-neural model fitted and tested on the same split, logged as baseline_test_*.
    baseline: Literal["none", "char_ngram_logreg"] = "none"


class TrackingConfig(Section):
    experiment: str = "default"
    tracking_uri: str | None = None  # else $MLFLOW_TRACKING_URI, else mlruns/ (SQLite)
    register_model: bool = True  # register the export in the MLflow model registry


class ExportConfig(Section):
    enabled: bool = True
    base_dir: Path = Path("saved_models")
    warmup_batch_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (1, 8, 32)
    parity_examples: Annotated[int, Field(ge=1)] = 256
    parity_tolerance: Annotated[float, Field(gt=0.0)] = 1e-4
    # Serve (and evaluate) the mean of the model's answers for an image and its mirror
    # image (models/test_time.py); image inputs only.
    test_time_flip: bool = False


class TuneConfig(Section):
    """A KerasTuner search; each trial is a nested MLflow run under one run per sweep."""

    tuner: Literal["random", "bayesian", "hyperband"] = "hyperband"
    # The number of trials, whatever the tuner. Unset: 10 for random and bayesian, and for
    # hyperband what its brackets run in `hyperband_iterations` iterations.
    max_trials: Annotated[int, Field(ge=1)] | None = None
    epochs: Annotated[int, Field(ge=1)] = 10  # per trial; hyperband's max_epochs
    hyperband_factor: Annotated[int, Field(ge=2)] = 3
    # Unset: one iteration, or with max_trials as many as it takes to run that many trials.
    hyperband_iterations: Annotated[int, Field(ge=1)] | None = None
    executions_per_trial: Annotated[int, Field(ge=1)] = 1
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    # Narrow or fix the family's search space: a list is a choice, {min, max[, step,
    # sampling]} a range, a single value fixes the hyperparameter.
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    trial_train_examples: Annotated[int, Field(ge=1)] | None = None  # trials fit on a subset
    directory: Path = Path("tuning")  # KerasTuner project: <directory>/<name>/
    overwrite: bool = False  # true: start a fresh search instead of resuming
    final: Literal["retrain", "restore"] = "retrain"  # best model: retrain, or best checkpoint
    retrain_epochs: Annotated[int, Field(ge=1)] | None = None  # default: train.epochs
    workers: Annotated[int, Field(ge=1, le=64)] = 1  # >1: chief + workers on this machine
    max_consecutive_failed_trials: Annotated[int, Field(ge=1)] = 3
    promotion_margin: Annotated[float, Field(ge=0.0)] = 0.0  # challenger must beat champion by
    # The gate before promotion: the challenger served alone in a real server process must
    # answer `gate_examples` test inputs (and its warmup requests) like the in-process
    # SavedModel, within `gate_tolerance` on probabilities, at p99 <= `gate_p99_ms` per protocol.
    gate_examples: Annotated[int, Field(ge=1)] = 50
    gate_tolerance: Annotated[float, Field(gt=0.0)] = 1e-5
    gate_p99_ms: Annotated[float, Field(gt=0.0)] = 250.0
