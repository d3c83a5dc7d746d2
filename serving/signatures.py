"""The serving signatures of an exported classifier, as a tf.Module around the Keras model."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

from models.spec import InputSpec


class ServingModule(tf.Module):
    """Wraps a Keras classifier with TF Serving's signatures (see serving.export)."""

    def __init__(self, model: keras.Model, input_spec: InputSpec, class_names: tuple[str, ...],
                 class_names_file: Path):
        super().__init__(name="classifier")
        self.model = model
        # Track every Keras variable explicitly: TF's attribute tracking misses some, such as
        # the seed state of a recurrent layer's dropout, and refuses to save what they feed.
        self.keras_variables = list(model.variables)
        # Tracked as an asset, so the file travels with the SavedModel into assets/.
        self.class_names_file = tf.saved_model.Asset(str(class_names_file))
        self._class_names = tf.constant(class_names, dtype=tf.string)
        self._input_spec = input_spec

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """Return the concrete functions to save, `serving_default` first."""
        spec = self._input_spec
        raw = tf.TensorSpec([None, *spec.shape], tf.as_dtype(spec.dtype), name=spec.name)
        signatures = {"serving_default": tf.function(self._predict).get_concrete_function(raw)}
        strings = tf.TensorSpec([None], tf.string, name="image_bytes")
        if spec.kind == "image":
            signatures["predict_image_bytes"] = tf.function(
                self._predict_image_bytes).get_concrete_function(strings)
        if spec.kind in ("image", "text"):
            examples = tf.TensorSpec([None], tf.string, name="inputs")
            signatures["classify"] = tf.function(self._classify).get_concrete_function(examples)
        return signatures

    def _probabilities(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.model(inputs, training=False), tf.float32)

    def _outputs(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self._class_names, class_id),
        }

    def _predict(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(self._probabilities(inputs))

    def _decode_image(self, encoded: tf.Tensor) -> tf.Tensor:
        height, width, channels = self._input_spec.shape
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        same_size = tf.reduce_all(tf.shape(image)[:2] == [height, width])
        image = tf.cond(
            same_size,
            lambda: image,
            lambda: tf.cast(tf.round(tf.clip_by_value(
                tf.image.resize(image, (height, width), antialias=True), 0, 255)), tf.uint8),
        )
        return tf.ensure_shape(image, (height, width, channels))

    def _decode_images(self, encoded: tf.Tensor) -> tf.Tensor:
        return tf.map_fn(self._decode_image, encoded, fn_output_signature=tf.TensorSpec(
            self._input_spec.shape, tf.uint8))

    def _predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(self._decode_images(image_bytes))

    def _classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        key = self._input_spec.kind
        features = tf.io.parse_example(inputs, {key: tf.io.FixedLenFeature([], tf.string)})
        values = features[key]
        if key == "image":
            values = self._decode_images(values)
        scores = self._probabilities(values)
        classes = tf.tile(self._class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}


def set_method_names(path: Path, method_names: dict[str, str]) -> None:
    """Set the method name of signatures in a written SavedModel, and refresh its fingerprint.

    TF2 saves every signature as a Predict signature; TF Serving's Classify and Regress APIs
    accept only signatures whose method name says classify or regress.
    """
    proto_path = path / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(proto_path.read_bytes())
    changed = False
    for meta_graph in saved_model.meta_graphs:
        for name, method_name in method_names.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method_name
                changed = True
    if changed:
        proto_path.write_bytes(saved_model.SerializeToString(deterministic=True))
        (path / "fingerprint.pb").write_bytes(fingerprinting.CreateFingerprintDef(str(path)))
