"""What each speed choice of the default config buys: training step time per variant.

Each variant runs in a fresh Python process, because oneDNN (`TF_ENABLE_ONEDNN_OPTS`) and
TensorFlow's thread pools are fixed when TensorFlow starts. A probe builds the config's
model with the config's `build` keywords, fits it on the first batches of the real training
split (cached in memory, so only compute is timed, `epoch` scaled to the full split), skips the first steps (tracing, warm-up)
and reports milliseconds per step and training examples per second. Variants: the config as
is; XLA (`jit_compile`); oneDNN off; Keras' unfused batch norm; TensorFlow's thread settings; batch sizes; bfloat16
mixed precision; and any other config file given (e.g. the large CNN) for its throughput.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from models import get_family
from pipeline.config import load_config
from pipeline.fitting.hardware import host_description
from pipeline.kernels import describe_onednn
from pipeline.stages.data import make_datasets
from serving.common import write_report

PROBE_STEPS = 40
WARMUP_STEPS = 8


def variants(config_path: Path, batch_size: int, others: list[Path],
             overrides: dict | None = None) -> list[dict]:
    """Return the probes to run: a label, environment, and settings for `probe`."""
    base = {"config": str(config_path), "overrides": overrides or {}, "batch_size": batch_size,
            "jit_compile": False, "precision": "float32", "intra_op": 0, "inter_op": 0}
    rows = [  # the probes inherit this process's kernels (`prefer_onednn` asked for oneDNN)
        (f"default: float32, oneDNN {describe_onednn()}, no XLA, TF's thread defaults", {}, {}),
        ("XLA jit_compile=True", {}, {"jit_compile": True}),
        ("oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)", {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
        ("threads: intra_op=cores, inter_op=1", {}, {"intra_op": os.cpu_count(), "inter_op": 1}),
        ("threads: intra_op=1, inter_op=cores", {}, {"intra_op": 1, "inter_op": os.cpu_count()}),
        (f"batch {batch_size // 2}", {}, {"batch_size": batch_size // 2}),
        (f"batch {batch_size * 2}", {}, {"batch_size": batch_size * 2}),
        (f"batch {batch_size * 4}", {}, {"batch_size": batch_size * 4}),
        ("mixed_bfloat16", {}, {"precision": "bfloat16"}),
        ("Keras' own batch norm (model.fused_batch_norm=false)", {},
         {"overrides": {**(overrides or {}), "model.fused_batch_norm": False}}),
    ]
    rows += [(f"{other} (batch {batch_size})", {}, {"config": str(other)}) for other in others]
    return [{"label": label, "env": env, "settings": {**base, **settings}}
            for label, env, settings in rows]


def probe(settings: dict) -> dict:
    """Time training steps under `settings` in this process; return ms/step and examples/s."""
    # Thread pools are fixed at TensorFlow's first operation: set them before anything runs.
    if settings["intra_op"]:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op"])
    if settings["inter_op"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter_op"])
    config = load_config(Path(settings["config"]), settings["overrides"])
    batch_size = settings["batch_size"]
    keras.utils.set_random_seed(config.seed)
    policy = "float32" if settings["precision"] == "float32" else f"mixed_{settings['precision']}"
    keras.mixed_precision.set_global_policy(policy)
    data = make_datasets(config.data.model_copy(update={"batch_size": batch_size}), config.seed)
    steps = WARMUP_STEPS + PROBE_STEPS
    batches = data.train.take(steps).cache()
    model = get_family(config.model.family).build(data.input_spec, data.num_classes,
                                                  **config.model.params)
    model.jit_compile = settings["jit_compile"]
    timer = StepTimer(WARMUP_STEPS)
    model.fit(batches, epochs=1, callbacks=[timer], verbose=0)
    seconds_per_step = timer.seconds / PROBE_STEPS
    return {"ms_per_step": round(1000 * seconds_per_step, 1),
            "examples_per_second": round(batch_size / seconds_per_step, 1),
            "epoch_seconds": round(data.sizes["train"] / batch_size * seconds_per_step, 1),
            "parameters": model.count_params()}


class StepTimer(keras.callbacks.Callback):
    """Time the training steps after the first `skip` (tracing and warm-up)."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip, self.started, self.seconds = skip, 0.0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.skip:
            self.started = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.started


def run_variants(config_path: Path, batch_size: int, others: list[Path],
                 overrides: dict | None = None) -> list[dict]:
    """Run every variant in its own process, one after another; return the rows."""
    rows = []
    for variant in variants(config_path, batch_size, others, overrides):
        environment = {**os.environ, **variant["env"]}
        completed = subprocess.run(
            [sys.executable, "-m", "pipeline.bench.choices", "--probe",
             json.dumps(variant["settings"])],
            env=environment, capture_output=True, text=True, check=False)
        last = (completed.stdout.strip().splitlines() or [""])[-1]
        try:
            measured = json.loads(last)
        except ValueError:
            error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            measured = {"error": error}
        rows.append({"label": variant["label"], **variant["settings"], **measured})
        print(f"  {variant['label']}: {measured}", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    """Return the variants as a table, each against the first (the config as is)."""
    base = rows[0].get("examples_per_second")
    lines = ["| variant | ms/step | examples/s | epoch | vs default |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['label']} | failed: {row['error']} | | | |")
            continue
        ratio = f"{row['examples_per_second'] / base:.2f}x" if base else ""
        lines.append(f"| {row['label']} | {row['ms_per_step']:.1f} | "
                     f"{row['examples_per_second']:,.0f} | {row['epoch_seconds']:.0f} s | "
                     f"{ratio} |")
    return "\n".join(lines) + "\n"


def run(config_path: Path, others: list[Path], output_dir: Path,
        overrides: dict | None = None) -> list[dict]:
    """Time every variant of `config_path` (and the `others` configs); write JSON and
    Markdown under `output_dir`; return the rows."""
    run_config = load_config(config_path, overrides or {})
    host = host_description()
    rows = run_variants(config_path, run_config.data.batch_size, others, overrides)
    table = (f"Training step time, `{config_path}`; host: {host['cpu_model']}, {host['cores']} "
             f"cores, {host['instruction_sets']}\n\n" + markdown(rows))
    write_report(output_dir, f"bench_choices_{run_config.name}",
                 {"config": str(config_path), "host": host, "variants": rows}, table)
    return rows
