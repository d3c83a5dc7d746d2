"""Keras architectures as code: one module per family, all with the same three names.

`build(input_spec, num_classes, **keywords)` returns a compiled model, `search_space(hp,
input_spec, num_classes)` samples KerasTuner hyperparameters and calls `build`, and `TINY`
holds keywords for a model small enough for tests.
"""

from __future__ import annotations

from types import ModuleType

from models import charlm, cnn, rnn
from models.spec import InputSpec

FAMILIES: dict[str, ModuleType] = {"cnn": cnn, "rnn": rnn, "charlm": charlm}


def get_family(name: str) -> ModuleType:
    """Return the family module registered under `name`."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown model family {name!r} in model.family; choose one of: "
            f"{', '.join(FAMILIES)}"
        ) from None


__all__ = ["FAMILIES", "InputSpec", "get_family"]
