"""Pieces shared by the model families: preprocessing, blocks, the classifier head, compile.

Everything a SavedModel needs to turn raw input into a prediction lives in the graph built
here (rescaling, augmentation, text vectorisation), so serving cannot drift from training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, get_args

import keras
import tensorflow as tf
from keras import layers

from models.spec import InputSpec

# Activation functions a family accepts. They differ in what backpropagation sees: sigmoid
# and tanh saturate (derivative -> 0 for large |x|, the vanishing gradient), ReLU passes a
# gradient of exactly 1 for x > 0 and 0 below, and the smooth ReLU variants (elu, gelu, silu,
# mish) keep a small gradient for negative inputs.
Activation = Literal[
    "relu", "leaky_relu", "relu6", "elu", "selu", "gelu", "silu", "mish",
    "softplus", "tanh", "sigmoid", "hard_sigmoid",
]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Pooling = Literal["max", "average"]


def model_input(input_spec: InputSpec) -> keras.KerasTensor:
    """Return the named raw input: uint8 `image`, string `text` or float32 `sequence`."""
    return keras.Input(shape=input_spec.shape, dtype=input_spec.dtype, name=input_spec.name)


def image_preprocessing(
    inputs: keras.KerasTensor, *, random_shift: float, random_flip: bool,
    random_erasing: float = 0.0,
) -> keras.KerasTensor:
    """Scale uint8 pixels to [0, 1]; augmentation layers are active in training only.

    `random_erasing` is the share of training images that get one rectangle (2-33% of
    the image) blanked to the background: the model must recognise a garment from any
    part of it, not from one telltale patch (Zhong et al., 2017).
    """
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if random_flip:
        x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    if random_shift > 0:
        x = layers.RandomTranslation(
            random_shift, random_shift, fill_mode="constant", name="augment_shift"
        )(x)
    if random_erasing > 0:
        # A (p, p) factor erases with probability p; a single float would draw it from [0, p].
        x = layers.RandomErasing(factor=(random_erasing, random_erasing), fill_value=0.0,
                                 value_range=(0.0, 1.0), name="augment_erase")(x)
    return x


def space_to_depth_stem(x: keras.KerasTensor) -> keras.KerasTensor:
    """Return `x` [H, W, C] as [ceil(H/2), ceil(W/2), 4C]: each 2x2 patch becomes one pixel.

    Odd sizes get one row or column of zeros first. Reshapes and a transpose only: no
    weights, nothing lost, and TF Serving runs it as plain tensor ops.
    """
    height, width, channels = x.shape[1:]
    if height % 2 or width % 2:
        x = layers.ZeroPadding2D(((0, height % 2), (0, width % 2)), name="stem_pad")(x)
        height, width = height + height % 2, width + width % 2
    x = layers.Reshape((height // 2, 2, width // 2, 2, channels), name="stem_split")(x)
    x = layers.Permute((1, 3, 2, 4, 5), name="stem_gather")(x)
    return layers.Reshape((height // 2, width // 2, 4 * channels), name="stem_fold")(x)


@keras.saving.register_keras_serializable(package="tfpipe")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' batch normalization, trained with TensorFlow's fused kernel (same maths).

    Keras 3 computes the batch's mean and variance and then normalises with separate ops,
    each a pass over the activations; TensorFlow's FusedBatchNormV3 (oneDNN on CPUs, cuDNN
    on GPUs) does it in one, forward and backward: a training step of the default CNN
    cost about a quarter less on an AMX CPU, about the same with AVX2 kernels (README). Inference, and every case the fused
    kernel does not cover (synchronized statistics across workers, masks, renorm, a
    channel axis other than the last of a 4-D tensor), run Keras' own code, so a SavedModel
    holds the plain ops.
    """

    def _fusable(self, inputs, training, mask) -> bool:
        return bool(training and self.trainable and mask is None and len(inputs.shape) == 4
                    and self.axis in (-1, 3) and self.center and self.scale
                    and not self.renorm and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        # In float32 like Keras' own, so bfloat16 activations cannot overflow the variance.
        normalised, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, tf.float32), tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32), epsilon=self.epsilon, data_format="NHWC",
            is_training=True,
        )
        # The kernel's variance is Bessel-corrected; Keras keeps the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = variance * (count - 1.0) / count
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        return tf.cast(normalised, self.compute_dtype)


def conv_block(
    x: keras.KerasTensor,
    *,
    index: int,
    filters: int,
    kernel_size: int,
    convs: int,
    batch_norm: bool,
    activation: str,
    pooling: str,
    dropout: float,
    fused_batch_norm: bool = True,
) -> keras.KerasTensor:
    """Return `convs` x (conv -> [batch norm] -> activation), then 2x2 pooling and dropout.

    `fused_batch_norm` trains batch norm with TensorFlow's fused kernel, else Keras' ops.
    """
    prefix = f"block{index}"
    for conv in range(1, convs + 1):
        # A bias is redundant right before batch norm, which learns its own shift.
        x = layers.Conv2D(
            filters, kernel_size, padding="same", use_bias=not batch_norm,
            name=f"{prefix}_conv{conv}",
        )(x)
        if batch_norm:
            norm = FusedBatchNormalization if fused_batch_norm else layers.BatchNormalization
            x = norm(name=f"{prefix}_bn{conv}")(x)
        x = layers.Activation(activation, name=f"{prefix}_{activation}{conv}")(x)
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    x = pool(2, name=f"{prefix}_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    return x


def recurrent_layer(cell: str, units: int, **kwargs) -> layers.Layer:
    """Return a SimpleRNN, LSTM or GRU layer (the gated cells resist vanishing gradients)."""
    layer_classes = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
    return layer_classes[cell](units, **kwargs)


def classifier_head(
    x: keras.KerasTensor,
    *,
    num_classes: int,
    dense_units: int,
    activation: str,
    dropout: float,
) -> keras.KerasTensor:
    """Return class probabilities (float32 even under mixed precision) named `probabilities`."""
    if dense_units > 0:
        x = layers.Dense(dense_units, activation=activation, name="head_dense")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    # Softmax in float32: float16 softmax over logits loses precision and can overflow.
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


@keras.saving.register_keras_serializable(package="tfpipe")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Keras' sparse loss has none).

    The target puts 1 - smoothing on the true class and spreads `smoothing` over all
    classes, so the model is not pushed towards infinitely confident logits.
    """

    def __init__(self, smoothing: float = 0.1, name: str = "smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        num_classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        target = keras.ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred,
                                                     label_smoothing=self.smoothing)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


def compile_classifier(
    model: keras.Model, *, optimizer: str, learning_rate: float, weight_decay: float,
    label_smoothing: float = 0.0,
) -> keras.Model:
    """Compile for integer labels with loss and accuracy; returns the same model."""
    optimizers = {
        "adam": lambda: keras.optimizers.Adam(learning_rate),
        "adamw": lambda: keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
        "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
        "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate),
    }
    model.compile(
        optimizer=optimizers[optimizer](),
        loss=(SmoothedSparseCrossentropy(label_smoothing) if label_smoothing > 0
              else keras.losses.SparseCategoricalCrossentropy()),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def keyword_defaults(build: Callable[..., keras.Model]) -> dict[str, Any]:
    """Return `build`'s keyword-only arguments and their defaults: a family's baseline."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(build).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
