"""Test-time flips: the wrapped model answers the mean over an image and its mirror."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models import get_family
from models.cnn import TINY
from models.spec import InputSpec
from models.test_time import flip_averaged


def test_flip_averaged_is_the_mean_of_both_views_and_shares_the_weights():
    model = get_family("cnn").build(InputSpec.image(12, 10, 1), 3, **TINY, random_flip=True)
    wrapped = flip_averaged(model)
    images = np.random.default_rng(0).integers(0, 255, (5, 12, 10, 1)).astype("uint8")
    expected = (np.asarray(model(images, training=False))
                + np.asarray(model(images[:, :, ::-1], training=False))) / 2
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, atol=1e-6)
    assert wrapped.count_params() == model.count_params()
    assert wrapped.inputs[0].name == "image" and wrapped.output.dtype == "float32"
    assert wrapped(images[:1]).shape == (1, 3)  # a batch of one stays one answer


def test_flip_averaged_refuses_inputs_that_are_not_images():
    sequences = keras.Input(shape=(7, 3), name="sequence")
    model = keras.Model(sequences, keras.layers.Dense(2)(keras.layers.Flatten()(sequences)))
    with pytest.raises(ValueError, match="need image input"):
        flip_averaged(model)
