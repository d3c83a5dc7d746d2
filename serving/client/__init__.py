"""Clients for TF Serving and the compatible server, one `predict()` API over gRPC or REST.

    from serving.client import connect
    client = connect("grpc", "127.0.0.1", 8500)          # or connect("rest", ..., 8501)
    outputs = client.predict("mnist", {"image": pixels})  # {"probabilities": ndarray, ...}

Both clients return numpy arrays with the dtypes the signature declares (strings as
bytes), so code written against one protocol works unchanged against the other.
"""

from __future__ import annotations

from serving.client.errors import ClientError

DEFAULT_PORTS = {"grpc": 8500, "rest": 8501}


def connect(protocol: str, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0):
    """Return a GrpcClient or RestClient for `protocol` ('grpc' or 'rest')."""
    if protocol not in DEFAULT_PORTS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of: grpc, rest")
    client_class = __getattr__("GrpcClient" if protocol == "grpc" else "RestClient")
    return client_class(host, port or DEFAULT_PORTS[protocol], timeout=timeout)


def __getattr__(name: str):
    # Imported on first use: the gRPC client's protos import all of TensorFlow (seconds),
    # which `python -m serving.client --help` and a REST-only user never need.
    if name == "GrpcClient":
        from serving.client.grpc_client import GrpcClient

        return GrpcClient
    if name == "RestClient":
        from serving.client.rest_client import RestClient

        return RestClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ClientError", "GrpcClient", "RestClient", "connect", "DEFAULT_PORTS"]
