"""`python -m pipeline.bench.train`: the input pipeline's throughput and what `make train`'s
path costs beside plain `model.fit` (the measurement: `pipeline/bench/_train.py`).

TensorFlow is imported when a measurement runs, not at import, so `--help` answers at once;
the measurement's names (`run`, `as_arrays`, …) are reachable from here as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.bench.common import overrides
from pipeline.kernels import prefer_onednn


def __getattr__(name: str):
    from pipeline.bench import _train

    return getattr(_train, name)


def main(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("configs/fashion_cnn.yaml"),
    epochs: Annotated[int, typer.Option(help="Timed epochs per path (after one warm-up).")] = 3,
    repeats: Annotated[int, typer.Option(help="Rounds of both paths, alternating order.")] = 2,
    output_dir: Annotated[Path, typer.Option()] = Path("bench/results"),
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
) -> None:
    """Benchmark the training input pipeline and the training path."""
    from pipeline.bench import _train
    from pipeline.config import load_config

    _train.run(load_config(config, overrides(set_)), epochs=epochs, repeats=repeats,
               output_dir=output_dir)


if __name__ == "__main__":
    prefer_onednn()  # before TensorFlow is imported, as `python -m pipeline` does
    typer.run(main)
