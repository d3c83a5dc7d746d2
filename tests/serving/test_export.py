"""Export: TF Serving's layout and signatures, atomic publication, warmup, parity."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from models import InputSpec, get_family
from serving import export
from tests.conftest import pattern

SPEC = InputSpec.image(12, 12, 1)
CLASSES = ("bar", "column", "diagonal")


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([pattern(i % 3, 12, rng) for i in range(16)])[..., None]


@pytest.fixture(scope="module")
def cnn():
    tf.keras.utils.set_random_seed(0)
    return get_family("cnn").build(SPEC, 3, **get_family("cnn").TINY)


def stage(model, tmp_path, samples, spec=SPEC, classes=CLASSES, **kwargs):
    return export.stage(model, model_dir=tmp_path / "tiny", model_name="tiny", input_spec=spec,
                        class_names=classes, sample_inputs=samples,
                        warmup_batch_sizes=kwargs.get("warmup", (1, 4)),
                        parity_tolerance=1e-5)


def test_published_version_has_tf_serving_layout_and_signatures(tmp_path, cnn, samples):
    staged = stage(cnn, tmp_path, samples)
    assert staged.path.name.startswith(".staging-") and staged.parity_max_abs_diff <= 1e-5
    assert export.version_dirs(tmp_path / "tiny") == []  # invisible until published
    path = export.publish(staged, 3)
    assert path == tmp_path / "tiny/3" and export.version_dirs(tmp_path / "tiny") == [3]
    assert (path / "assets/class_names.txt").read_text().split() == list(CLASSES)
    loaded = tf.saved_model.load(str(path))
    default = loaded.signatures["serving_default"]
    assert list(default.structured_input_signature[1]) == ["image"]
    assert default.structured_input_signature[1]["image"].dtype == tf.uint8
    assert set(default.structured_outputs) == {"probabilities", "class_id", "class_name"}
    outputs = default(image=tf.constant(samples[:5]))
    assert outputs["probabilities"].shape == (5, 3)
    expected = [CLASSES[i] for i in outputs["class_id"].numpy()]
    assert [name.decode() for name in outputs["class_name"].numpy()] == expected


def test_method_names_let_tf_serving_classify(tmp_path, cnn, samples):
    from tensorflow.core.protobuf import saved_model_pb2

    path = export.publish(stage(cnn, tmp_path, samples), 1)
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def
    assert signatures["classify"].method_name == "tensorflow/serving/classify"
    assert signatures["serving_default"].method_name == "tensorflow/serving/predict"
    fingerprint = tf.saved_model.experimental.read_fingerprint(str(path))
    assert fingerprint.saved_model_checksum  # regenerated after the edit


def encode(image: np.ndarray, fmt: str, size: int | None = None) -> bytes:
    picture = Image.fromarray(image.squeeze(-1))
    if size:
        picture = picture.resize((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def test_encoded_images_give_the_pixel_signature_answer(tmp_path, cnn, samples):
    path = export.publish(stage(cnn, tmp_path, samples), 1)
    loaded = tf.saved_model.load(str(path))
    pixels = loaded.signatures["serving_default"](image=tf.constant(samples[:4]))
    png = loaded.signatures["predict_image_bytes"](
        image_bytes=tf.constant([encode(image, "PNG") for image in samples[:4]]))
    np.testing.assert_allclose(png["probabilities"], pixels["probabilities"], atol=1e-6)
    # A larger JPEG is decoded and resized in the graph to the model's 12x12.
    jpeg = loaded.signatures["predict_image_bytes"](
        image_bytes=tf.constant([encode(samples[0], "JPEG", size=48)]))
    assert jpeg["probabilities"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["predict_image_bytes"](image_bytes=tf.constant([b"not an image"]))


def test_classify_signature_reads_tf_examples(tmp_path, cnn, samples):
    path = export.publish(stage(cnn, tmp_path, samples), 1)
    loaded = tf.saved_model.load(str(path))
    example = tf.train.Example(features=tf.train.Features(feature={"image": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[encode(samples[0], "PNG")]))}))
    result = loaded.signatures["classify"](inputs=tf.constant([example.SerializeToString()]))
    assert [c.decode() for c in result["classes"].numpy()[0]] == list(CLASSES)
    pixels = loaded.signatures["serving_default"](image=tf.constant(samples[:1]))
    np.testing.assert_allclose(result["scores"], pixels["probabilities"], atol=1e-6)


def test_warmup_requests_are_real_samples_per_batch_size(tmp_path, cnn, samples):
    path = export.publish(stage(cnn, tmp_path, samples, warmup=(1, 4, 64)), 1)
    records = list(tf.data.TFRecordDataset(str(path / "assets.extra/tf_serving_warmup_requests")))
    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
                for r in records]
    assert [r.inputs["image"].tensor_shape.dim[0].size for r in requests] == [1, 4]  # 64 > 16
    assert all(r.model_spec.name == "tiny" and r.model_spec.signature_name == "serving_default"
               for r in requests)
    np.testing.assert_array_equal(tf.make_ndarray(requests[1].inputs["image"]), samples[:4])


def test_failed_staging_leaves_nothing_behind(tmp_path, cnn):
    wrong_shape = np.zeros((4, 5, 5, 1), np.uint8)
    with pytest.raises(ValueError):  # the model rejects 5x5 images during the parity check
        stage(cnn, tmp_path, wrong_shape)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_publish_never_overwrites_a_version(tmp_path, cnn, samples):
    export.publish(stage(cnn, tmp_path, samples), 1)
    staged = stage(cnn, tmp_path, samples)
    with pytest.raises(export.ExportError, match="already exists"):
        export.publish(staged, 1)
    assert not staged.path.exists() and export.version_dirs(tmp_path / "tiny") == [1]


def test_text_models_export_with_a_string_input(tmp_path):
    spec = InputSpec.text(("good", "bad", "film"), sequence_length=5)
    model = get_family("rnn").build(spec, 2, **get_family("rnn").TINY)
    texts = np.array([b"good film", b"bad film", b"film", b"good"])
    path = export.publish(export.stage(
        model, model_dir=tmp_path / "text", model_name="text", input_spec=spec,
        class_names=("neg", "pos"), sample_inputs=texts, warmup_batch_sizes=(1,),
        parity_tolerance=1e-5), 1)
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "classify"}
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts))
    assert outputs["probabilities"].shape == (4, 2)


def test_demo_model_is_float32_under_a_mixed_precision_policy(tmp_path):
    import keras

    from serving.bench.demo_model import export_demo_model, sample_pixels

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        version = export_demo_model(tmp_path / "demo", 1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    outputs = tf.saved_model.load(str(version)).signatures["serving_default"](
        image=tf.constant(sample_pixels(2)))
    assert outputs["probabilities"].dtype == tf.float32
