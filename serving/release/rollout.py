"""Live changes to a running model server: find it, reload its config in safe steps, read it back.

`make serve` records the server it started in `<models dir>/.server.json` (ports, config
file, pid, whether the config came from the registry). `apply` sends the steps of
`registry_config.rollout_steps` as HandleReloadConfigRequests and, after the first, waits
until every version it asks for is AVAILABLE, so a label only ever moves onto a loaded
version and clients asking for `stable` never see an error. Everything goes through TF
Serving's ModelService API, so it works against `tensorflow_model_server` too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)

from serving.release.registry_config import rollout_steps, specific_versions
from serving.server.management import config as config_lib

State = get_model_status_pb2.ModelVersionStatus.State


class RolloutError(RuntimeError):
    """A running server could not be reached or refused a step; one line says which and where."""


class ServerConnection:
    """TF Serving's ModelService and metadata calls on one gRPC address."""

    def __init__(self, address: str, timeout: float = 60.0):
        self.address, self.timeout = address, timeout
        self._channel = grpc.insecure_channel(address)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._predictions = None  # PredictionService's protos import TensorFlow: made on first use

    def close(self) -> None:
        self._channel.close()

    def _call(self, what: str, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise RolloutError(f"the model server at {self.address} is unreachable "
                                   f"({error.code().name}: {error.details()})") from None
            raise RolloutError(f"the model server at {self.address} refused {what}: "
                               f"{error.code().name}: {error.details()}") from None

    def status(self, model: str) -> dict[int, tuple[str, str]]:
        """Return {version: (state name, error message)}; {} for a model it does not know."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            return self._call("GetModelStatus", self._models.GetModelStatus, request)
        return {entry.version: (State.Name(entry.state), entry.status.error_message)
                for entry in response.model_version_status}

    def available(self, model: str) -> set[int]:
        return {version for version, (state, _) in self.status(model).items()
                if state == "AVAILABLE"}

    def label_version(self, model: str, label: str) -> int | None:
        """Return the version `label` points at on the server, None if it has no such label."""
        from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

        if self._predictions is None:
            self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        request.model_spec.version_label = label
        try:
            response = self._predictions.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                return None
            return self._call("GetModelMetadata", self._predictions.GetModelMetadata, request)
        return response.model_spec.version.value

    def reload(self, config: config_lib.ModelServerConfig) -> None:
        request = model_management_pb2.ReloadConfigRequest(config=config)
        response = self._call("the new config (HandleReloadConfigRequest)",
                              self._models.HandleReloadConfigRequest, request, timeout=600)
        if response.status.error_code:
            raise RolloutError(f"the model server at {self.address} refused the new config: "
                               f"{response.status.error_message}")

    def wait_available(self, wanted: Mapping[str, Iterable[int]], timeout: float) -> None:
        """Return once every wanted version is AVAILABLE; raise if one fails or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for model, versions in wanted.items():
                states = self.status(model)
                for version in versions:
                    state, error = states.get(version, ("UNKNOWN", ""))
                    if state == "END" and error:
                        raise RolloutError(f"the model server at {self.address} could not load "
                                           f"{model} version {version}: {error}")
                    if state != "AVAILABLE":
                        missing.append(f"{model} version {version} ({state})")
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RolloutError(f"the model server at {self.address} did not make "
                                   f"{', '.join(missing)} available within {timeout:.0f} s")
            time.sleep(0.2)


def loaded_versions(connection: ServerConnection, config) -> dict[str, set[int]]:
    """Return {model: AVAILABLE versions} for every model of `config`."""
    return {model.name: connection.available(model.name)
            for model in config.model_config_list.config}


def apply(connection: ServerConnection, current, target, timeout: float = 300.0) -> int:
    """Move the server from `current` to `target` in TF Serving's safe order; return steps sent.

    On a failure after the first step, the server is sent `current` back (best effort), so
    the served labels stay where they were.
    """
    config_lib.validate(target)
    steps = rollout_steps(current, target, loaded_versions(connection, current))
    sent = 0
    try:
        for step in steps:
            connection.reload(step)
            sent += 1
            connection.wait_available({model.name: specific_versions(model) or ()
                                       for model in step.model_config_list.config}, timeout)
    except RolloutError:
        if sent:
            try:
                connection.reload(current)
            except RolloutError:
                pass
        raise
    return sent
