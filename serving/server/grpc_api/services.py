"""The gRPC API: PredictionService and ModelService, on the stubs of tensorflow-serving-api.

Handlers resolve the servable, run the shared inference code and map every failure to the
status TF Serving would send (message truncated at 1024 characters, as it does). Latency
and request counts feed the same metrics as TF Serving's prediction_service_impl.cc.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.server.core import errors, examples, inference
from serving.server.core.metadata import model_metadata
from serving.server.management.manager import ModelManager
from serving.server.metrics import Metrics

log = logging.getLogger("serving.server")


class _Handler:
    """Shared error handling and accounting for both services."""

    def __init__(self, manager: ModelManager, metrics: Metrics, method_check: bool, as_content: bool):
        self.manager, self.metrics = manager, metrics
        self.method_check, self.as_content = method_check, as_content

    def serve(self, context, api: str, model_name: str, work: Callable, record: bool = True):
        started = time.perf_counter()
        try:
            response = work()
        except Exception as failure:
            error = errors.from_exception(failure)
            if not isinstance(failure, errors.ServingError):
                log.exception("%s failed unexpectedly", api)
            if record:
                self.metrics.count("request_count", (model_name, error.code_name))
            context.abort(error.code, error.grpc_message())
        if record:
            self.metrics.observe("request_latency", (model_name, api, "GRPC"), (time.perf_counter() - started) * 1e6)
            self.metrics.count("request_count", (model_name, "OK"))
        return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer, _Handler):
    """tensorflow.serving.PredictionService."""

    def Predict(self, request, context):
        return self.serve(context, "Predict", request.model_spec.name, lambda: inference.predict(
            self._resolve(request), request,
            as_content=self.as_content, method_check=self.method_check,
        ))

    def Classify(self, request, context):
        return self.serve(context, "Classify", request.model_spec.name, lambda: examples.classify(
            self._resolve(request), request, method_check=self.method_check,
        ))

    def Regress(self, request, context):
        return self.serve(context, "Regress", request.model_spec.name, lambda: examples.regress(
            self._resolve(request), request, method_check=self.method_check,
        ))

    def _resolve(self, request):
        # predict_impl.cc, classification_service.cc, regression_service.cc check this first.
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        return self.manager.resolve(request.model_spec)

    def MultiInference(self, request, context):
        # TF Serving resolves the servable from the first task's ModelSpec.
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return self.serve(context, "MultiInference", spec.name, lambda: examples.multi_inference(
            self.manager.resolve(spec), request, method_check=self.method_check,
        ), record=False)

    def GetModelMetadata(self, request, context):
        return self.serve(context, "GetModelMetadata", request.model_spec.name,
                          lambda: model_metadata(request, self.manager.resolve), record=False)


class ModelService(model_service_pb2_grpc.ModelServiceServicer, _Handler):
    """tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, manager: ModelManager, metrics: Metrics):
        _Handler.__init__(self, manager, metrics, False, False)

    def GetModelStatus(self, request, context):
        def work():
            if not request.HasField("model_spec"):
                raise errors.invalid_argument("Missing ModelSpec")
            return self.manager.model_status(request.model_spec)

        return self.serve(context, "GetModelStatus", request.model_spec.name, work, record=False)

    def HandleReloadConfigRequest(self, request, context):
        def work():
            if request.config.WhichOneof("config") != "model_config_list":
                raise errors.invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported"
                )
            before = {name: self.metrics.first_point(name) for name in request.metric_names}
            self.manager.reload(request.config)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.SetInParent()  # TF Serving always sets it, OK included
            for name, value in before.items():
                response.metric.add(name=name,
                                    int64_value_increase=self.metrics.first_point(name) - value)
            return response

        return self.serve(context, "HandleReloadConfigRequest", "", work, record=False)


def add_services(server: grpc.Server, manager: ModelManager, metrics: Metrics, *,
                 method_check: bool, as_content: bool) -> None:
    """Register both services on `server`."""
    prediction = PredictionService(manager, metrics, method_check, as_content)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, metrics), server)
