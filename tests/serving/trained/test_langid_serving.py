"""The language-ID model end to end: trained by the pipeline on real fortunes, served from its
SavedModel, answering raw strings over REST and gRPC exactly as in process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import load_config
from pipeline.sources import FORTUNES_DIR
from pipeline.stages import train as train_stage
from serving.client import GrpcClient, RestClient
from tests.serving.serving_fixtures import REPO

pytestmark = pytest.mark.skipif(not (FORTUNES_DIR / "de").is_dir(),
                                reason="fortunes and fortunes-de not installed")
SENTENCES = ["Der Hund schläft unter dem Tisch.", "The dog is sleeping under the table."]


@pytest.fixture(scope="module")
def langid(tmp_path_factory):
    """Train a tiny language-ID model from configs/fortunes_langid.yaml on a real slice."""
    root = tmp_path_factory.mktemp("langid")
    overrides = {
        "data.languages": ["en", "de"], "data.max_per_class": 60, "data.sequence_length": 64,
        "model.embedding_dim": 8, "model.conv_filters": 8, "model.units": 8,
        "model.dense_units": 0, "train.epochs": 1, "train.insights": False,
        "train.mixed_precision": "off", "train.checkpoint_dir": str(root / "checkpoints"),
        "tracking.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "export.base_dir": str(root / "saved_models"), "export.parity_examples": 8,
        "export.warmup_batch_sizes": [1, 4],
    }
    config = load_config(REPO / "configs" / "fortunes_langid.yaml", overrides)
    result = train_stage.run(config, log=lambda line: None)
    return config, result


def test_training_logs_the_baseline_and_per_language_report(langid):
    _, result = langid
    assert {"test_accuracy", "test_macro_f1", "baseline_test_accuracy",
            "baseline_test_macro_f1"} <= set(result.metrics)
    assert result.metrics["baseline_test_accuracy"] > 0.8  # character n-grams tell en from de


def test_export_takes_raw_strings_over_rest_and_grpc(langid, start_server):
    config, result = langid
    loaded = tf.saved_model.load(str(result.export_path))
    expected = loaded.signatures["serving_default"](text=tf.constant(SENTENCES))
    server = start_server([f"--model_name={config.name}",
                           f"--model_base_path={result.export_path.parent}"])
    inputs = {"text": np.array(SENTENCES, dtype=object)}
    for client in (RestClient(port=server.rest_port), GrpcClient(port=server.grpc_port)):
        outputs = client.predict(config.name, inputs)
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"].numpy(),
                                   rtol=1e-5, atol=1e-6)
        assert [name.decode() for name in outputs["class_name"]] == [
            name.decode() for name in expected["class_name"].numpy()]
    demo = subprocess.run(
        [sys.executable, "-m", "serving.predict_demo", "--protocol", "rest", "--port",
         str(server.rest_port), "--model", config.name, "--text", SENTENCES[0]],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"class {expected['class_name'].numpy()[0].decode()}" in demo.stdout
