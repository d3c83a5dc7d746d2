"""`python -m serving`: the TensorFlow-Serving-compatible model server.

Takes tensorflow_model_server's flags (`python -m serving --help` lists them), e.g.
    python -m serving --port=8500 --rest_api_port=8501 --model_config_file=models.config
"""

import logging
import os
import sys


def finish(exit_code: int) -> None:
    """End the process with `exit_code` once the server has stopped, skipping the teardown.

    ModelServer.stop() has released every model, port and queue by then. What the
    interpreter's teardown would add is joining pool threads (gRPC's, the REST front's,
    TensorFlow's) and running their C++ destructors; on a loaded host that hung for minutes
    after "Server stopped.", out of reach of any Python thread (a watchdog thread never
    fired), which kept `make serve` from ending on Ctrl-C. The C++ tensorflow_model_server
    has no such teardown either. Logs and standard streams are flushed first.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to save
            pass
    os._exit(exit_code)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # answer at once, without importing TensorFlow
        from serving.server.options import build_parser

        build_parser().parse_known_args(sys.argv[1:])
    # TensorFlow's own CPU kernels, as in TF Serving's standard build: they answer a
    # wrongly shaped input with an error, where oneDNN's convolutions abort the process.
    # TF_ENABLE_ONEDNN_OPTS=1 keeps oneDNN (inputs are then shape-checked first).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from serving.server.main import main

    finish(main())
