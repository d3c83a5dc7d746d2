"""REST client: TF Serving's JSON API over keep-alive HTTP connections (one per thread)."""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Mapping
from urllib.parse import quote

import numpy as np
import orjson

from serving.client.errors import ClientError

# SignatureDef dtype names (DT_*) -> numpy dtypes, for the dtypes JSON can carry.
_DTYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT8": np.int8, "DT_INT16": np.int16,
    "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_UINT8": np.uint8, "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32, "DT_UINT64": np.uint64, "DT_BOOL": np.bool_, "DT_STRING": object,
}


def _encode(value: np.ndarray):
    """Return an array as JSON-ready data: numbers as-is, bytes as {"b64": ...}."""
    if value.dtype.kind not in "OSU":
        return np.ascontiguousarray(value)
    def item(element):
        if isinstance(element, bytes):
            return {"b64": base64.b64encode(element).decode("ascii")}
        return str(element)
    return np.vectorize(item, otypes=[object])(value).tolist() if value.ndim else item(value.item())


def _decode_strings(value):
    if isinstance(value, list):
        return [_decode_strings(item) for item in value]
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value.encode("utf-8")


def _to_array(value, dtype_name: str | None) -> np.ndarray:
    dtype = _DTYPES.get(dtype_name or "")
    if dtype is object:
        return np.array(_decode_strings(value), dtype=object)
    return np.asarray(value, dtype=dtype)


class RestClient:
    """A connection to a model server's REST port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8501, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()
        self._output_types: dict[tuple, dict[str, str]] = {}

    def predict(self, model: str, inputs: Mapping[str, np.ndarray], *, signature_name: str = "",
                version: int | None = None, label: str | None = None) -> dict[str, np.ndarray]:
        """Return the signature's outputs for `inputs` (name -> array), as numpy arrays.

        Sends the columnar ("inputs") format; output dtypes come from the model's metadata
        (fetched once per model, version and signature), so results match the gRPC client's.
        """
        body = {"inputs": {name: _encode(np.asarray(value)) for name, value in inputs.items()}}
        if signature_name:
            body["signature_name"] = signature_name
        path = self._model_path(model, version, label) + ":predict"
        reply = self._request("POST", path, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
        types = self._types(model, version, label, signature_name or "serving_default")
        outputs = reply["outputs"]
        if not isinstance(outputs, dict) or set(outputs) - set(types):
            outputs = {next(iter(types)): outputs}
        return {name: _to_array(value, types.get(name)) for name, value in outputs.items()}

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """Return the model's signature_def map as JSON (signature name -> SignatureDef dict)."""
        reply = self._request("GET", self._model_path(model, version, label) + "/metadata")
        return reply["metadata"]["signature_def"]["signature_def"]

    def status(self, model: str) -> list[tuple[int, str]]:
        """Return [(version, state name)] for every version the server knows, newest first."""
        reply = self._request("GET", self._model_path(model, None, None))
        return [(int(entry["version"]), entry["state"]) for entry in reply["model_version_status"]]

    def _types(self, model, version, label, signature_name) -> dict[str, str]:
        key = (model, version, label, signature_name)
        if key not in self._output_types:
            signature = self.metadata(model, version=version, label=label).get(signature_name, {})
            self._output_types[key] = {
                name: info.get("dtype") for name, info in signature.get("outputs", {}).items()
            }
        return self._output_types[key]

    @staticmethod
    def _model_path(model: str, version: int | None, label: str | None) -> str:
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{version}"
        elif label is not None:
            path += f"/labels/{quote(label, safe='')}"
        return path

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _request(self, method: str, path: str, body: bytes | None = None) -> dict:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            connection = self._connection()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # A keep-alive connection the server closed: reconnect once.
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        if response.status != 200:
            try:
                message = orjson.loads(payload)["error"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = payload.decode("utf-8", "replace")
            raise ClientError(f"HTTP {response.status}", message)
        return orjson.loads(payload)

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
