"""Character language models: read text one character at a time, predict the next one.

The model reads character ids (`chars`, int32 [batch, steps]) and gives logits over the
vocabulary at every step (teacher forcing: step t sees characters 0..t and is scored on
character t+1). Id 0 is padding, scored by nothing. `pipeline/stages/charlm.py` trains it
and exports a SavedModel whose `generate` signature runs the sampling loop in the graph,
with this model's own layers stepped one character at a time.
"""

from __future__ import annotations

from typing import Annotated, Literal

import keras
from keras import layers
from pydantic import Field, validate_call

from models.blocks import keyword_defaults, recurrent_layer
from models.spec import InputSpec

TINY = {"units": 8, "embedding_dim": 4}
BOS = "\x02"  # what every record starts after: the model's first input, the n-gram's context


@validate_call(config={"arbitrary_types_allowed": True})
def build(
    input_spec: InputSpec,
    num_classes: Annotated[int, Field(ge=2)],
    *,
    cell: Literal["lstm", "gru"] = "lstm",
    units: Annotated[int, Field(ge=1)] = 256,
    embedding_dim: Annotated[int, Field(ge=1)] = 48,
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0,
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 3e-3,
) -> keras.Model:
    """Return a compiled next-character model over `num_classes` ids (the vocabulary size).

    `input_spec` is not read: the input is always character ids. The loss ignores id 0
    (padding), so bits per character count real characters only.
    """
    del input_spec
    inputs = keras.Input((None,), dtype="int32", name="chars")
    x = layers.Embedding(num_classes, embedding_dim, name="embedding")(inputs)
    x = recurrent_layer(cell, units, return_sequences=True, dropout=dropout, name=cell)(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=f"charlm_{cell}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0))
    return model


DEFAULTS = keyword_defaults(build)


def search_space(hp, input_spec: InputSpec, num_classes: int, **fixed) -> keras.Model:
    """Return a model sampled from `hp`; fresh HyperParameters() give `build`'s defaults."""
    d = DEFAULTS
    sampled = dict(
        cell=hp.Choice("cell", ["lstm", "gru"], default=d["cell"]),
        units=hp.Choice("units", [128, 256, 512], default=d["units"]),
        learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, sampling="log",
                               default=d["learning_rate"]),
    )
    return build(input_spec, max(num_classes, 2), **{**fixed, **sampled})
