"""`python -m serving`: the TensorFlow-Serving-compatible model server.

Takes tensorflow_model_server's flags (`python -m serving --help` lists them), e.g.
    python -m serving --port=8500 --rest_api_port=8501 --model_config_file=models.config
"""

import os
import sys

if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # answer at once, without importing TensorFlow
        from serving.server.options import build_parser

        build_parser().parse_known_args(sys.argv[1:])
    # TensorFlow's own CPU kernels, as in TF Serving's standard build: they answer a
    # wrongly shaped input with an error, where oneDNN's convolutions abort the process.
    # TF_ENABLE_ONEDNN_OPTS=1 keeps oneDNN (inputs are then shape-checked first).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from serving.server.main import main

    sys.exit(main())
