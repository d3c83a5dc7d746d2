"""Keras model -> SavedModel in TF Serving's layout, written so no one sees half a version.

`stage` writes the SavedModel into a hidden temp folder beside the versions (TF Serving
only loads all-digit folder names), adds the class names asset and the warmup requests,
then reloads it and checks it against the Keras model. `publish` renames the staged folder
to its version number: one atomic rename on the same file system.

Signatures (inputs -> outputs):
- `serving_default`: the raw input (`image` uint8 [-1, H, W, C], `text` string [-1] or
  `sequence` float32 [-1, T, F]) -> `probabilities`, `class_id`, `class_name`.
- `predict_image_bytes` (images): `image_bytes` string [-1] of encoded PNG/JPEG/GIF/BMP, as
  REST clients send with {"b64": ...}; decoded and resized in the graph -> the same outputs.
- `classify` (method tensorflow/serving/classify, for the Classify API): `inputs`, serialized
  tf.Example protos with the encoded image under `image` (or the string under `text`) ->
  `classes` and `scores`, one column per class.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.spec import InputSpec
from serving.common import LINEAGE_FILE, list_versions
from serving.signatures import ServingModule, set_method_names
from serving.warmup_requests import WARMUP_FILE, write_warmup_requests

CLASS_NAMES_FILE = "class_names.txt"


class ExportError(RuntimeError):
    """An export that must not be published; the staged folder has been removed."""


@dataclass(frozen=True)
class StagedExport:
    path: Path  # hidden folder inside model_dir, invisible to TF Serving
    model_dir: Path  # saved_models/<name>
    parity_max_abs_diff: float


def version_dirs(model_dir: Path) -> list[int]:
    """Return the version numbers present under a model's base path, ascending."""
    return sorted(list_versions(model_dir)) if model_dir.is_dir() else []


def stage(
    model: keras.Model,
    *,
    model_dir: Path,
    model_name: str,
    input_spec: InputSpec,
    class_names: tuple[str, ...],
    sample_inputs: np.ndarray,
    warmup_batch_sizes: tuple[int, ...],
    parity_tolerance: float,
) -> StagedExport:
    """Write and verify a SavedModel in a hidden folder of `model_dir`; return where it is.

    `sample_inputs` are real examples (from the test split): the warmup requests are made of
    them and the parity check runs on them. On any failure the staged folder is removed.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        _write(model, path, input_spec, class_names)
        write_warmup_requests(path / WARMUP_FILE,
                              model_name=model_name, input_name=input_spec.name,
                              inputs=sample_inputs, batch_sizes=warmup_batch_sizes)
        max_diff = check_parity(model, path, input_spec, sample_inputs, parity_tolerance)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return StagedExport(path=path, model_dir=model_dir, parity_max_abs_diff=max_diff)


def _write(model: keras.Model, path: Path, input_spec: InputSpec,
           class_names: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory(prefix="tfpipe-assets-") as assets:
        class_names_file = Path(assets) / CLASS_NAMES_FILE
        class_names_file.write_text("".join(f"{name}\n" for name in class_names))
        module = ServingModule(model, input_spec, class_names, class_names_file)
        tf.saved_model.save(module, str(path), signatures=module.signatures())
    set_method_names(path, {"classify": "tensorflow/serving/classify"})


def check_parity(model: keras.Model, path: Path, input_spec: InputSpec, inputs: np.ndarray,
                 tolerance: float) -> float:
    """Return the max |probability difference| of the reloaded SavedModel vs the Keras model.

    Raises ExportError when it exceeds `tolerance`, when a predicted class differs, or when
    the encoded-image signature disagrees with the pixel signature on the same images.
    """
    loaded = tf.saved_model.load(str(path))
    # Called directly rather than through predict(): predict() rejects NumPy byte strings.
    expected = np.concatenate([
        np.asarray(model(tf.constant(inputs[start : start + 256]), training=False), np.float32)
        for start in range(0, len(inputs), 256)])
    served = loaded.signatures["serving_default"](**{input_spec.name: tf.constant(inputs)})
    max_diff = float(np.max(np.abs(served["probabilities"].numpy() - expected)))
    if max_diff > tolerance:
        raise ExportError(f"export parity failed: SavedModel and Keras probabilities differ by "
                          f"{max_diff:.3g} > export.parity_tolerance={tolerance:g}")
    if not np.array_equal(served["class_id"].numpy(), expected.argmax(axis=-1)):
        raise ExportError("export parity failed: SavedModel and Keras predict different classes")
    if input_spec.kind == "image":
        encoded = tf.stack([tf.io.encode_png(image) for image in tf.constant(inputs)])
        from_bytes = loaded.signatures["predict_image_bytes"](image_bytes=encoded)
        bytes_diff = float(np.max(np.abs(from_bytes["probabilities"].numpy()
                                         - served["probabilities"].numpy())))
        if bytes_diff > tolerance:
            raise ExportError(f"export parity failed: predict_image_bytes differs from "
                              f"serving_default by {bytes_diff:.3g} on the same images")
    return max_diff


def write_lineage(staged: StagedExport, **lineage: object) -> Path:
    """Write where the export came from (MLflow run id, registered version) into its assets.extra/."""
    path = staged.path / LINEAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: str(value) for key, value in lineage.items()}, indent=1))
    return path


def publish(staged: StagedExport, version: int) -> Path:
    """Rename the staged SavedModel to `model_dir/<version>`; return the version folder."""
    target = staged.model_dir / str(version)
    if target.exists():
        discard(staged)
        raise ExportError(f"{target} already exists; refusing to overwrite a published version")
    staged.path.rename(target)
    return target


def discard(staged: StagedExport) -> None:
    """Remove a staged export that will not be published."""
    shutil.rmtree(staged.path, ignore_errors=True)
