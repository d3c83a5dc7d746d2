"""Convolutional networks for images: stacked conv blocks, then a dense classifier head.

Each block learns features of the previous block's features: early blocks respond to edges
and strokes, later ones (after pooling has widened their view) to parts such as collars,
soles and handles. That learned hierarchy is the representation the head classifies.
"""

from __future__ import annotations

from typing import Annotated

import keras
from keras import layers
from pydantic import Field, validate_call

from models.blocks import (
    Activation,
    Optimizer,
    Pooling,
    classifier_head,
    compile_classifier,
    conv_block,
    image_preprocessing,
    keyword_defaults,
    model_input,
    space_to_depth_stem,
)
from models.spec import InputSpec

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]

# Small enough to build and fit in well under a second: what the tests use.
TINY = {"conv_blocks": 1, "filters": 4, "dense_units": 8}


@validate_call(config={"arbitrary_types_allowed": True})
def build(
    input_spec: InputSpec,
    num_classes: Annotated[int, Field(ge=2)],
    *,
    conv_blocks: Annotated[int, Field(ge=1, le=6)] = 3,
    space_to_depth: bool = False,
    filters: PositiveInt = 32,
    convs_per_block: PositiveInt = 1,
    kernel_size: Annotated[int, Field(ge=1, le=11)] = 3,
    batch_norm: bool = True,
    fused_batch_norm: bool = True,
    activation: Activation = "relu",
    pooling: Pooling = "max",
    block_dropout: DropoutRate = 0.2,
    dense_units: NonNegativeInt = 256,
    dense_dropout: DropoutRate = 0.4,
    random_shift: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0,
    random_flip: bool = False,
    random_erasing: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0,
    optimizer: Optimizer = "adam",
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-3,
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4,
    label_smoothing: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.0,
) -> keras.Model:
    """Return a compiled CNN taking uint8 `image` pixels and giving `probabilities`.

    `space_to_depth` folds every 2x2 patch of pixels into 4 channels before the first
    block, so the network starts at half resolution without dropping a pixel. On a CPU the
    full-resolution block is memory-bound: it takes most of a step's time for a few percent
    of its multiply-adds (see `make bench-train`).

    `fused_batch_norm` (the default) trains batch norm with TensorFlow's fused kernel: the
    same maths in one pass, a quarter off a training step on an AMX CPU (README, Results and
    benchmarks, gives the figures per host); false runs Keras' ops.

    Block i has `filters * 2**i` filters: pooling halves the resolution, so doubling the
    channels keeps the work per block roughly even while features grow more abstract.
    """
    if input_spec.kind != "image":
        raise ValueError(f"the cnn family reads images, not {input_spec.kind}; use family rnn")
    height, width, _ = input_spec.shape
    halvings = conv_blocks + space_to_depth
    if min(height, width) < 2**halvings:
        raise ValueError(
            f"model.conv_blocks={conv_blocks}{' with space_to_depth' if space_to_depth else ''}"
            f" pools a {height}x{width} image below 1x1; "
            f"use at most {min(height, width).bit_length() - 1 - space_to_depth}"
        )
    inputs = model_input(input_spec)
    x = image_preprocessing(inputs, random_shift=random_shift, random_flip=random_flip,
                            random_erasing=random_erasing)
    if space_to_depth:
        x = space_to_depth_stem(x)
    for index in range(conv_blocks):
        x = conv_block(
            x, index=index + 1, filters=filters * 2**index, kernel_size=kernel_size,
            convs=convs_per_block, batch_norm=batch_norm, activation=activation,
            pooling=pooling, dropout=block_dropout, fused_batch_norm=fused_batch_norm,
        )
    x = layers.Flatten(name="flatten")(x)
    outputs = classifier_head(
        x, num_classes=num_classes, dense_units=dense_units, activation=activation,
        dropout=dense_dropout,
    )
    model = keras.Model(inputs, outputs, name="cnn")
    return compile_classifier(
        model, optimizer=optimizer, learning_rate=learning_rate, weight_decay=weight_decay,
        label_smoothing=label_smoothing,
    )


DEFAULTS = keyword_defaults(build)


def search_space(hp, input_spec: InputSpec, num_classes: int, **fixed) -> keras.Model:
    """Return a model sampled from `hp`; a fresh HyperParameters() gives `build`'s defaults.

    `fixed` passes `build` keywords this space does not sample (e.g. `pooling`).
    """
    d = DEFAULTS
    sampled = dict(
        conv_blocks=hp.Int("conv_blocks", 1, 3, default=d["conv_blocks"]),
        filters=hp.Choice("filters", [16, 32, 64], default=d["filters"]),
        convs_per_block=hp.Int("convs_per_block", 1, 2, default=d["convs_per_block"]),
        kernel_size=hp.Choice("kernel_size", [3, 5], default=d["kernel_size"]),
        batch_norm=hp.Boolean("batch_norm", default=d["batch_norm"]),
        activation=hp.Choice("activation", ["relu", "elu", "gelu", "tanh"], default=d["activation"]),
        block_dropout=hp.Float("block_dropout", 0.0, 0.4, step=0.1, default=d["block_dropout"]),
        dense_units=hp.Choice("dense_units", [0, 128, 256], default=d["dense_units"]),
        dense_dropout=hp.Float("dense_dropout", 0.0, 0.5, step=0.1, default=d["dense_dropout"]),
        random_shift=hp.Choice("random_shift", [0.0, 0.1], default=d["random_shift"]),
        optimizer=hp.Choice("optimizer", ["adam", "adamw"], default=d["optimizer"]),
        learning_rate=hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=d["learning_rate"]),
    )
    return build(input_spec, num_classes, **{**fixed, **sampled})
