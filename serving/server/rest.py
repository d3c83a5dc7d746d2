"""The HTTP/REST API: TF Serving's routes, status codes and JSON, as an ASGI app.

`RestHandler.process` is TF Serving's HttpRestApiHandler::ProcessRequest (same regexes,
same dispatch, same messages); `RestApp` is the transport, served by uvicorn (httptools
parser, uvloop when installed): it enforces --max_request_bytes (413), runs handlers on
--rest_api_num_threads threads with --rest_api_timeout_in_ms, serves the Prometheus page,
and answers unknown paths with libevent's 404 page like the real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from serving.server import errors, inference, json_api
from serving.server.grpc_api import SIGNATURE_DEF_FIELD, model_metadata
from serving.server.json_writer import error_body
from serving.server.manager import ModelManager
from serving.server.metrics import Metrics

log = logging.getLogger("serving.server")

# http_rest_api_util.cc: kPredictionApiGegex, kModelStatusApiRegex, kHTTPRestApiHandlerPathRegex.
_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
_API_PATH = re.compile(r"(?i)/v1/.*")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-allow-headers", b"Content-Type"),
]
_MAX_INT64 = 2**63 - 1
# How far past the limit an oversized body is drained before the connection is dropped.
_DRAIN_LIMIT = 4


def libevent_error_page(status: int, phrase: str) -> bytes:
    """Return the HTML body libevent's evhttp_send_error writes (what TF Serving sends)."""
    return (f"<HTML><HEAD>\n<TITLE>{status} {phrase}</TITLE>\n</HEAD><BODY>\n<H1>{phrase}</H1>\n"
            "</BODY></HTML>\n").encode()


@dataclass
class RestResult:
    status: int
    body: bytes
    model_name: str = ""
    api: str = ""
    code: str = "OK"


def _proto_json(message) -> str:
    """Return a proto as TF Serving's JSON printer writes it (1-space indent, all fields)."""
    as_dict = json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                        preserving_proto_field_name=True)
    return json.dumps(_in_tf_order(message.DESCRIPTOR, as_dict), indent=1)


def _in_tf_order(descriptor, value):
    """Return `value` (a message as a dict) with keys in the order TF Serving prints them.

    Its C++ printer writes plain fields in declaration order, then oneof members;
    json_format puts set fields first. Only the order changes, never the content.
    """
    if not isinstance(value, dict) or descriptor is None:
        return value
    if descriptor.GetOptions().map_entry:
        return value
    ordered = {}
    plain = [f for f in descriptor.fields if f.containing_oneof is None]
    oneofs = [f for f in descriptor.fields if f.containing_oneof is not None]
    for field in plain + oneofs:
        key = field.name
        if key not in value:
            continue
        ordered[key] = _field_in_tf_order(field, value[key])
    for key in value:  # Any-packed or unknown keys keep their place at the end
        ordered.setdefault(key, value[key])
    return ordered


