"""A tiny SavedModel shaped like the pipeline's export, for benchmarks and smoke tests.

It has the same signatures as `saved_models/<name>/<version>/`: `serving_default` (uint8
`image` pixels), `predict_image_bytes` (encoded PNG/JPEG in `image_bytes`) and `classify`
(serialized tf.Example with a `pixels` int64 feature), all giving `probabilities`,
`class_id` and `class_name` (or `classes`/`scores` for `classify`). The weights are seeded,
so two exports with the same seed compute the same function.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

DEFAULT_CLASS_NAMES = tuple(f"class_{index}" for index in range(10))


def _keras_classifier(height: int, width: int, channels: int, num_classes: int, seed: int):
    """Return a small functional Keras CNN from uint8 pixels to softmax probabilities."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    # float32 whatever global policy the process has (a mixed-precision training run may
    # have set one): TF Serving's JSON API cannot write bfloat16 or float16 outputs.
    dtype = "float32"
    image = keras.Input(shape=(height, width, channels), dtype="uint8", name="image")
    x = layers.Lambda(lambda t: tf.cast(t, "float32"), dtype=dtype)(image)
    x = layers.Rescaling(1.0 / 255.0, dtype=dtype)(x)
    x = layers.Conv2D(8, 3, activation="relu", dtype=dtype)(x)
    x = layers.MaxPooling2D(dtype=dtype)(x)
    x = layers.Conv2D(8, 3, activation="relu", dtype=dtype)(x)
    x = layers.GlobalAveragePooling2D(dtype=dtype)(x)
    probabilities = layers.Dense(num_classes, activation="softmax", name="probabilities",
                                 dtype=dtype)(x)
    return keras.Model(image, probabilities)


class _Exported(tf.Module):
    """Wraps the Keras model with the pipeline's three serving signatures."""

    def __init__(self, model, height: int, width: int, channels: int, class_names):
        super().__init__()
        self.model = model
        self.height, self.width, self.channels = height, width, channels
        self.class_names = tf.constant(list(class_names))
        pixel_spec = tf.TensorSpec([None, height, width, channels], tf.uint8, name="image")
        self.serving_default = tf.function(self._from_pixels, input_signature=[pixel_spec])
        self.predict_image_bytes = tf.function(
            self._from_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")]
        )
        self.classify = tf.function(
            self._from_examples, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
        )

    def _outputs(self, pixels):
        probabilities = self.model(pixels, training=False)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
        }

    def _from_pixels(self, image):
        return self._outputs(image)

    def _decode(self, encoded):
        decoded = tf.io.decode_image(encoded, channels=self.channels, expand_animations=False)
        resized = tf.image.resize(decoded, [self.height, self.width], method="nearest")
        return tf.cast(resized, tf.uint8)

    def _from_bytes(self, image_bytes):
        pixels = tf.map_fn(
            self._decode, image_bytes,
            fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels], tf.uint8),
        )
        return self._outputs(pixels)

    def _from_examples(self, inputs):
        size = self.height * self.width * self.channels
        features = tf.io.parse_example(inputs, {"pixels": tf.io.FixedLenFeature([size], tf.int64)})
        pixels = tf.reshape(
            tf.cast(features["pixels"], tf.uint8), [-1, self.height, self.width, self.channels]
        )
        probabilities = self.model(pixels, training=False)
        batch = tf.shape(probabilities)[0]
        classes = tf.tile(self.class_names[tf.newaxis, :], [batch, 1])
        return {"classes": classes, "scores": probabilities}


def export_demo_model(
    base_path: str | os.PathLike,
    version: int = 1,
    *,
    height: int = 28,
    width: int = 28,
    channels: int = 1,
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES,
    seed: int = 0,
) -> Path:
    """Return the version directory written under `base_path`, renamed into place atomically.

    The SavedModel is written to a `.tmp-*` sibling first and renamed, as the pipeline's
    exporter does, so a polling server never sees half a version.
    """
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    model = _keras_classifier(height, width, channels, len(class_names), seed)
    module = _Exported(model, height, width, channels, class_names)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    tf.saved_model.save(
        module, str(staging),
        signatures={
            "serving_default": module.serving_default,
            "predict_image_bytes": module.predict_image_bytes,
            "classify": module.classify,
        },
    )
    assets = staging / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "class_names.txt").write_text("\n".join(class_names) + "\n")
    target = base / str(version)
    staging.rename(target)
    return target


def sample_pixels(batch: int, height: int = 28, width: int = 28, channels: int = 1, seed: int = 0):
    """Return a seeded uint8 pixel batch of shape [batch, height, width, channels]."""
    generator = np.random.default_rng(seed)
    return generator.integers(0, 256, size=(batch, height, width, channels), dtype=np.uint8)
