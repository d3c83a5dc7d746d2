"""`python -m serving`: the TensorFlow-Serving-compatible model server.

Takes tensorflow_model_server's flags (`python -m serving --help` lists them), e.g.
    python -m serving --port=8500 --rest_api_port=8501 --model_config_file=models.config
"""

import sys

from serving.server.main import main

if __name__ == "__main__":
    sys.exit(main())
