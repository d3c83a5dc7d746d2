"""Recurrent networks for text, sequences, and images read as a sequence of rows.

A recurrent layer reads one timestep at a time and carries a state forward. Backpropagation
through time multiplies one Jacobian per step, so in a SimpleRNN the gradient from late steps
shrinks (or explodes) before it reaches early ones. LSTM and GRU add gates and an additive
path for the state, which lets the gradient cross many steps without vanishing.
"""

from __future__ import annotations

from typing import Annotated, Literal

import keras
from keras import layers
from pydantic import Field, validate_call

from models.blocks import (
    Activation,
    Optimizer,
    classifier_head,
    compile_classifier,
    image_preprocessing,
    keyword_defaults,
    model_input,
    recurrent_layer,
)
from models.spec import InputSpec

Cell = Literal["simple_rnn", "lstm", "gru"]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]

TINY = {"units": 8, "recurrent_layers": 1, "dense_units": 0, "embedding_dim": 8}


def _as_sequence(inputs: keras.KerasTensor, input_spec: InputSpec, embedding_dim: int,
                 mask_padding: bool):
    """Return (timesteps x features) tensors: image rows, embedded tokens, or the sequence."""
    if input_spec.kind == "image":
        height, width, channels = input_spec.shape
        x = image_preprocessing(inputs, random_shift=0.0, random_flip=False)
        return layers.Reshape((height, width * channels), name="rows_as_timesteps")(x)
    if input_spec.kind == "text":
        vectorize = layers.TextVectorization(
            vocabulary=list(input_spec.vocabulary),
            output_sequence_length=input_spec.sequence_length,
            split=input_spec.split, standardize=input_spec.standardize,
            name="vectorize",
        )
        tokens = vectorize(inputs)
        # mask_zero: padding tokens are skipped by the recurrent layers, not read as words.
        return layers.Embedding(
            vectorize.vocabulary_size(), embedding_dim, mask_zero=mask_padding,
            name="embedding",
        )(tokens)
    return inputs


@validate_call(config={"arbitrary_types_allowed": True})
def build(
    input_spec: InputSpec,
    num_classes: Annotated[int, Field(ge=2)],
    *,
    cell: Cell = "gru",
    units: Annotated[int, Field(ge=1)] = 128,
    recurrent_layers: Annotated[int, Field(ge=1, le=4)] = 2,
    bidirectional: bool = True,
    cell_activation: Activation = "tanh",
    dropout: DropoutRate = 0.1,
    embedding_dim: Annotated[int, Field(ge=1)] = 64,
    conv_filters: Annotated[int, Field(ge=0)] = 0,
    conv_kernel_size: Annotated[int, Field(ge=1, le=15)] = 5,
    conv_pool: Annotated[int, Field(ge=1, le=8)] = 3,
    dense_units: Annotated[int, Field(ge=0)] = 128,
    activation: Activation = "relu",
    dense_dropout: DropoutRate = 0.3,
    optimizer: Optimizer = "adam",
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-3,
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4,
    label_smoothing: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0,
) -> keras.Model:
    """Return a compiled (stacked, optionally bidirectional) RNN classifier.

    Every recurrent layer but the last returns its whole output sequence, so the next layer
    reads the sequence of hidden states; the last returns its final state for the head.
    `cell_activation` other than tanh turns off the cuDNN kernels on GPU.

    `conv_filters` > 0 puts a 1-D convolution (n-gram detectors over `conv_kernel_size`
    steps) and max-pooling by `conv_pool` before the recurrent layers: a character
    sequence `conv_pool` times shorter is that much cheaper to recur over, and each step
    then carries a few characters' worth of pattern. Convolutions do not skip padding, so
    the text is not masked then.
    """
    inputs = model_input(input_spec)
    x = _as_sequence(inputs, input_spec, embedding_dim, mask_padding=conv_filters == 0)
    if conv_filters > 0:
        x = layers.Conv1D(conv_filters, conv_kernel_size, padding="same", activation=activation,
                          name="conv")(x)
        if conv_pool > 1:
            x = layers.MaxPooling1D(conv_pool, name="conv_pool")(x)
    for index in range(recurrent_layers):
        last = index == recurrent_layers - 1
        layer = recurrent_layer(
            cell, units, activation=cell_activation, return_sequences=not last,
            dropout=dropout, name=f"{cell}{index + 1}",
        )
        if bidirectional:
            layer = layers.Bidirectional(layer, name=f"bidirectional_{cell}{index + 1}")
        x = layer(x)
    outputs = classifier_head(
        x, num_classes=num_classes, dense_units=dense_units, activation=activation,
        dropout=dense_dropout,
    )
    model = keras.Model(inputs, outputs, name=f"rnn_{cell}")
    return compile_classifier(
        model, optimizer=optimizer, learning_rate=learning_rate, weight_decay=weight_decay,
        label_smoothing=label_smoothing,
    )


DEFAULTS = keyword_defaults(build)


def search_space(hp, input_spec: InputSpec, num_classes: int, **fixed) -> keras.Model:
    """Return a recurrent model sampled from `hp`; fresh HyperParameters() give the defaults.

    `fixed` carries the `build` keywords the space leaves alone (`cell_activation`, ...).
    """
    d = DEFAULTS
    sampled = dict(
        cell=hp.Choice("cell", ["simple_rnn", "lstm", "gru"], default=d["cell"]),
        units=hp.Choice("units", [32, 64, 128, 256], default=d["units"]),
        recurrent_layers=hp.Int("recurrent_layers", 1, 3, default=d["recurrent_layers"]),
        bidirectional=hp.Boolean("bidirectional", default=d["bidirectional"]),
        dropout=hp.Float("dropout", 0.0, 0.4, step=0.1, default=d["dropout"]),
        dense_units=hp.Choice("dense_units", [0, 64, 128], default=d["dense_units"]),
        dense_dropout=hp.Float("dense_dropout", 0.0, 0.5, step=0.1, default=d["dense_dropout"]),
        optimizer=hp.Choice("optimizer", ["adam", "rmsprop"], default=d["optimizer"]),
        learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=d["learning_rate"]),
    )
    return build(input_spec, num_classes, **{**fixed, **sampled})
