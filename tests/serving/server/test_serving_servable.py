"""Loading and calling one servable as TF Serving's Session would: shapes left to the graph,
signature defaults, TensorFlow 1.0-era graphs, and kernel errors without Python's wrapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorflow_serving.apis import regression_pb2

from serving.server.core import examples, inference
from serving.server.core.errors import ServingError, kernel_message
from serving.server.management.loader import LEGACY_SHAPE_PRODUCER, load_servable
from tests.serving.serving_fixtures import export_half_plus_two


def export_v1(target: Path, build, producer: int | None = None) -> Path:
    """Save the TF1 graph `build(v1)` makes (it returns the signature map) at `target`.

    With `producer`, rewrite saved_model.pb as a TensorFlow 1.0-era writer left it: that
    GraphDef version, unknown Placeholder shapes written as `shape {}`, and signature
    tensors without a shape (as in TF Serving's saved_model_half_plus_three).
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        signatures = build(v1)
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(target))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    if producer is not None:
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((target / "saved_model.pb").read_bytes())
        for meta_graph in saved_model.meta_graphs:
            meta_graph.graph_def.versions.producer = producer
            for node in meta_graph.graph_def.node:
                if node.op == "Placeholder" and node.attr["shape"].shape.unknown_rank:
                    node.attr["shape"].shape.Clear()
            for signature in meta_graph.signature_def.values():
                for info in [*signature.inputs.values(), *signature.outputs.values()]:
                    info.ClearField("tensor_shape")
        (target / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    return target


def half_plus_three(v1):
    """TF Serving's saved_model_half_plus_three, as its testdata script builds it."""
    import tensorflow as tf

    utils = v1.saved_model.signature_def_utils
    serialized = v1.placeholder(tf.string, name="tf_example")  # unknown shape
    # TensorFlow 1.0's op, which wants a vector of examples (ParseExampleV2 takes scalars).
    parsed = tf.raw_ops.ParseExample(
        serialized=serialized, names=tf.constant([], tf.string), sparse_keys=[], sparse_types=[],
        dense_keys=[tf.constant("x")], dense_defaults=[tf.constant([], tf.float32)],
        dense_shapes=[[1]])
    x = tf.identity(parsed.dense_values[0], name="x")
    y = tf.add(v1.Variable(0.5, name="a") * x, v1.Variable(3.0, name="c"), name="y")
    return {"serving_default": utils.predict_signature_def({"x": x}, {"y": y}),
            "tensorflow/serving/regress": utils.regression_signature_def(serialized, y)}


def scaled(v1):
    """y = x * scale, where `scale` may be left out of a request (its default is 10)."""
    import tensorflow as tf

    x = v1.placeholder(tf.float32, [None], name="x")
    scale = v1.placeholder(tf.float32, [], name="scale")
    info = v1.saved_model.utils.build_tensor_info
    signature = v1.saved_model.signature_def_utils.build_signature_def(
        {"x": info(x), "scale": info(scale)}, {"y": info(tf.multiply(x, scale, name="y"))},
        "tensorflow/serving/predict", defaults={"scale": tf.constant(10.0)})
    return {"serving_default": signature}


def regress_request(values):
    import tensorflow as tf

    request = regression_pb2.RegressionRequest()
    request.model_spec.signature_name = "tensorflow/serving/regress"
    for value in values:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=[value])))
    return request


def test_legacy_graphs_read_empty_shapes_as_unknown_like_the_cpp_loader(tmp_path):
    path = export_v1(tmp_path / "1", half_plus_three, producer=LEGACY_SHAPE_PRODUCER)
    servable = load_servable("half_plus_three", 1, str(path), {"serve"})
    # api_rest.md's example answers, from a graph whose `x` says `shape {}`.
    outputs = inference.predict_arrays(servable, "", {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    np.testing.assert_array_equal(outputs["y"], [3.5, 4.0, 5.5])
    response = examples.regress(servable, regress_request([1.0, 2.0]))
    assert [result.value for result in response.result.regressions] == [3.5, 4.0]
    # Metadata still shows the SignatureDefs as written.
    assert not servable.signature_defs["serving_default"].inputs["x"].tensor_shape.dim


def test_inputs_of_other_shapes_reach_the_graph_unless_shapes_are_checked(tmp_path):
    path = export_half_plus_two(tmp_path, 1)
    servable = load_servable("half_plus_two", 1, str(path), {"serve"})
    columns = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)  # x is [-1, 1]
    np.testing.assert_array_equal(
        inference.predict_arrays(servable, "", {"x": columns})["y"], [[2.5, 3.0], [3.5, 4.0]])
    servable.check_shapes = True
    with pytest.raises(ServingError, match=r"has shape \[2,2\] but the signature expects \[-1,1\]"):
        inference.predict_arrays(servable, "", {"x": columns})


def test_missing_inputs_take_the_signature_defaults(tmp_path):
    path = export_v1(tmp_path / "1", scaled)
    servable = load_servable("scaled", 1, str(path), {"serve"})
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(inference.predict_arrays(servable, "", {"x": x})["y"], [10.0, 20.0])
    given = {"x": x, "scale": np.array(3.0, np.float32)}
    np.testing.assert_array_equal(inference.predict_arrays(servable, "", given)["y"], [3.0, 6.0])
    with pytest.raises(ServingError, match="Signature input alias: x.* not found in request"):
        inference.predict_arrays(servable, "", {"scale": np.array(3.0, np.float32)})


def test_kernel_errors_read_as_the_session_reports_them(tmp_path):
    path = export_v1(tmp_path / "1", half_plus_three)
    servable = load_servable("half_plus_three", 1, str(path), {"serve"})
    request = regress_request([1.0])
    request.input.example_list.examples[0].features.feature.pop("x")
    with pytest.raises(ServingError) as raised:
        examples.regress(servable, request)
    assert raised.value.code_name == "INVALID_ARGUMENT"
    assert raised.value.message.startswith(
        "Name: <unknown>, Feature: x (data type: float) is required but could not be found.\n\t [[{{node ")
    assert "Graph execution error" not in raised.value.message and "[Op:" not in raised.value.message


def test_kernel_message_keeps_only_what_the_kernel_said():
    wrapped = ("Graph execution error:\n\nDetected at node conv/Relu defined at (most recent call last):\n"
               '  File "/srv/app/server.py", line 9, in <module>\n    run()\n\n'
               "Computed output size would be negative\n\t [[{{node conv/Relu}}]] [Op:__inference_pruned_42]")
    assert kernel_message(wrapped) == "Computed output size would be negative\n\t [[{{node conv/Relu}}]]"
    assert kernel_message("plain message") == "plain message"
