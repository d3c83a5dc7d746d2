"""bench-train: runs both paths on the same data and writes JSON and Markdown."""

from __future__ import annotations

import json

from pipeline.bench import train as bench_train
from pipeline.config import load_config
from tests.conftest import tiny_overrides


def test_bench_train_writes_comparable_figures(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder))
    result = bench_train.run(config, epochs=1, repeats=2, output_dir=workdir / "results")
    saved = json.loads((workdir / "results/bench_train_tiny.json").read_text())
    assert saved == result
    for key in ("input_examples_per_second", "train_path_examples_per_second",
                "plain_fit_examples_per_second"):
        assert result[key] > 0
    assert [len(v) for v in result["epoch_seconds"].values()] == [2, 2]
    fastest = result["fastest_epoch_examples_per_second"]
    assert fastest["plain_fit"] >= result["plain_fit_examples_per_second"]
    assert fastest["train_path"] >= result["train_path_examples_per_second"]
    table = (workdir / "results/bench_train_tiny.md").read_text()
    assert "plain `model.fit` on NumPy arrays" in table and "% fastest, vs plain" in table


def test_bench_tune_reports_memory_after_every_trial(workdir, image_folder):
    import yaml

    from pipeline.bench import tune as bench_tune

    config = workdir / "tiny.yaml"
    raw: dict = {}
    for dotted, value in tiny_overrides(image_folder).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    raw["tune"] = {"hyperparameters": {"conv_blocks": 1, "filters": 4, "dense_units": 8,
                                       "convs_per_block": 1}}
    config.write_text(yaml.safe_dump(raw))
    figures = bench_tune.run(config, trials=3, examples=20, overrides={},
                             output_dir=workdir / "results")
    assert figures["trials"] == 3 and len(figures["rss_mb_after_each_trial"]) == 3
    assert all(value > 50 for value in figures["rss_mb_after_each_trial"])
    assert (workdir / "results/bench_tune_memory.md").read_text().startswith("Resident memory")
    assert not (workdir / "tuning").exists()  # scratch only
