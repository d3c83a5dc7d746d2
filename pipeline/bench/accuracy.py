"""`python -m pipeline.bench.accuracy`: time to 0.90 / 0.92 / 0.93 test accuracy, `make
train`'s path beside bare Keras (the measurement: `pipeline/bench/_accuracy.py`).

TensorFlow is imported when a measurement runs, not at import, so `--help` answers at once;
the measurement's names (`run`, `markdown`, `write`, …) are reachable from here as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.bench.common import overrides
from pipeline.kernels import prefer_onednn


def __getattr__(name: str):
    from pipeline.bench import _accuracy

    return getattr(_accuracy, name)


def main(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("configs/fashion_cnn.yaml"),
    baseline: Annotated[bool, typer.Option(help="Also fit the bare-Keras baseline.")] = True,
    output_dir: Annotated[Path, typer.Option()] = Path("bench/results"),
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
) -> None:
    """Time to 0.90 / 0.92 / 0.93 test accuracy: `make train`'s path beside bare Keras."""
    from pipeline.bench import _accuracy
    from pipeline.config import load_config

    result = _accuracy.run(load_config(config, overrides(set_)), baseline=baseline)
    _accuracy.write(result, output_dir)


if __name__ == "__main__":
    prefer_onednn()  # before TensorFlow is imported, as `python -m pipeline` does
    typer.run(main)
