"""gRPC client: PredictionService and ModelService through tensorflow-serving-api stubs."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.client.errors import ClientError
from serving.codec import to_ndarray, to_tensor_proto

_MAX_MESSAGE = 2**31 - 1


def model_spec(model: str, signature_name: str = "", version: int | None = None,
               label: str | None = None) -> model_pb2.ModelSpec:
    """Return a ModelSpec naming a model and, optionally, a signature and version or label."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    spec = model_pb2.ModelSpec(name=model, signature_name=signature_name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


class GrpcClient:
    """A connection to a model server's gRPC port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8500, timeout: float = 30.0):
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            f"{host}:{port}",
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                     ("grpc.max_send_message_length", _MAX_MESSAGE)],
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def predict(self, model: str, inputs: Mapping[str, np.ndarray], *, signature_name: str = "",
                version: int | None = None, label: str | None = None) -> dict[str, np.ndarray]:
        """Return the signature's outputs for `inputs` (name -> array), as numpy arrays."""
        request = predict_pb2.PredictRequest(model_spec=model_spec(model, signature_name, version, label))
        for name, value in inputs.items():
            # tensor_content: one bytes copy, far cheaper than per-element repeated fields.
            request.inputs[name].CopyFrom(to_tensor_proto(np.asarray(value), as_content=True))
        response = self._call(self._predictions.Predict, request)
        return {name: to_ndarray(proto, name) for name, proto in response.outputs.items()}

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None):
        """Return the model's signature_def map as JSON (signature name -> SignatureDef dict)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(model, "", version, label), metadata_field=["signature_def"]
        )
        response = self._call(self._predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        # The same JSON shape the REST API returns, so callers need not care which they use.
        return json_format.MessageToDict(signatures, preserving_proto_field_name=True)["signature_def"]

    def status(self, model: str) -> list[tuple[int, str]]:
        """Return [(version, state name)] for every version the server knows, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(model))
        response = self._call(self._models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State
        return [(entry.version, state.Name(entry.state)) for entry in response.model_version_status]

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ClientError(error.code().name, error.details() or "") from None

    def close(self) -> None:
        self._channel.close()
