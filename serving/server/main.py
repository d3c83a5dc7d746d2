"""The server process: parse flags, start the ModelServer, stop it on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import tensorflow as tf

from serving.server.core import errors
from serving.server.model_server import ModelServer
from serving.server.options import check, parse_flags

log = logging.getLogger("serving.server")
VERSION = "0.1.0-compatible"


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; return the process exit code."""
    options = parse_flags(sys.argv[1:] if argv is None else argv)
    if options.version:
        print(f"TensorFlow ModelServer: {VERSION}\nTensorFlow Library: {tf.__version__}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ModelServer(options)
    stop_requested = threading.Event()
    def request_stop(*_):
        stop_requested.set()
        server.interrupt()

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, request_stop)
    try:
        try:
            check(options)
        except ValueError as error:
            raise errors.invalid_argument(str(error)) from None
        if server.check_shapes:
            log.warning("oneDNN kernels are on (TF_ENABLE_ONEDNN_OPTS): inputs are checked "
                        "against the signatures' shapes, which TF Serving leaves to the kernels")
        server.start()
    except errors.ServingError as error:
        # main.cc: the status on stdout, then `return -1`.
        print(f"Failed to start server. Error: {error.status_string()}", flush=True)
        server.stop()
        return 255
    stop_requested.wait()
    print("Shutting down ...", flush=True)
    server.stop()
    print("Server stopped.", flush=True)
    return 0
