"""The character language model end to end: trained by the pipeline on real English fortunes,
bits/char beside the n-gram baseline, and its in-graph `generate` signature answering over
REST and gRPC with the text the SavedModel gives in process for the same seed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient

from pipeline.config import load_config
from pipeline.sources import FORTUNES_DIR
from pipeline.stages import train as train_stage
from pipeline.stages.baseline import CharNgram
from pipeline.tracking import NOTE_TAG
from serving.client import GrpcClient, RestClient
from serving.common import read_lineage
from tests.serving.serving_fixtures import REPO

pytestmark = pytest.mark.skipif(not (FORTUNES_DIR / "fortunes").is_file(),
                                reason="fortunes-min not installed")
PROMPTS = ["The meaning of life", "A"]


@pytest.fixture(scope="module")
def charlm(tmp_path_factory):
    root = tmp_path_factory.mktemp("charlm")
    overrides = {
        "data.max_examples": 150, "data.sequence_length": 48, "model.units": 16,
        "model.embedding_dim": 8, "train.epochs": 1,
        "tracking.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "export.base_dir": str(root / "saved_models"),
    }
    config = load_config(REPO / "configs" / "fortunes_charlm.yaml", overrides)
    return config, train_stage.run(config, log=lambda line: None)


def test_bits_per_char_and_the_ngram_baseline_are_logged(charlm):
    _, result = charlm
    assert 0 < result.metrics["baseline_test_bits_per_char"] < 8
    assert 0 < result.metrics["test_bits_per_char"] < 8
    assert result.model_version == 1 and result.export_path.name == "1"


def test_the_run_has_a_logged_model_a_lineage_and_descriptions(charlm):
    config, result = charlm
    client = MlflowClient(tracking_uri=config.tracking.tracking_uri,
                          registry_uri=config.tracking.tracking_uri)
    run = client.get_run(result.run_id)
    [output] = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.model_type == "charlm" and model.tags["model_version"] == "1"
    version = client.get_model_version(config.name, "1")
    assert version.source == f"models:/{model.model_id}" and version.run_id == result.run_id
    assert read_lineage(result.export_path)["run_id"] == result.run_id
    bits = f"{result.metrics['test_bits_per_char']:.4f}"
    assert "| test bits/char | 5-gram bits/char | training time | host |" in run.data.tags[NOTE_TAG]
    assert bits in run.data.tags[NOTE_TAG] and f"test bits/char **{bits}**" in version.description
    assert run.info.run_name == f"{config.name} · charlm · train"
    assert int(run.data.params["dataset.train_examples"]) > 0 and run.data.metrics["fit_seconds"] > 0
    assert list(result.seconds) == ["data_seconds", "fit_seconds", "publish_seconds", "total_seconds"]


def test_ngram_probabilities_sum_to_one():
    model = CharNgram(order=3).fit(["the cat sat", "the hat"])
    total = sum(model.probability("th", char) for char in model.vocabulary)
    assert total + model.probability("th", "\u263a") == pytest.approx(1.0)
    assert model.bits_per_char(["the cat"]) < model.bits_per_char(["xqz jvk"])


def inputs(length: int = 30, seed: int = 5) -> dict[str, np.ndarray]:
    return {"prompt": np.array(PROMPTS, dtype=object),
            "length": np.array([length, 10], np.int32),
            "temperature": np.array([0.8, 1.0], np.float32),
            "seed": np.array([seed, seed], np.int64)}


def test_generate_runs_in_the_graph_over_rest_and_grpc(charlm, start_server):
    config, result = charlm
    loaded = tf.saved_model.load(str(result.export_path))
    expected = loaded.signatures["generate"](**{k: tf.constant(v) for k, v in inputs().items()})
    texts = [text.decode() for text in expected["text"].numpy()]
    assert texts[0].startswith(PROMPTS[0]) and len(texts[0]) == len(PROMPTS[0]) + 30
    assert len(texts[1]) == 1 + 10
    other = loaded.signatures["generate"](**{k: tf.constant(v)
                                              for k, v in inputs(seed=6).items()})
    assert [t.decode() for t in other["text"].numpy()] != texts  # the seed matters
    server = start_server([f"--model_name={config.name}",
                           f"--model_base_path={result.export_path.parent}"])
    for client in (RestClient(port=server.rest_port), GrpcClient(port=server.grpc_port)):
        outputs = client.predict(config.name, inputs(), signature_name="generate")
        assert [text.decode() for text in outputs["text"]] == texts
    demo = subprocess.run(
        [sys.executable, "-m", "serving.predict_demo", "--protocol", "grpc", "--port",
         str(server.grpc_port), "--model", config.name, "--prompt", PROMPTS[0], "--length",
         "30", "--temperature", "0.8", "--seed", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.strip().startswith(PROMPTS[0])
