"""bench-train's speed parts: time to accuracy beside bare Keras, and the speed choices."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.bench import accuracy as bench_accuracy
from pipeline.bench import choices as bench_choices
from pipeline.config import load_config
from tests.conftest import tiny_overrides


def test_first_reaching_takes_the_first_epoch_at_or_over_the_threshold():
    epochs = [{"epoch": 1, "test_accuracy": 0.85}, {"epoch": 2, "test_accuracy": 0.92},
              {"epoch": 3, "test_accuracy": 0.91}, {"epoch": 4, "test_accuracy": 0.93}]
    assert bench_accuracy.first_reaching(epochs, 0.92)["epoch"] == 2
    assert bench_accuracy.first_reaching(epochs, 0.93)["epoch"] == 4
    assert bench_accuracy.first_reaching(epochs, 0.95) is None


def test_time_to_accuracy_runs_the_training_stage_beside_bare_keras(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder, **{
        "train.epochs": 3, "train.insights": False, "export.test_time_flip": True}))
    result = bench_accuracy.run(config, baseline=True)
    # The pipeline measures what it serves (with flips); bare Keras the image alone.
    assert all("single_view_accuracy" in row for row in result["paths"]["pipeline"]["epochs"])
    assert not any("single_view_accuracy" in row for row in result["paths"]["bare_keras"]["epochs"])
    assert set(result["paths"]) == {"pipeline", "bare_keras"}
    for path in result["paths"].values():
        assert [row["epoch"] for row in path["epochs"]] == [1, 2, 3]
        seconds = [row["seconds"] for row in path["epochs"]]
        assert seconds == sorted(seconds) and seconds[0] > 0
        assert 0.0 <= path["test_accuracy"] <= 1.0
        assert set(path["time_to_accuracy"]) == {"0.90", "0.92", "0.93"}
        assert path["total_seconds"] >= seconds[-1]
    # The pipeline's figure is that of the exported model, in a scratch store only.
    assert not (workdir / "mlruns").exists() and not (workdir / "saved_models").exists()
    host = result["host"]
    assert host["cores"] >= 1 and host["cpu_model"] and "replica" in host["precision"]
    table = bench_accuracy.markdown(result)
    epoch_rows = [line for line in table.splitlines() if line.startswith("| 3 |")]
    assert len(epoch_rows) == 2 and "bare Keras" in table and host["cpu_model"] in table
    assert "image alone" in table
    path = bench_accuracy.write(result, workdir / "results")
    assert json.loads(path.with_suffix(".json").read_text()) == result


def test_a_speed_probe_times_steps_in_its_own_process(workdir, image_folder):
    config_file = workdir / "none.yaml"
    config_file.write_text("{}\n")
    overrides = tiny_overrides(image_folder, **{"data.batch_size": 4})
    variants = bench_choices.variants(config_file, 4, [], overrides)
    labels = [variant["label"] for variant in variants]
    assert labels[0].startswith("default") and any("XLA" in label for label in labels)
    assert {"TF_ENABLE_ONEDNN_OPTS": "0"} in [variant["env"] for variant in variants]
    unfused = next(variant for variant in variants if "fused_batch_norm" in variant["label"])
    assert unfused["settings"]["overrides"]["model.fused_batch_norm"] is False
    assert unfused["settings"]["overrides"]["model.filters"] == 4  # the other overrides stay
    settings = variants[0]["settings"]
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.bench.choices", "--probe", json.dumps(settings)],
        capture_output=True, text=True, check=True, timeout=300)
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    assert measured["ms_per_step"] > 0 and measured["examples_per_second"] > 0
    rows = [{"label": "default", **measured}, {"label": "broken", "error": "boom"}]
    table = bench_choices.markdown(rows)
    assert "1.00x" in table and "failed: boom" in table


@pytest.mark.parametrize("setting", ["on", "off"])
def test_jit_compile_setting_reaches_the_model(setting):
    from models import InputSpec, get_family
    from pipeline.fitting.hardware import set_jit_compile

    model = get_family("cnn").build(InputSpec.image(12, 12, 1), 3, **get_family("cnn").TINY)
    assert set_jit_compile(model, setting) is (setting == "on")
    assert set_jit_compile(model, "auto") is (setting == "on")  # auto keeps what is set
    fresh = get_family("cnn").build(InputSpec.image(12, 12, 1), 3, **get_family("cnn").TINY)
    assert set_jit_compile(fresh, "auto") is False  # Keras: no XLA on a CPU-only host
    assert np.isfinite(model.predict(np.zeros((2, 12, 12, 1), np.uint8), verbose=0)).all()
