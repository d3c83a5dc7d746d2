"""Hostile requests answer TF Serving's client errors, cheaply, never a 5xx (issue 17).

Huge numbers (in bodies and in version paths), documents nested past any tensor's rank,
TensorProtos whose shape claims more than their bytes, and rank-0 string outputs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import codec
from serving.server.core.errors import ServingError
from serving.server.management.loader import load_servable
from serving.server.management.manager import ManagerOptions, ModelManager
from serving.server.rest_api import json_reader, json_responses
from serving.server.rest_api.handler import RestHandler

TOO_BIG = "Number too big to be stored in double. at offset: 1"


@pytest.mark.parametrize("body, message", [
    (b"[" + b"9" * 5000 + b"]", TOO_BIG),
    (b"[-" + b"9" * 5000 + b"]", TOO_BIG),
    (b"[" + b"9" * 400 + b".5]", TOO_BIG),
    (b"[1e" + b"9" * 5000 + b"]", TOO_BIG),
    (b"[1e+" + b"0" * 5000 + b"309]", TOO_BIG),
])
def test_thousands_of_digits_are_rapidjson_errors_not_python_limits(body, message):
    with pytest.raises(ServingError) as raised:
        json_reader.parse(body)
    assert raised.value.code_name == "INVALID_ARGUMENT"
    assert raised.value.message == f"JSON Parse error: {message}"


def test_tiny_exponents_and_leading_zero_exponents_still_parse():
    assert json_reader.parse(b"[1e-" + b"9" * 5000 + b"]") == [0.0]
    assert json_reader.parse(b"[1e+" + b"0" * 5000 + b"5]") == [100000.0]


def test_nesting_is_refused_while_parsing_past_orjsons_limit():
    deepest = b"[" * json_reader.MAX_DEPTH + b"]" * json_reader.MAX_DEPTH
    assert json_reader.parse(deepest) is not None
    started = time.perf_counter()
    with pytest.raises(ServingError, match=f"Nesting deeper than 1024 levels. at offset: {json_reader.MAX_DEPTH}"):
        json_reader.parse(b"[" * 2_000_000)
    assert time.perf_counter() - started < 0.5  # was 16 s and hundreds of MiB


@pytest.mark.parametrize("version", ["9" * 5000, "18446744073709551616", "9223372036854775808"])
def test_version_past_int64_in_the_path_is_400_with_tf_servings_empty_body(version):
    # ParseModelInfo fails before HttpRestApiHandler writes its JSON body (TF_RETURN_IF_ERROR).
    result = RestHandler(ModelManager(ManagerOptions())).process(
        "POST", f"/v1/models/m/versions/{version}:predict", b"{}")
    assert (result.status, result.body, result.code) == (400, b"", "INVALID_ARGUMENT")


def test_version_with_leading_zeros_converts_like_simple_atoi():
    result = RestHandler(ModelManager(ManagerOptions())).process(
        "GET", "/v1/models/m/versions/" + "0" * 5000 + "3", b"")
    assert result.status == 404  # parsed as version 3 of an unknown model


def _tensor(dtype: int, shape: list[int], **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("proto", [
    _tensor(types_pb2.DT_FLOAT, [2**31, 2**31, 1, 1]),
    _tensor(types_pb2.DT_FLOAT, [2**63 - 1]),
    _tensor(types_pb2.DT_FLOAT, [2**40], float_val=[1.0]),
    _tensor(types_pb2.DT_STRING, [2**40]),
    _tensor(types_pb2.DT_HALF, [2**40]),
    _tensor(types_pb2.DT_FLOAT, [2], tensor_content=b"1234567"),
    _tensor(types_pb2.DT_HALF, [1], tensor_content=b"123"),
    _tensor(types_pb2.DT_FLOAT, [4], tensor_content=np.zeros(2, np.float32).tobytes()),
], ids=["2^62", "2^63-1", "2^40 from one value", "strings", "half", "7 bytes", "3 half bytes", "short content"])
def test_protos_claiming_more_than_they_carry_are_parsing_errors(proto):
    with pytest.raises(codec.TensorParsingError, match="tensor parsing error: x"):
        codec.to_ndarray(proto, "x")


def test_repeated_last_value_fills_up_to_the_documented_bound():
    limit_elements = codec.MAX_FILLED_BYTES // 4
    filled = codec.to_ndarray(_tensor(types_pb2.DT_FLOAT, [limit_elements], float_val=[2.0]), "x")
    assert filled.shape == (limit_elements,) and filled[-1] == 2.0
    del filled
    with pytest.raises(codec.TensorParsingError):
        codec.to_ndarray(_tensor(types_pb2.DT_FLOAT, [limit_elements + 1], float_val=[2.0]), "x")


def test_rank_0_string_output_is_written_as_b64_in_columnar_responses(tmp_path):
    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def echo(self, text):
            return {"text_bytes": text}

    module = Echo()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.echo})
    servable = load_servable("echo", 1, str(tmp_path / "1"), {"serve"})
    outputs = servable.run("serving_default", {"text": np.array(b"\x00hi\x00", dtype=object)})
    body = json_responses.predict_response(outputs, row_format=False)
    assert body == b'{\n    "outputs": {\n        "b64": "AGhpAA=="\n    }\n}'


def test_tensors_deeper_than_numpy_holds_are_invalid_argument_not_faults():
    from serving.server.rest_api.json_values import json_to_array

    with pytest.raises(ServingError, match="nests lists deeper than 64 levels") as raised:
        json_to_array(json_reader.parse(b"[" * 65 + b"1.0" + b"]" * 65), types_pb2.DT_FLOAT)
    assert raised.value.code_name == "INVALID_ARGUMENT"
    with pytest.raises(codec.TensorParsingError):
        codec.to_ndarray(_tensor(types_pb2.DT_FLOAT, [1] * 65, float_val=[1.0]), "x")


def test_examples_signature_name_that_is_not_utf8_is_no_signature(model_store):
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0.05))
    from serving.server.management import config as config_lib

    manager.reload(config_lib.parse_config_text(
        f'model_config_list {{ config {{ name: "hpt" base_path: "{model_store["hpt_v1"].parent}" '
        'model_platform: "tensorflow" } }'))
    try:
        result = RestHandler(manager).process(
            "POST", "/v1/models/hpt:regress", b'{"signature_name": "\xe2x", "examples": [{"x": 1.0}]}')
        assert (result.status, result.code) == (400, "INVALID_ARGUMENT")
        assert b"No signature was found with the name: " in result.body
    finally:
        manager.stop()
