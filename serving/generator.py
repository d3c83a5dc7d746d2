"""A character language model's SavedModel: text generation as one signature, sampled in the graph.

`generate` (also `serving_default`) takes `prompt` string [-1], `length` int32 [-1] (new
characters per prompt), `temperature` float32 [-1] and `seed` int64 [-1] (the first one
seeds the whole batch) and returns `text` (prompt + continuation) and `generated` (the
continuation alone), strings [-1]. The loop runs inside the graph: the model's own
embedding, recurrent cell and output layer are stepped one character at a time, first over
the prompt, then over what they sample, so TF Serving (or the compatible server) generates
text without Python. The same seed gives the same text.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import keras
import tensorflow as tf

from models.charlm import BOS

SPECIAL_IDS = (0, 1, 2)  # padding, unknown, the start-of-record mark: never sampled


class CharGenerator(tf.Module):
    """Wraps a `models.charlm` model and its vocabulary with the `generate` signature."""

    def __init__(self, model: keras.Model, characters: tuple[str, ...]):
        super().__init__(name="char_generator")
        self.model = model
        self.keras_variables = list(model.variables)
        self.embedding = model.get_layer("embedding")
        self.recurrent = next(layer for layer in model.layers if isinstance(layer, keras.layers.RNN))
        self.output_layer = model.get_layer("logits")
        vocabulary = [BOS, *characters]  # ids: 0 padding, 1 unknown, 2 BOS, 3... characters
        self.lookup = keras.layers.StringLookup(vocabulary=vocabulary, mask_token="",
                                                oov_token="[UNK]")
        self.inverse = keras.layers.StringLookup(vocabulary=vocabulary, mask_token="",
                                                 oov_token="[UNK]", invert=True)
        size = len(vocabulary) + 2
        self._never = tf.constant([-1e9 if index in SPECIAL_IDS else 0.0
                                   for index in range(size)], tf.float32)

    def _step(self, ids: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        output, new_states = self.recurrent.cell(self.embedding(ids), states, training=False)
        return output, list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="prompt"),
        tf.TensorSpec([None], tf.int32, name="length"),
        tf.TensorSpec([None], tf.float32, name="temperature"),
        tf.TensorSpec([None], tf.int64, name="seed"),
    ])
    def generate(self, prompt, length, temperature, seed):
        batch = tf.shape(prompt)[0]
        ids = self.lookup(tf.strings.unicode_split(prompt, "UTF-8"))
        start = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(2, ids.dtype)))
        ids = tf.concat([start, ids], axis=1)
        padded, lengths = ids.to_tensor(0), ids.row_lengths()
        states = self.recurrent.cell.get_initial_state(batch_size=batch)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        last = tf.zeros([batch, self.recurrent.cell.units])
        for step in tf.range(tf.shape(padded)[1]):  # read the prompt; shorter ones wait
            output, new_states = self._step(padded[:, step], states)
            reading = (tf.cast(step, tf.int64) < lengths)[:, tf.newaxis]
            states = [tf.where(reading, new, old) for new, old in zip(new_states, states)]
            last = tf.where(reading, output, last)
        count = tf.reduce_max(tf.concat([length, [0]], axis=0))
        sampled = tf.TensorArray(tf.int64, size=count)
        scale = tf.maximum(temperature, 1e-3)[:, tf.newaxis]
        for step in tf.range(count):
            logits = tf.cast(self.output_layer(last), tf.float32) / scale + self._never
            next_ids = tf.random.stateless_categorical(
                logits, 1, seed=tf.stack([seed[0], tf.cast(step, tf.int64)]))[:, 0]
            sampled = sampled.write(step, next_ids)
            last, states = self._step(next_ids, states)
        characters = self.inverse(tf.transpose(tf.reshape(sampled.stack(), [count, batch])))
        generated = tf.strings.substr(tf.strings.reduce_join(characters, axis=1),
                                      tf.zeros_like(length), length, unit="UTF8_CHAR")
        return {"text": prompt + generated, "generated": generated}


def export_generator(model: keras.Model, characters: tuple[str, ...], model_dir: Path) -> Path:
    """Write the SavedModel into a hidden folder of `model_dir`; return it (publish renames)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f".staging-{uuid.uuid4().hex[:12]}"
    module = CharGenerator(model, characters)
    try:
        tf.saved_model.save(module, str(path), signatures={
            "serving_default": module.generate, "generate": module.generate})
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path
