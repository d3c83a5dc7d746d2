"""Backpropagation measured: per-layer ‖∂loss/∂W‖ and, through a recurrent layer, ‖∂loss/∂h_t‖.

`layer_gradient_norms` is what reaches each layer's weights. `hidden_state_gradients` is the
vanishing gradient itself: how much the loss depends on the hidden state h_t at each time
step t. Keras' RNN layers run the whole loop inside one op, so h_t never exists as a tensor
a tape could watch; here the layer's own cell (same weights) is stepped in Python under the
tape instead, each h_t is kept, and the rest of the model runs on the result. The gradient
with respect to h_t is then the total derivative through every later step, which is what
decays over t in a SimpleRNN and what gates keep alive in an LSTM or GRU.

The model families build chains of layers, so running `model.layers` in order reproduces
the model; a model that is not a chain is not supported.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def layer_gradient_norms(model: keras.Model, inputs, labels) -> dict[str, float]:
    """Return the L2 norm of ∂loss/∂W per layer, input to output, over its weight matrices.

    W is every kernel a layer has: a Dense or Conv kernel, a recurrent layer's input and
    recurrent kernels (both directions when bidirectional), an embedding table. Biases and
    normalisation scales are left out: they are not where the signal is multiplied.
    """
    matrices = {layer.name: [weight for weight in layer.trainable_weights
                             if weight.path.rsplit("/", 1)[-1].endswith(("kernel", "embeddings"))]
                for layer in model.layers}
    matrices = {name: weights for name, weights in matrices.items() if weights}
    flat = [weight for weights in matrices.values() for weight in weights]
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=inputs, y=labels, y_pred=model(inputs, training=False))
    gradients = iter(tape.gradient(loss, flat))
    norms = {}
    for name, weights in matrices.items():
        parts = [next(gradients) for _ in weights]
        parts = [tf.convert_to_tensor(part) for part in parts if part is not None]
        if parts:
            norms[name] = float(tf.linalg.global_norm(parts))
    return norms


def is_recurrent(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))


def first_recurrent(model: keras.Model) -> keras.layers.Layer | None:
    return next((layer for layer in model.layers if is_recurrent(layer)), None)


def _step_through(rnn: keras.layers.RNN, sequence: tf.Tensor, mask: tf.Tensor | None
                  ) -> tuple[list[tf.Tensor], tf.Tensor]:
    """Run `rnn`'s cell step by step; return every h_t and the layer's output."""
    cell = rnn.cell
    batch = tf.shape(sequence)[0]
    states = cell.get_initial_state(batch_size=batch)
    states = list(states) if isinstance(states, (list, tuple)) else [states]
    hidden = []
    for step in range(sequence.shape[1]):
        output, new_states = cell(sequence[:, step], states, training=False)
        new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
        if mask is not None:  # a padded step leaves the state as it was, as Keras' RNN does
            keep = mask[:, step, tf.newaxis]
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
            output = new_states[0]
        hidden.append(output)
        states = [output, *new_states[1:]]  # h_t itself carries on: its gradient is total
    result = tf.stack(hidden, axis=1) if rnn.return_sequences else hidden[-1]
    return hidden, result


def hidden_state_gradients(model: keras.Model, inputs, labels) -> np.ndarray:
    """Return the mean over examples of ‖∂loss/∂h_t‖ for each step t of the first RNN layer.

    For a bidirectional layer, h_t is the forward direction's state (the backward one runs
    as usual). Raises ValueError for a model without a recurrent layer.
    """
    recurrent = first_recurrent(model)
    if recurrent is None:
        raise ValueError(f"model {model.name} has no recurrent layer")
    forward = recurrent.forward_layer if isinstance(recurrent, keras.layers.Bidirectional) \
        else recurrent
    x = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        mask = None
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):  # Functional models list theirs
                continue
            if layer is recurrent:
                hidden, x_forward = _step_through(forward, tf.cast(x, forward.compute_dtype), mask)
                if forward is recurrent:
                    x = x_forward
                else:
                    backward = recurrent.backward_layer(x, mask=mask, training=False)
                    if recurrent.return_sequences:
                        backward = tf.reverse(backward, axis=[1])
                    x = tf.concat([x_forward, tf.cast(backward, x_forward.dtype)], axis=-1)
                mask = None
                continue
            next_mask = layer.compute_mask(x, mask) if layer.supports_masking or \
                isinstance(layer, keras.layers.Embedding) else None
            x = layer(x, training=False)
            mask = next_mask
        loss = model.compute_loss(x=inputs, y=labels, y_pred=x)
    gradients = tape.gradient(loss, hidden)
    norms = [tf.reduce_mean(tf.norm(tf.cast(gradient, tf.float32), axis=-1))
             if gradient is not None else tf.constant(0.0) for gradient in gradients]
    return tf.stack(norms).numpy()
