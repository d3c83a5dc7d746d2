"""Which CPU kernels training runs: oneDNN's on every x86-64 CPU, not only where TensorFlow
turns them on by itself.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported, and when it is unset
runs oneDNN only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX. On a CPU with AVX2 alone it
falls back to its own (Eigen) kernels, which ran the default CNN's training step 2.25x
slower on the AVX2 host (README, "What each speed choice buys"). So the training entry points
(`python -m pipeline`, the training benchmarks) call `prefer_onednn` before TensorFlow is
imported; a value the user set wins. Light on purpose: nothing here imports TensorFlow at
import time. The model server does the opposite (serving/__main__.py): oneDNN's
convolutions abort on an input of the wrong rank.
"""

from __future__ import annotations

import os
import platform

ENV = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> None:
    """Ask for oneDNN's kernels on x86-64 unless `TF_ENABLE_ONEDNN_OPTS` is set; call it
    before TensorFlow is imported (later it changes nothing)."""
    if platform.machine().lower() in {"x86_64", "amd64"}:
        os.environ.setdefault(ENV, "1")


def describe_onednn() -> str:
    """Return "on" or "off" with why: the variable's value, or TensorFlow's choice for this CPU."""
    from serving.server.core.servable import onednn_enabled  # imports TensorFlow

    state = "on" if onednn_enabled() else "off"
    value = os.environ.get(ENV)
    why = f"{ENV}={value}" if value is not None else "TensorFlow's default for this CPU"
    return f"{state} ({why})"
