"""Training asks for oneDNN's kernels on x86-64 before TensorFlow starts; a user's setting wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SAY = ("from pipeline.kernels import prefer_onednn; prefer_onednn(); import tensorflow; "
       "from pipeline.kernels import describe_onednn; print(describe_onednn())")


def kernels_with(value: str | None) -> str:
    environment = {key: val for key, val in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = value
    done = subprocess.run([sys.executable, "-c", SAY], env=environment, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="oneDNN is TensorFlow's x86 default")
def test_on_unless_the_user_says_otherwise():
    assert kernels_with(None) == "on (TF_ENABLE_ONEDNN_OPTS=1)"
    assert kernels_with("0") == "off (TF_ENABLE_ONEDNN_OPTS=0)"
