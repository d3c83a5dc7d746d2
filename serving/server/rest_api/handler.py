"""The REST API's routes and handlers: TF Serving's HttpRestApiHandler::ProcessRequest.

Same path regexes (http_rest_api_util.cc), same dispatch, same messages and status codes;
`http_app` carries these requests over HTTP, `json_requests` and `json_responses` turn
bodies into tensors and back, `proto_json` prints status and metadata.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_pb2,
    regression_pb2,
)

from serving.server.core import errors, examples, inference
from serving.server.core.metadata import SIGNATURE_DEF_FIELD, model_metadata
from serving.server.management.manager import ModelManager
from serving.server.rest_api import json_requests, json_responses
from serving.server.rest_api.json_writer import error_body
from serving.server.rest_api.proto_json import proto_json

log = logging.getLogger("serving.server")

# http_rest_api_util.cc: kPredictionApiGegex, kModelStatusApiRegex, kHTTPRestApiHandlerPathRegex.
_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
_MAX_INT64 = 2**63 - 1
_EXAMPLE_APIS = {
    "classify": (classification_pb2.ClassificationRequest, examples.classify, json_responses.classify_response),
    "regress": (regression_pb2.RegressionRequest, examples.regress, json_responses.regress_response),
}


class _PathInfoError(errors.ServingError):
    """ParseModelInfo's failures: HttpRestApiHandler returns them before it writes the JSON
    error body, so TF Serving answers with the status and an empty body."""


@dataclass
class RestResult:
    status: int
    body: bytes
    model_name: str = ""
    api: str = ""
    code: str = "OK"


def _match_path(method: str, path: str) -> re.Match | None:
    """Return the match of the path pattern for this method (POST or GET), else None."""
    pattern = _PREDICT_PATH if method == "POST" else _STATUS_PATH if method == "GET" else None
    return pattern.fullmatch(path) if pattern else None


class RestHandler:
    """TF Serving's REST request processing, independent of the HTTP transport."""

    def __init__(self, manager: ModelManager, method_check: bool = False):
        self.manager = manager
        self.method_check = method_check

    def process(self, method: str, raw_path: str, body: bytes) -> RestResult:
        """Return the response for one /v1/... request (never raises)."""
        model_name, api = self.labels(method, raw_path)
        try:
            return RestResult(200, self._dispatch(method, raw_path, body), model_name, api)
        except Exception as failure:
            error = errors.from_exception(failure)
            if not isinstance(failure, errors.ServingError):
                log.exception("REST %s %s failed unexpectedly", method, raw_path)
            body = b"" if isinstance(failure, _PathInfoError) else error_body(error.message)
            return RestResult(error.http_status, body, model_name, api, error.code_name)

    @staticmethod
    def labels(method: str, path: str) -> tuple[str, str]:
        """Return the (model_name, API) labels TF Serving gives a REST request's metrics.

        The model name is taken from the path whenever it matches the API's pattern, even if
        the request then fails; API is the verb of a POST and '' for anything else.
        """
        match = _match_path(method, path)
        if match is None:
            return "", ""
        name = unquote(match.group(1)) if match.group(1) else ""
        return name, match.group(4) if method == "POST" else ""

    def _dispatch(self, method: str, path: str, body: bytes) -> bytes:
        malformed = errors.invalid_argument(f"Malformed request: {method} {path}")
        match = _match_path(method, path)
        if match is None:
            raise malformed
        name, version, label, verb = match.groups()
        name = unquote(name) if name else ""
        spec = self._model_spec(name, version, unquote(label) if label else None)
        if method == "POST":
            handlers = {"predict": self._predict, "classify": self._classify, "regress": self._regress}
            if verb not in handlers:
                raise malformed
            return handlers[verb](spec, body)
        if not name:
            raise errors.invalid_argument("Missing model name in request.")
        if verb == "metadata":
            return self._metadata(spec)
        return proto_json(self.manager.model_status(spec)).encode()

    @staticmethod
    def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=name)
        if version is not None and label is not None:
            raise errors.invalid_argument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if version is not None:
            # absl::SimpleAtoi into int64; the length test keeps int() from Python's digit cap.
            digits = version.lstrip("0") or "0"
            if len(digits) > len(str(_MAX_INT64)) or int(digits) > _MAX_INT64:
                raise _PathInfoError(grpc.StatusCode.INVALID_ARGUMENT,
                                     f"Failed to convert version: {version} to numeric.")
            spec.version.value = int(digits)
        if label is not None:
            spec.version_label = label
        return spec

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        servable = None

        def input_infos(signature_name: str):
            nonlocal servable
            servable = self.manager.resolve(spec)
            resolved = signature_name or inference.DEFAULT_SIGNATURE
            signature = servable.signature_defs.get(resolved)
            if signature is None:
                raise errors.invalid_argument(f'Serving signature name: "{resolved}" not found in signature def')
            return signature.inputs

        signature_name, inputs, row_format = json_requests.parse_predict(body, input_infos)
        servable = self.manager.resolve(spec) if servable is None else servable
        outputs = inference.predict_arrays(servable, signature_name, inputs, method_check=self.method_check)
        return json_responses.predict_response(outputs, row_format)

    def _classify(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        return self._run_examples("classify", spec, body)

    def _regress(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        return self._run_examples("regress", spec, body)

    def _run_examples(self, verb: str, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        """Return the body of a :classify or :regress call (JSON -> request proto -> JSON)."""
        request_class, run, respond = _EXAMPLE_APIS[verb]
        signature_name, model_input = json_requests.parse_examples(body)
        request = request_class(model_spec=spec, input=model_input)
        servable = self.manager.resolve(spec)
        try:
            request.model_spec.signature_name = signature_name
        except UnicodeEncodeError:  # bytes that are not UTF-8 name no signature (keys are UTF-8)
            raise errors.invalid_argument(f"No signature was found with the name: {signature_name}") from None
        response = run(servable, request, method_check=self.method_check)
        return respond(response.result)

    def _metadata(self, spec: model_pb2.ModelSpec) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
        request.model_spec.CopyFrom(spec)
        response = model_metadata(request, self.manager.resolve)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
        # http_rest_api_util.cc prints the two parts separately and joins them like this.
        return (f'{{\n"model_spec":{proto_json(response.model_spec)},\n"metadata": '
                f'{{"signature_def": {proto_json(signatures)}}}\n}}\n').encode()
