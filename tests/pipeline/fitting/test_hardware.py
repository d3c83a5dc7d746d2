"""Precision and distribution: mixed precision where it pays, a float32 export whatever the
training, and mirroring over several devices giving what one device gives."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import InputSpec, get_family
from pipeline.config import load_config
from pipeline.fitting.hardware import configure, precision_choice, serving_copy
from pipeline.stages import train
from pipeline.stages.data import make_datasets
from tests.conftest import tiny_overrides


def test_explicit_settings_win_and_off_means_float32():
    assert precision_choice("off", [])[0] is None
    assert precision_choice("bfloat16", [])[0] == "bfloat16"
    assert precision_choice("float16", [])[0] == "float16"


def test_mixed_model_is_served_by_a_float32_copy_with_the_same_weights():
    spec = InputSpec.image(12, 12, 1)
    configure(load_config(None, {"train.mixed_precision": "bfloat16"}).train, seed=0)
    try:
        build = lambda: get_family("cnn").build(spec, 3, **get_family("cnn").TINY)  # noqa: E731
        model = build()
        assert model.layers[2].compute_dtype == "bfloat16"
        copy = serving_copy(model, build)
        assert copy is not model and all(layer.compute_dtype == "float32" for layer in copy.layers
                                         if layer.name != "image")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
        for ours, theirs in zip(model.get_weights(), copy.get_weights()):
            np.testing.assert_array_equal(ours, theirs)
        images = np.random.default_rng(0).integers(0, 256, (8, 12, 12, 1), dtype=np.uint8)
        np.testing.assert_allclose(model(images), copy(images), atol=0.05)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_training_exports_a_float32_savedmodel(workdir, image_folder):
    config = load_config(None, tiny_overrides(image_folder, **{"train.mixed_precision": "bfloat16"}))
    keras.mixed_precision.set_global_policy("float32")
    result = train.run(config, log=lambda line: None)
    # The stage gives the process back its policy: models built afterwards stay float32.
    assert keras.mixed_precision.global_policy().name == "float32"
    loaded = tf.saved_model.load(str(result.export_path))
    outputs = loaded.signatures["serving_default"](image=tf.zeros([1, 12, 12, 1], tf.uint8))
    assert outputs["probabilities"].dtype == tf.float32
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.run_id).data.metrics
    assert metrics["export_float32_max_abs_diff"] < 0.05
    assert metrics["export_parity_max_abs_diff"] <= 1e-4
    # The metrics in MLflow are the served model's, not the bfloat16 training model's.
    data = make_datasets(config.data, config.seed)
    inputs, labels = data.examples("test", data.sizes["test"])
    served = loaded.signatures["serving_default"](image=tf.constant(inputs))
    assert metrics["test_accuracy"] == pytest.approx(
        float(np.mean(served["class_id"].numpy() == labels)), abs=1e-6)
    served_loss = keras.losses.sparse_categorical_crossentropy(labels, served["probabilities"])
    assert metrics["test_loss"] == pytest.approx(float(np.mean(served_loss)), rel=1e-4)


def test_auto_precision_says_why_and_takes_bfloat16_only_where_measured_faster():
    from pipeline.fitting.hardware import (
        BFLOAT16_MIN_SPEEDUP,
        _cpu_has_bfloat16,
        bfloat16_speedup,
        precision_choice,
    )

    precision, reason = precision_choice("auto", [])
    assert reason.startswith("auto: ")
    if not _cpu_has_bfloat16():
        assert precision is None and "no AVX512-BF16/AMX" in reason
    else:  # native bfloat16: the choice follows the timed step
        assert (precision == "bfloat16") == (bfloat16_speedup() >= BFLOAT16_MIN_SPEEDUP)
        assert f"{bfloat16_speedup():.2f}x" in reason
    assert precision_choice("off", []) == (None, "train.mixed_precision: off")


def test_on_gpus_the_batch_fills_the_device_and_the_learning_rate_follows():
    from pipeline.fitting.hardware import Hardware, for_accelerators

    config = load_config(None, {"data.batch_size": 64, "data.gpu_batch_size": 256,
                                "model.learning_rate": 0.001})
    strategy = tf.distribute.get_strategy()
    cpu = Hardware(strategy=strategy, precision=None, devices=("CPU",))
    assert for_accelerators(config, cpu) is config
    gpu = Hardware(strategy=strategy, precision="bfloat16", devices=("/physical_device:GPU:0",))
    scaled = for_accelerators(config, gpu)
    assert scaled.data.batch_size == 256
    assert scaled.model.params["learning_rate"] == pytest.approx(0.002)  # sqrt(256 / 64) = 2
    unset = config.model_copy(update={"data": config.data.model_copy(
        update={"gpu_batch_size": None})})
    assert for_accelerators(unset, gpu) is unset


MIRRORED_RUN = """
import json, sys
import tensorflow as tf

# Two logical CPUs stand in for two GPUs; they must exist before TensorFlow initialises.
[cpu] = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


class TwoCpuMirrored(tf.distribute.MirroredStrategy):
    # What MirroredStrategy() does over every GPU, here over the two logical CPUs.
    def __init__(self, devices=None, **kwargs):
        super().__init__(devices or ["/cpu:0", "/cpu:1"], **kwargs)


tf.distribute.MirroredStrategy = TwoCpuMirrored

from pipeline.config import load_config
from pipeline.stages import train

results = {}
for distribution in ("none", "mirrored"):
    lines = []
    config = load_config(None, {**json.loads(sys.argv[1]), "train.distribution": distribution})
    result = train.run(config, log=lines.append)
    results[distribution] = {"metrics": result.metrics, "log": lines}
print(json.dumps(results))
"""


def test_mirrored_over_two_devices_trains_as_one_device_does(workdir, image_folder):
    # Nothing random differs between replicas: no dropout, no batch statistics, float32.
    # SGD, not Adam: Adam's first steps move each weight by about the learning rate
    # whatever the gradient's size, so it would amplify the summation-order noise of the
    # all-reduce into differences that say nothing about the mirroring.
    # No shuffling: a mirrored run iterates a copy of the pipeline that tf.data distributes,
    # whose seeded shuffle order from the second epoch on differs from the original's.
    overrides = tiny_overrides(image_folder, **{
        "data.shuffle_buffer": 1,
        "model.optimizer": "sgd", "model.learning_rate": 0.05, "model.batch_norm": False, "model.block_dropout": 0.0, "model.dense_dropout": 0.0,
        "train.mixed_precision": "off", "train.insights": False, "export.enabled": False})
    done = subprocess.run([sys.executable, "-c", MIRRORED_RUN, json.dumps(overrides)],
                          cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert any("TwoCpuMirrored (2 replica(s))" in line for line in results["mirrored"]["log"])
    one, two = results["none"]["metrics"], results["mirrored"]["metrics"]
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-4)
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-6)
