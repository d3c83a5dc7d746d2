"""Predict on one servable, with TF Serving's checks (servables/tensorflow/predict_util.cc).

Same validation order, status codes and messages as RunPredict, so clients see the errors
TF Serving would give; shared by the gRPC API, the REST API and warmup replay.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from serving.codec import TensorParsingError, to_ndarray, to_tensor_proto
from serving.server.core import errors
from serving.server.core.servable import DEFAULT_SIGNATURE, Servable, check_inputs

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"


def fill_model_spec(spec: model_pb2.ModelSpec, name: str, signature_name: str | None, version: int):
    """Fill a response ModelSpec as TF Serving's MakeModelSpec does."""
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    spec.version.value = version


def predict_signature(servable: Servable, signature_name: str, method_check: bool):
    """Return (resolved name, SignatureDef) for Predict, or TF Serving's error."""
    resolved = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(resolved)
    if signature is None:
        raise errors.failed_precondition(f'Serving signature key "{resolved}" not found.')
    if method_check and signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise errors.internal(
            "Expected prediction signature method_name to be one of "
            f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}"
        )
    return resolved, signature


def predict_arrays(
    servable: Servable,
    signature_name: str,
    inputs: Mapping[str, np.ndarray],
    output_filter: list[str] | tuple[str, ...] = (),
    method_check: bool = False,
) -> dict[str, np.ndarray]:
    """Return the named outputs of a Predict call given numpy inputs."""
    resolved, signature = predict_signature(servable, signature_name, method_check)
    _check_input_names(signature, inputs)
    missing = [alias for alias in signature.inputs if alias not in inputs]
    if missing:  # only aliases with a default get here (GetInputValues)
        inputs = {**inputs, **{alias: tf.make_ndarray(signature.defaults[alias]) for alias in missing}}
    aliases = _output_aliases(signature, output_filter)
    check_inputs(resolved, signature, inputs, shapes=servable.check_shapes)
    outputs = servable.run(resolved, inputs)
    return {alias: outputs[alias] for alias in aliases}


def _check_input_names(signature: meta_graph_pb2.SignatureDef, inputs: Mapping) -> None:
    """Raise TF Serving's errors for missing or unexpected input aliases."""
    request_keys, signature_keys = set(inputs), set(signature.inputs)
    defaults = set(signature.defaults)
    if len(request_keys) > len(signature_keys) or (
        len(request_keys) < len(signature_keys) and not defaults
    ):
        raise errors.invalid_argument(
            f"input size does not match signature: {len(request_keys)}!={len(signature_keys)} "
            f"len({{{','.join(sorted(request_keys))}}}) != len({{{','.join(sorted(signature_keys))}}})"
            f". Sent extra: {{{','.join(sorted(request_keys - signature_keys))}}}. "
            f"Missing but required: {{{','.join(sorted(signature_keys - request_keys))}}}."
        )
    for alias in sorted(signature_keys):
        if alias not in request_keys and alias not in defaults:
            info = signature.inputs[alias]
            raise errors.invalid_argument(
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request "
                f"and no default value provided. Inputs expected to be in the request "
                f"{{{','.join(sorted(request_keys))}}}, or default input alias set: "
                f"{','.join(sorted(defaults))}"
            )
    if request_keys - signature_keys:
        used = sorted(request_keys & signature_keys)
        raise errors.invalid_argument(
            f"Inputs contains invalid name. Used request inputs: {','.join(used)}, "
            f"request input: {','.join(sorted(request_keys))}"
        )


def _output_aliases(signature: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
    """Return the outputs to fetch: the filter if given (validated), else all of them."""
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise errors.invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def predict(
    servable: Servable,
    request: predict_pb2.PredictRequest,
    *,
    as_content: bool = False,
    method_check: bool = False,
) -> predict_pb2.PredictResponse:
    """Return the PredictResponse for a PredictRequest, as TF Serving's RunPredict does."""
    resolved, _ = predict_signature(servable, request.model_spec.signature_name, method_check)
    try:
        inputs = {alias: to_ndarray(proto, alias) for alias, proto in request.inputs.items()}
    except TensorParsingError as error:
        raise errors.invalid_argument(str(error)) from None
    outputs = predict_arrays(servable, resolved, inputs, list(request.output_filter), method_check)
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, request.model_spec.name, resolved, servable.version)
    for alias, value in outputs.items():
        response.outputs[alias].CopyFrom(to_tensor_proto(value, as_content))
    return response
