"""Loading a SavedModel version from disk into a Servable, as TF Serving's loader does.

The SignatureDefs are read from saved_model.pb itself (not reconstructed from the loaded
functions), so GetModelMetadata returns what TF Serving returns, method names included.
Graphs written by TensorFlow 1.0 and older get their unknown shapes read as the C++
loader reads them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.server.core import errors
from serving.server.core.servable import Servable


def read_saved_model(path: str | os.PathLike) -> saved_model_pb2.SavedModel:
    """Return the SavedModel proto at `path` (saved_model.pb, else saved_model.pbtxt)."""
    directory = Path(path)
    binary, text = directory / "saved_model.pb", directory / "saved_model.pbtxt"
    saved_model = saved_model_pb2.SavedModel()
    if binary.is_file():
        try:
            saved_model.ParseFromString(binary.read_bytes())
        except Exception:
            raise errors.ServingError(
                grpc.StatusCode.DATA_LOSS, f"Can't parse {binary} as binary proto"
            ) from None
    elif text.is_file():
        from google.protobuf import text_format

        try:
            text_format.Parse(text.read_text(), saved_model)
        except Exception:
            raise errors.ServingError(
                grpc.StatusCode.DATA_LOSS, f"Can't parse {text} as text proto"
            ) from None
    else:
        raise errors.not_found(
            "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{directory}"
        )
    return saved_model


def select_meta_graph(
    saved_model: saved_model_pb2.SavedModel, tags: set[str]
) -> meta_graph_pb2.MetaGraphDef:
    """Return the MetaGraphDef of `saved_model` whose tag set equals `tags`."""
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == tags:
            return meta_graph
    raise errors.not_found(
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(tags))} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli`"
    )


# GraphDefs up to this producer version wrote an unknown shape as `shape {}` on Placeholders
# and as no shape on signature tensors; TensorFlow's C++ loader (and so TF Serving) reads
# both as unknown, Python's loader as scalars (TF Serving's saved_model_half_plus_three).
LEGACY_SHAPE_PRODUCER = 21


def _with_unknown_legacy_shapes(saved_model: saved_model_pb2.SavedModel) -> saved_model_pb2.SavedModel:
    """Return a copy of `saved_model` whose empty shapes (Placeholders, signature tensors) say
    'unknown rank'."""
    patched = saved_model_pb2.SavedModel()
    patched.CopyFrom(saved_model)
    for meta_graph in patched.meta_graphs:
        if meta_graph.graph_def.versions.producer > LEGACY_SHAPE_PRODUCER:
            continue
        shapes = [node.attr["shape"].shape for node in meta_graph.graph_def.node
                  if node.op == "Placeholder" and "shape" in node.attr]
        for signature in meta_graph.signature_def.values():
            infos = [*signature.inputs.values(), *signature.outputs.values()]
            shapes += [info.tensor_shape for info in infos]
        for shape in shapes:
            if not shape.dim:
                shape.unknown_rank = True
    return patched


def _load(path: str, saved_model: saved_model_pb2.SavedModel, tags: set[str]):
    """Return tf.saved_model.load of `path`, legacy shapes read as the C++ loader reads them."""
    if all(meta_graph.graph_def.versions.producer > LEGACY_SHAPE_PRODUCER
           for meta_graph in saved_model.meta_graphs):
        return tf.saved_model.load(path, tags=sorted(tags))
    # The patched graph goes in a scratch folder beside links to the original variables
    # and assets; loading restores the variables and runs the initialisers, after which
    # the folder is no longer read.
    with tempfile.TemporaryDirectory(prefix="legacy-saved-model-") as scratch:
        for entry in Path(path).iterdir():
            if entry.name not in ("saved_model.pb", "saved_model.pbtxt"):
                os.symlink(entry.resolve(), Path(scratch) / entry.name)
        (Path(scratch) / "saved_model.pb").write_bytes(
            _with_unknown_legacy_shapes(saved_model).SerializeToString())
        return tf.saved_model.load(scratch, tags=sorted(tags))


def load_servable(name: str, version: int, path: str, tags: set[str]) -> Servable:
    """Return the SavedModel at `path` loaded as servable (`name`, `version`)."""
    saved_model = read_saved_model(path)
    meta_graph = select_meta_graph(saved_model, tags)
    try:
        loaded = _load(path, saved_model, tags)
    except Exception as error:
        raise errors.from_exception(error) from None
    signature_defs = dict(meta_graph.signature_def)
    functions = {key: loaded.signatures[key] for key in signature_defs if key in loaded.signatures}
    return Servable(name, version, path, signature_defs, functions, loaded)
