"""`python -m serving`: the TensorFlow-Serving-compatible model server.

Takes tensorflow_model_server's flags (`python -m serving --help` lists them), e.g.
    python -m serving --port=8500 --rest_api_port=8501 --model_config_file=models.config
"""

import faulthandler
import os
import sys
import threading

# Seconds the interpreter may take to wind down after the server has stopped.
EXIT_GRACE_SECONDS = 10.0


def _exit_now(code: int) -> None:
    """Dump every thread's stack to stderr (the server log), then end the process."""
    print(f"exit took over {EXIT_GRACE_SECONDS:g} s after the server stopped; threads:",
          file=sys.stderr, flush=True)
    faulthandler.dump_traceback(all_threads=True)
    sys.stdout.flush()
    os._exit(code)

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # answer at once, without importing TensorFlow
        from serving.server.options import build_parser

        build_parser().parse_known_args(sys.argv[1:])
    # TensorFlow's own CPU kernels, as in TF Serving's standard build: they answer a
    # wrongly shaped input with an error, where oneDNN's convolutions abort the process.
    # TF_ENABLE_ONEDNN_OPTS=1 keeps oneDNN (inputs are then shape-checked first).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from serving.server.main import main

    exit_code = main()
    # ModelServer.stop() has released every model, port and queue by now; what is left is
    # the interpreter joining pool threads (gRPC's, the REST front's, TensorFlow's). That
    # has been seen to hang on a loaded host, which kept `make serve` from ending on Ctrl-C;
    # past the grace period the stacks go to the log and the process ends with its code.
    watchdog = threading.Timer(EXIT_GRACE_SECONDS, _exit_now, args=(exit_code,))
    watchdog.daemon = True
    watchdog.start()
    sys.exit(exit_code)
