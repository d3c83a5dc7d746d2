"""The KerasTuner HyperModel of a model family, and the config's say over its search space.

KerasTuner keeps three parts apart and so do we: this HyperModel builds from a family's
`search_space`; the Oracle (random, bayesian, hyperband) picks values; the Tuner
(pipeline/fitting/tracked_tuner.py) runs trials. `tune.hyperparameters` in a config narrows
or fixes the family's space (`declare_overrides`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import keras
import keras_tuner as kt

from models.spec import InputSpec
from pipeline.config import ConfigError

RANGE_KEYS = {"min", "max", "step", "sampling"}


def declare_overrides(overrides: dict[str, Any]) -> kt.HyperParameters:
    """Return HyperParameters pre-declaring the config's narrowed or fixed hyperparameters.

    KerasTuner keeps the first declaration of a name, so when `search_space` later asks for
    the same name, it gets these choices, this range or this fixed value instead of its own.
    """
    hp = kt.HyperParameters()
    for name, spec in overrides.items():
        if isinstance(spec, list):
            hp.Choice(name, spec, ordered=False)
        elif isinstance(spec, dict):
            unknown = set(spec) - RANGE_KEYS
            if unknown or not {"min", "max"} <= set(spec):
                raise ConfigError(f"tune.hyperparameters.{name}: a range takes min, max and "
                                  f"optionally step and sampling; got {', '.join(spec)}")
            integer = all(isinstance(spec[key], int) and not isinstance(spec[key], bool)
                          for key in ("min", "max"))
            declare = hp.Int if integer else hp.Float
            declare(name, spec["min"], spec["max"], step=spec.get("step"),
                    sampling=spec.get("sampling", "linear"))
        else:
            hp.Fixed(name, spec)
    return hp


class FamilyHyperModel(kt.HyperModel):
    """Builds a family's model from `hp`; config keys outside the space are fixed keywords."""

    def __init__(self, family: ModuleType, input_spec: InputSpec, num_classes: int,
                 model_params: dict[str, Any], overrides: dict[str, Any]):
        super().__init__(name=family.__name__.rsplit(".", 1)[-1])
        self.family = family
        self.input_spec = input_spec
        self.num_classes = num_classes
        fresh = kt.HyperParameters()
        family.search_space(fresh, input_spec, num_classes)
        self.space_names = set(fresh.values)
        # Config hyperparameters the space does not sample are read from hp directly.
        self.extra_names = [name for name in overrides if name not in self.space_names]
        self.fixed = {name: value for name, value in model_params.items()
                      if name not in self.space_names and name not in self.extra_names}

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        extra = {name: hp.get(name) for name in self.extra_names}
        return self.family.search_space(hp, self.input_spec, self.num_classes,
                                        **self.fixed, **extra)

    def base_learning_rate(self, values: dict[str, Any]) -> float:
        """Return the learning rate a trial with these hyperparameter values starts from."""
        fallback = self.fixed.get("learning_rate", self.family.DEFAULTS["learning_rate"])
        return float(values.get("learning_rate", fallback))


def shown(value: Any) -> str:
    """A hyperparameter value as people read it: 0.3, not KerasTuner's 0.30000000000000004."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
