"""bench-train: runs both paths on the same data and writes JSON and Markdown."""

from __future__ import annotations

import json

from pipeline import bench
from pipeline.config import load_config
from tests.conftest import tiny_overrides


def test_bench_train_writes_comparable_figures(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    result = bench.run(config, epochs=1, repeats=2, output_dir=workdir / "results")
    saved = json.loads((workdir / "results/bench_train_tiny.json").read_text())
    assert saved == result
    for key in ("input_examples_per_second", "train_path_examples_per_second",
                "plain_fit_examples_per_second"):
        assert result[key] > 0
    assert [len(v) for v in result["epoch_seconds"].values()] == [2, 2]
    table = (workdir / "results/bench_train_tiny.md").read_text()
    assert "plain `model.fit` on NumPy arrays" in table and "% vs plain" in table
