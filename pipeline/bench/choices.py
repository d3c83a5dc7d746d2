"""`python -m pipeline.bench.choices`: training step time under each speed choice (XLA,
oneDNN, threads, batch size, precision, batch norm), one process each (the measurement:
`pipeline/bench/_choices.py`).

TensorFlow is imported when a measurement runs, not at import, so `--help` answers at once;
the measurement's names (`variants`, `probe`, `markdown`, …) are reachable from here as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.bench.common import overrides
from pipeline.kernels import prefer_onednn


def __getattr__(name: str):
    from pipeline.bench import _choices

    return getattr(_choices, name)


def main(
    config: Annotated[Path, typer.Option("--config", "-c")] = Path("configs/fashion_cnn.yaml"),
    compare: Annotated[list[Path] | None, typer.Option(help="Other configs to time too.")] = None,
    output_dir: Annotated[Path, typer.Option()] = Path("bench/results"),
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
    probe_settings: Annotated[str | None, typer.Option("--probe", hidden=True)] = None,
) -> None:
    """Training step time of CONFIG's model under each speed choice, one process each."""
    from pipeline.bench import _choices

    if probe_settings is not None:
        print(json.dumps(_choices.probe(json.loads(probe_settings))))
        return
    _choices.run(config, list(compare or []), output_dir, overrides(set_))


if __name__ == "__main__":
    prefer_onednn()  # before TensorFlow is imported, as `python -m pipeline` does
    typer.run(main)
