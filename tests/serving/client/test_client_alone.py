"""The client stands alone: it imports neither the pipeline nor the server.

`serving.client` is meant to be installable without the rest of the project, so its import
graph may hold only its own modules and the shared codec. tensorflow_serving's protos do
import the `tensorflow` package (their protos live under `tensorflow.core`), so TensorFlow
itself is allowed; the project's other packages are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.serving.serving_fixtures import REPO

_LIST_MODULES = (
    "import json, sys\n"
    "import serving.client, serving.client.cli\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def test_client_imports_neither_the_pipeline_nor_the_server():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _LIST_MODULES], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    project = [name for name in modules if name.split(".")[0] in ("pipeline", "models", "serving")]
    assert project and all(
        name in ("serving", "serving.codec") or name.startswith("serving.client") for name in project
    ), project
    assert not [name for name in modules if name.split(".")[0] in ("mlflow", "keras_tuner")]
