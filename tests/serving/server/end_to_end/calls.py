"""REST calls and in-process references the end-to-end tests compare the server with."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np


def rest(server, method: str, path: str, body: bytes | str | None = None):
    """Return (status, content type, body bytes) of one REST request."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def rest_error(server, method, path, body=None) -> tuple[int, str]:
    status, content_type, payload = rest(server, method, path, body)
    assert content_type == "application/json"
    return status, json.loads(payload)["error"]


def reference(demo_function, signature: str, **inputs) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = demo_function[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def assert_same_probabilities(served: np.ndarray, expected: np.ndarray) -> None:
    """The server computes with TensorFlow's own CPU kernels (as TF Serving's build does);
    this process may use oneDNN's, which sum in another order: equal to float32 rounding."""
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)

