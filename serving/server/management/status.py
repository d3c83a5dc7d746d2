"""GetModelStatus: the state of every version of a model, as get_model_status_impl.cc answers.

The manager records each version's state (and the error of a failed load) as it goes;
`status_response` turns that history into TF Serving's response.
"""

from __future__ import annotations

from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.server.core import errors

State = get_model_status_pb2.ModelVersionStatus.State
# version -> (State, the error that ended it or None)
History = dict[int, tuple[int, errors.ServingError | None]]


def status_response(spec: model_pb2.ModelSpec,
                    history: History) -> get_model_status_pb2.GetModelStatusResponse:
    """Return GetModelStatus's answer for `spec` from the model's history, newest first."""
    response = get_model_status_pb2.GetModelStatusResponse()
    if spec.HasField("version"):
        version = spec.version.value
        if version not in history:
            raise errors.not_found(f"Could not find version {version} of model {spec.name}")
        selected = [version]
    else:
        if not history:
            raise errors.not_found(f"Could not find any versions of model {spec.name}")
        selected = sorted(history, reverse=True)
    for version in selected:
        state, error = history[version]
        entry = response.model_version_status.add(version=version, state=state)
        entry.status.SetInParent()  # TF Serving always reports a status, OK included
        if error is not None:
            entry.status.error_code = error.code.value[0]
            entry.status.error_message = error.message
    return response
