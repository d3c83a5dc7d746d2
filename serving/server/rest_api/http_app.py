"""The HTTP transport of the REST API: an ASGI app served by uvicorn.

uvicorn (httptools parser, uvloop loop when installed) was chosen for low per-request
overhead and a robust HTTP/1.1 implementation. This app enforces --max_request_bytes
(413), runs `RestHandler` on --rest_api_num_threads threads under --rest_api_timeout_in_ms,
serves the Prometheus page, answers CORS preflights, and gives what libevent gives around
the API: its 404 page for unknown paths, its 501 page for methods it does not allow, and
gzip request bodies uncompressed (net_http's auto_uncompress_input).
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

from serving.server.metrics import Metrics
from serving.server.rest_api.handler import RestHandler, RestResult
from serving.server.rest_api.json_writer import error_body

_API_PATH = re.compile(r"(?i)/v1/.*")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-allow-headers", b"Content-Type"),
]
# How far past the limit an oversized body is drained before the connection is dropped.
_DRAIN_LIMIT = 4
# The methods TF Serving lets libevent accept (evhttp_server.cc); others get 501.
_ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
# net_http's cap on an uncompressed gzip body (ZLib::kMaxUncompressedBytes).
_MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
# What libevent adds to a reply that has a body but no Content-Type.
_LIBEVENT_DEFAULT_TYPE = [(b"content-type", b"text/html; charset=ISO-8859-1")]


def libevent_error_page(status: int, phrase: str) -> bytes:
    """Return the HTML body libevent's evhttp_send_error writes (what TF Serving sends)."""
    return (f"<HTML><HEAD>\n<TITLE>{status} {phrase}</TITLE>\n</HEAD><BODY>\n<H1>{phrase}</H1>\n"
            "</BODY></HTML>\n").encode()


def gunzip_body(body: bytes) -> bytes:
    """Return a gzip request body uncompressed, or b'' where net_http would give up.

    net_http hands the handler an empty body when the data is not gzip or would pass
    100 MiB uncompressed; TF Serving then answers 'The document is empty'.
    """
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, _MAX_UNCOMPRESSED_BYTES + 1)
    except zlib.error:
        return b""
    if len(data) > _MAX_UNCOMPRESSED_BYTES or not inflater.eof:
        return b""
    return data


class RequestTooLarge(Exception):
    """A request body over --max_request_bytes; the message says by how much."""


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
        if method not in _ALLOWED_METHODS:
            await self._error_page(send, 501, "Not Implemented")
        elif self.monitoring_path and path == self.monitoring_path:
            await self._reply(send, 200, self.metrics.page(), [(b"content-type", b"text/plain")])
        elif not _API_PATH.fullmatch(path):
            await self._error_page(send, 404, "Not Found")
        elif method == "OPTIONS":
            await self._preflight(scope, send)
        else:
            if b"gzip" in dict(scope.get("headers", [])).get(b"content-encoding", b""):
                body = gunzip_body(body)
            await self._api(method, path, body, send)

    async def _api(self, method: str, path: str, body: bytes, send) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, self.handler.process, method, path, body)
        try:
            result = await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            message = f"Request timed out after {int(self.timeout * 1000)} ms (--rest_api_timeout_in_ms)"
            result = RestResult(504, error_body(message), *self.handler.labels(method, path), "DEADLINE_EXCEEDED")
        self._record(result, started)
        headers = _JSON_HEADERS + (_CORS_HEADERS if self.cors else [])
        await self._reply(send, result.status, result.body, headers)

    def _record(self, result: RestResult, started: float) -> None:
        """Count every API request and time the successful ones, as http_server.cc does."""
        if result.status == 200:
            self.metrics.observe("request_latency", (result.model_name, result.api, "REST"),
                                 (time.perf_counter() - started) * 1e6)
        self.metrics.count("request_count", (result.model_name, result.code))

    async def _preflight(self, scope, send) -> None:
        started = time.perf_counter()
        origin = dict(scope.get("headers", [])).get(b"origin", b"")
        headers = (_CORS_HEADERS if self.cors else []) + _LIBEVENT_DEFAULT_TYPE
        allowed = re.search(rb"https?://", origin) is not None
        self._record(RestResult(200 if allowed else 400, b"", code="OK" if allowed else "FAILED_PRECONDITION"),
                     started)
        await self._reply(send, 200 if allowed else 400, b"", headers)

    async def _error_page(self, send, status: int, phrase: str) -> None:
        """Send libevent's own error page (evhttp_send_error closes the connection)."""
        headers = [(b"content-type", b"text/html"), (b"connection", b"close")]
        await self._reply(send, status, libevent_error_page(status, phrase), headers)

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
