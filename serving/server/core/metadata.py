"""GetModelMetadata: a servable's SignatureDefs, as both the gRPC and the REST API answer it.

TF Serving's get_model_metadata_impl.cc: only the 'signature_def' metadata field exists,
packed as a SignatureDefMap in an Any.
"""

from __future__ import annotations

from collections.abc import Callable

from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from serving.server.core import errors
from serving.server.core.servable import Servable

SIGNATURE_DEF_FIELD = "signature_def"


def model_metadata(request: get_model_metadata_pb2.GetModelMetadataRequest,
                   resolve: Callable[[model_pb2.ModelSpec], Servable],
                   ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Return GetModelMetadata's answer (only the 'signature_def' field exists).

    `resolve` finds the servable a ModelSpec names (the model manager's); the request is
    checked first, so a bad request is reported before an unknown model.
    """
    if not request.HasField("model_spec"):
        raise errors.invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise errors.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise errors.invalid_argument(f"Metadata field {field} is not supported")
    servable = resolve(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    return response
