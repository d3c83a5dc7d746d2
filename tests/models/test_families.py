"""The model families: same API, raw inputs, validated keywords, search space = defaults."""

from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pydantic
import pytest

from models import FAMILIES, InputSpec, get_family
from models.blocks import ACTIVATIONS

IMAGE = InputSpec.image(12, 12, 1)
SPECS = {
    "image": IMAGE,
    "text": InputSpec.text(("good", "bad", "film", "plot"), sequence_length=6),
    "sequence": InputSpec.sequence(10, 3),
}


def raw_batch(spec: InputSpec, size: int = 4):
    rng = np.random.default_rng(0)
    if spec.kind == "image":
        return rng.integers(0, 256, (size, *spec.shape), dtype=np.uint8)
    if spec.kind == "text":
        return np.array(["good film", "bad plot", "film", "unknown words"][:size])
    return rng.normal(size=(size, *spec.shape)).astype(np.float32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_offers_the_same_api(family):
    module = get_family(family)
    assert callable(module.build) and callable(module.search_space)
    assert isinstance(module.TINY, dict) and module.TINY


@pytest.mark.parametrize("family, kind", [("cnn", "image"), ("rnn", "image"), ("rnn", "text"),
                                          ("rnn", "sequence")])
def test_tiny_models_take_raw_named_input_and_give_probabilities(family, kind):
    spec = SPECS[kind]
    model = get_family(family).build(spec, 3, **get_family(family).TINY)
    assert model.inputs[0].name == spec.name
    assert model.output.name.startswith("probabilities") or model.layers[-1].name == "probabilities"
    probabilities = np.asarray(model(raw_batch(spec), training=False))
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_tiny_cnn_learns_a_visible_pattern():
    from tests.conftest import pattern

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 240)
    images = np.stack([pattern(int(label), 12, rng) for label in labels])[..., None]
    keras.utils.set_random_seed(0)
    model = get_family("cnn").build(IMAGE, 3, **get_family("cnn").TINY, learning_rate=0.01)
    history = model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fresh_hyperparameters_give_the_build_defaults(family):
    module = get_family(family)
    hp = keras_tuner.HyperParameters()
    module.search_space(hp, IMAGE, 3)
    for name, value in hp.values.items():
        assert module.DEFAULTS[name] == value, name


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds(activation):
    model = get_family("cnn").build(IMAGE, 3, **get_family("cnn").TINY, activation=activation)
    assert any(layer.name.endswith(f"{activation}1") for layer in model.layers)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_rnn_cells_stack_and_go_bidirectional(cell):
    model = get_family("rnn").build(IMAGE, 3, cell=cell, units=4, recurrent_layers=2,
                                    bidirectional=True, dense_units=0)
    names = [layer.name for layer in model.layers]
    assert f"bidirectional_{cell}1" in names and f"bidirectional_{cell}2" in names


def test_wrong_keywords_fail_with_the_field_named():
    with pytest.raises(pydantic.ValidationError, match="activation"):
        get_family("cnn").build(IMAGE, 3, activation="relux")
    with pytest.raises(ValueError, match="conv_blocks=4 pools a 12x12 image below 1x1"):
        get_family("cnn").build(IMAGE, 3, conv_blocks=4)
    with pytest.raises(ValueError, match="unknown model family 'transformer'"):
        get_family("transformer")
    with pytest.raises(ValueError, match="the cnn family reads images"):
        get_family("cnn").build(SPECS["text"], 3)


def test_label_smoothing_loss_matches_its_definition():
    from models.blocks import SmoothedSparseCrossentropy

    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 2])
    target = np.full((2, 3), 0.1 / 3) + np.eye(3)[labels] * 0.9
    expected = -(target * np.log(probabilities)).sum(axis=1).mean()
    loss = float(SmoothedSparseCrossentropy(0.1)(labels, probabilities))
    assert abs(loss - expected) < 1e-5
    model = get_family("cnn").build(IMAGE, 3, **get_family("cnn").TINY, label_smoothing=0.1)
    assert isinstance(model.loss, SmoothedSparseCrossentropy)


def test_augmentation_acts_in_training_only():
    module = get_family("cnn")
    model = module.build(IMAGE, 3, **module.TINY, random_shift=0.2, random_flip=True,
                         random_erasing=1.0)
    pixels = np.full((8, *IMAGE.shape), 200, np.uint8)
    rescaled = model.get_layer("rescale")(pixels)
    erase = model.get_layer("augment_erase")
    # Every training image loses a rectangle to the background; at inference none does.
    erased = np.asarray(erase(rescaled, training=True))
    assert all((image == 0).any() for image in erased)
    np.testing.assert_array_equal(np.asarray(erase(rescaled, training=False)), np.asarray(rescaled))
    np.testing.assert_array_equal(model.predict(pixels, verbose=0), model.predict(pixels, verbose=0))


@pytest.mark.parametrize("size", [(12, 12), (13, 11)])
def test_space_to_depth_folds_each_2x2_patch_into_channels_losing_no_pixel(size):
    spec = InputSpec.image(*size, 2)
    model = get_family("cnn").build(spec, 3, space_to_depth=True, conv_blocks=1, filters=4,
                                    dense_units=0)
    stem = keras.Model(model.input, model.get_layer("stem_fold").output)
    images = np.arange(2 * np.prod(size) * 2).reshape(2, *size, 2) % 251
    folded = np.asarray(stem(images.astype(np.uint8)))
    height, width = (size[0] + 1) // 2, (size[1] + 1) // 2
    assert folded.shape == (2, height, width, 8)
    # Pixel (2i + a, 2j + b), channel c lands at (i, j) in channel (2a + b) * C + c.
    padded = np.zeros((2, 2 * height, 2 * width, 2))
    padded[:, : size[0], : size[1]] = images / 255.0
    for a in (0, 1):
        for b in (0, 1):
            np.testing.assert_allclose(folded[..., (2 * a + b) * 2 : (2 * a + b) * 2 + 2],
                                       padded[:, a::2, b::2], rtol=1e-6)
    with pytest.raises(ValueError, match="conv_blocks=3 with space_to_depth pools a 12x12"):
        get_family("cnn").build(IMAGE, 3, conv_blocks=3, space_to_depth=True)