def _field_in_tf_order(field, value):
    message = field.message_type
    if message is None:
        return value
    if message.GetOptions().map_entry:
        inner = message.fields_by_name["value"].message_type
        return {key: _in_tf_order(inner, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_tf_order(message, item) for item in value]
    return _in_tf_order(message, value)


class RestHandler:
    """TF Serving's REST request processing, independent of the HTTP transport."""

    def __init__(self, manager: ModelManager, method_check: bool = False):
        self.manager = manager
        self.method_check = method_check

    def process(self, method: str, raw_path: str, body: bytes) -> RestResult:
        """Return the response for one /v1/... request (never raises)."""
        model_name = api = ""
        try:
            model_name, api, output = self._dispatch(method, raw_path, body)
            return RestResult(200, output, model_name, api)
        except Exception as failure:
            error = errors.from_exception(failure)
            if not isinstance(failure, errors.ServingError):
                log.exception("REST %s %s failed unexpectedly", method, raw_path)
            return RestResult(error.http_status, error_body(error.message), model_name, api, error.code_name)

    def _dispatch(self, method: str, path: str, body: bytes) -> tuple[str, str, bytes]:
        malformed = errors.invalid_argument(f"Malformed request: {method} {path}")
        pattern = _PREDICT_PATH if method == "POST" else _STATUS_PATH if method == "GET" else None
        match = pattern.fullmatch(path) if pattern else None
        if match is None:
            raise malformed
        name, version, label, verb = match.groups()
        name = unquote(name) if name else ""
        spec = self._model_spec(name, version, unquote(label) if label else None)
        if method == "POST":
            handlers = {"predict": self._predict, "classify": self._classify, "regress": self._regress}
            if verb not in handlers:
                raise malformed
            return name, verb, handlers[verb](spec, body)
        if not name:
            raise errors.invalid_argument("Missing model name in request.")
        if verb == "metadata":
            return name, "metadata", self._metadata(spec)
        return name, "status", _proto_json(self.manager.model_status(spec)).encode()

    @staticmethod
    def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=name)
        if version is not None and label is not None:
            raise errors.invalid_argument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if version is not None:
            if int(version) > _MAX_INT64:
                raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.")
            spec.version.value = int(version)
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

        signature_name, inputs, row_format = json_api.parse_predict(body, input_infos)
        servable = self.manager.resolve(spec) if servable is None else servable
        outputs = inference.predict_arrays(servable, signature_name, inputs, method_check=self.method_check)
        return json_api.predict_response(outputs, row_format)

    def _classify(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        signature_name, model_input = json_api.parse_examples(body, "classify")
        request = inference.classification_pb2.ClassificationRequest(model_spec=spec, input=model_input)
        request.model_spec.signature_name = signature_name
        response = inference.classify(self.manager.resolve(spec), request, method_check=self.method_check)
        return json_api.classify_response(response.result)

    def _regress(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        signature_name, model_input = json_api.parse_examples(body, "regress")
        request = inference.regression_pb2.RegressionRequest(model_spec=spec, input=model_input)
        request.model_spec.signature_name = signature_name
        response = inference.regress(self.manager.resolve(spec), request, method_check=self.method_check)
        return json_api.regress_response(response.result)

    def _metadata(self, spec: model_pb2.ModelSpec) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
        request.model_spec.CopyFrom(spec)
        response = model_metadata(self.manager, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
        # http_rest_api_util.cc prints the two parts separately and joins them like this.
        return (f'{{\n"model_spec":{_proto_json(response.model_spec)},\n"metadata": '
                f'{{"signature_def": {_proto_json(signatures)}}}\n}}\n').encode()


class RequestTooLarge(Exception):
    pass


class RestApp:
    """The ASGI application: body limits, thread pool, timeout, metrics page, 404s."""

    def __init__(self, handler: RestHandler, metrics: Metrics, *, num_threads: int, timeout_ms: int,
                 max_body_bytes: int, monitoring_path: str | None, cors: bool):
        self.handler, self.metrics = handler, metrics
        self.pool = ThreadPoolExecutor(max_workers=max(num_threads, 1), thread_name_prefix="rest")
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_body_bytes = max_body_bytes
        self.monitoring_path = monitoring_path
        self.cors = cors

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("raw_path") or scope["path"].encode()
        path = path.decode("latin-1").split("?", 1)[0]
        method = scope["method"]
        try:
            body = await self._read_body(scope, receive)
        except RequestTooLarge as error:
            await self._reply(send, 413, error_body(str(error)), _JSON_HEADERS)
            return
        if self.monitoring_path and path == self.monitoring_path:
            await self._reply(send, 200, self.metrics.page(), [(b"content-type", b"text/plain")])
        elif not _API_PATH.fullmatch(path):
            await self._reply(send, 404, libevent_error_page(404, "Not Found"), [(b"content-type", b"text/html")])
        elif method == "OPTIONS":
            await self._preflight(scope, send)
        else:
            await self._api(method, path, body, send)

    async def _api(self, method: str, path: str, body: bytes, send) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, self.handler.process, method, path, body)
        try:
            result = await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            message = f"Request timed out after {int(self.timeout * 1000)} ms (--rest_api_timeout_in_ms)"
            result = RestResult(504, error_body(message), code="DEADLINE_EXCEEDED")
        if result.status == 200 and result.api in ("predict", "classify", "regress"):
            self.metrics.observe("request_latency", (result.model_name, result.api, "REST"),
                                 (time.perf_counter() - started) * 1e6)
        if result.api in ("predict", "classify", "regress"):
            self.metrics.count("request_count", (result.model_name, result.code))
        headers = _JSON_HEADERS + (_CORS_HEADERS if self.cors else [])
        await self._reply(send, result.status, result.body, headers)

    async def _preflight(self, scope, send) -> None:
        origin = dict(scope.get("headers", [])).get(b"origin", b"")
        headers = _CORS_HEADERS if self.cors else []
        status = 200 if re.match(rb"https?://", origin) else 400
        await self._reply(send, status, b"", headers)

    async def _read_body(self, scope, receive) -> bytes:
        """Return the request body, or raise RequestTooLarge past --max_request_bytes.

        An oversized body is still read to its end (and dropped, up to a bound) so the
        client gets the 413 instead of a connection reset in the middle of sending.
        """
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.max_body_bytes
            if not too_large:
                chunks.append(chunk)
            if not message.get("more_body", False) or size > _DRAIN_LIMIT * self.max_body_bytes:
                break
        if too_large:
            raise RequestTooLarge(self._too_large(max(size, int(declared or 0))))
        return b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return (f"Request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes; "
                "raise --max_request_bytes to accept it")

    @staticmethod
    async def _reply(send, status: int, body: bytes, headers) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

