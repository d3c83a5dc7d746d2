"""The training stage of a character language model (`model.family: charlm`).

`make train CONFIG=configs/fortunes_charlm.yaml` comes here from `pipeline/stages/train.py`:
the source's records (the labels are not used) -> character ids -> next-character model ->
bits per character on the held-out test records, beside a smoothed character n-gram fitted
on the same training records -> a SavedModel with the in-graph `generate` signature
(serving/generator.py), registered in MLflow and published to saved_models/<name>/<version>.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import keras
import tensorflow as tf

from models import get_family
from models.charlm import BOS
from models.spec import InputSpec
from pipeline.config import RunConfig
from pipeline.fitting.hardware import configured
from pipeline.reports.run_notes import LANGUAGE_MODEL
from pipeline.stages import publish
from pipeline.stages.baseline import CharNgram
from pipeline.stages.data import load_source
from pipeline.stages.publish import TrainResult, check_version_free
from pipeline.tracking import MetricsCallback, Tracker
from serving import export
from serving.generator import export_generator

MIN_COUNT = 3  # rarer characters map to [UNK]


def _texts(source, split: str) -> list[str]:
    return [text.decode("utf-8") for text, _ in source.splits[split].examples.as_numpy_iterator()]


def character_vocabulary(texts: list[str], limit: int) -> tuple[str, ...]:
    """Return the training texts' characters seen MIN_COUNT times or more, most frequent first."""
    counts = Counter(char for text in texts for char in text)
    return tuple(char for char, count in counts.most_common(limit) if count >= MIN_COUNT)


def make_pairs(texts: list[str], lookup, length: int, batch_size: int, shuffle: bool,
               seed: int) -> tf.data.Dataset:
    """Return padded batches of (BOS + text[:-1], text) as ids: teacher forcing, one record each."""
    def pair(text):
        ids = lookup(tf.strings.unicode_split(text, "UTF-8")[:length])
        inputs = tf.concat([tf.constant([2], ids.dtype), ids[:-1]], axis=0)
        return tf.cast(inputs, tf.int32), tf.cast(ids, tf.int32)

    examples = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).map(pair)
    if shuffle:
        examples = examples.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return examples.padded_batch(batch_size, padded_shapes=([length], [length])).prefetch(2)


def bits_per_char(model: keras.Model, batches: tf.data.Dataset) -> float:
    """Return the mean -log2 P(next character) over every real (not padding) character."""
    nats, count = 0.0, 0
    for inputs, targets in batches:
        log_probabilities = tf.nn.log_softmax(tf.cast(model(inputs, training=False), tf.float32))
        picked = tf.gather(log_probabilities, targets, batch_dims=2)
        real = tf.cast(targets > 0, tf.float32)
        nats -= float(tf.reduce_sum(picked * real))
        count += int(tf.reduce_sum(real))
    return nats / max(1, count) / math.log(2)


def run(config: RunConfig, log=print):
    """Train, measure bits/char against the n-gram, export and register; return a TrainResult.

    The run gets what a classifier's gets (publish.py): the SavedModel as an MLflow logged
    model and registered version, its lineage in assets.extra/, and a Description.
    """
    started = time.perf_counter()
    tracker = Tracker(config.tracking.tracking_uri, config.tracking.experiment)
    check_version_free(config, tracker)
    tags = {"model_name": config.name, "model_family": config.model.family,
            "config_fingerprint": config.fingerprint()}
    with configured(config.train, config.seed):
        # Data first: records that cannot be found or read leave no FAILED run behind.
        source = load_source(config.data, config.seed)
        texts = {split: _texts(source, split) for split in ("train", "validation", "test")}
        seconds = {"data_seconds": time.perf_counter() - started}
        with tracker.run(f"{config.name} · {config.model.family} · train",
                         tags=tags) as mlflow_run:
            metrics, path, version = _train(config, tracker, mlflow_run, source.identity,
                                            texts, log, seconds)
            seconds["total_seconds"] = time.perf_counter() - started
            mlflow_run.log_metrics({name: seconds[name] for name in ("publish_seconds",
                                                                     "total_seconds")})
    return TrainResult(run_id=mlflow_run.run_id, tracking_uri=tracker.tracking_uri,
                       experiment=config.tracking.experiment, metrics=metrics,
                       export_path=path, model_version=version, resumed=False,
                       seconds=seconds)


def _train(config: RunConfig, tracker: Tracker, mlflow_run, identity: dict,
           texts: dict[str, list[str]], log, seconds: dict[str, float]):
    """Fit, measure and publish inside the open run; add the parts' wall times to `seconds`."""
    mlflow_run.log_params(config.flat())
    mlflow_run.log_params({f"dataset.{key}": value for key, value in identity.items()})
    mlflow_run.log_params({f"dataset.{split}_examples": len(items)
                           for split, items in texts.items()})
    characters = character_vocabulary(texts["train"], config.data.vocabulary_size)
    lookup = keras.layers.StringLookup(vocabulary=[BOS, *characters], mask_token="",
                                       oov_token="[UNK]")
    batches = {split: make_pairs(items, lookup, config.data.sequence_length,
                                 config.data.batch_size, split == "train", config.seed)
               for split, items in texts.items()}
    log(f"MLflow run {mlflow_run.run_id}; {len(characters)} characters, records: "
        + ", ".join(f"{split} {len(items)}" for split, items in texts.items()))
    keras.utils.set_random_seed(config.seed)
    input_spec = InputSpec.text(characters, config.data.sequence_length, "character")
    model = get_family("charlm").build(input_spec, lookup.vocabulary_size(),
                                       **config.model.params)
    mlflow_run.log_metrics({"parameters": model.count_params()})
    started = time.perf_counter()
    model.fit(batches["train"], validation_data=batches["validation"],
              epochs=config.train.epochs, verbose=2, shuffle=False,  # tf.data shuffles
              callbacks=[MetricsCallback(mlflow_run)])
    seconds["fit_seconds"] = time.perf_counter() - started
    mlflow_run.log_metrics(seconds)  # data and fit so far; the run note reads fit_seconds
    started = time.perf_counter()
    metrics = {"test_bits_per_char": bits_per_char(model, batches["test"])}
    truncated = [text[:config.data.sequence_length] for text in texts["test"]]
    ngram = CharNgram(order=5).fit(texts["train"])
    metrics["baseline_test_bits_per_char"] = ngram.bits_per_char(truncated)
    mlflow_run.log_metrics(metrics)
    log(f"test bits/char {metrics['test_bits_per_char']:.3f} (5-gram baseline "
        f"{metrics['baseline_test_bits_per_char']:.3f})")
    path = version = model_id = None
    if config.export.enabled:
        model_dir = config.export.base_dir / config.name
        staged = export.StagedExport(export_generator(model, characters, model_dir),
                                     model_dir, 0.0)
        path, version, model_id = publish.publish_staged(staged, config, tracker, mlflow_run,
                                                         metrics, log)
    publish.describe(config, identity, tracker, mlflow_run, metrics, path, version, model_id,
                     LANGUAGE_MODEL)
    seconds["publish_seconds"] = time.perf_counter() - started
    return metrics, path, version
