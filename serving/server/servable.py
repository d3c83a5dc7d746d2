"""One loaded version of a model: its SignatureDefs and the functions behind them.

The SignatureDefs are read from saved_model.pb itself (not reconstructed from the loaded
functions), so GetModelMetadata returns what TF Serving returns, method names included.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.codec import dtype_enum, dtype_name, shape_list
from serving.server import errors

DEFAULT_SIGNATURE = "serving_default"

# A signature call: named numpy inputs in, named numpy outputs out.
Runner = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Servable:
    """A loaded (model name, version): signature defs plus callable signature functions.

    `run` is what inference calls; the manager may replace it with a batching runner that
    queues calls and forwards merged batches to `call`.
    """

    name: str
    version: int
    path: str
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    functions: dict[str, Callable]
    loaded: object = field(repr=False, default=None)
    # Check input shapes against the signature before calling (see `check_inputs`).
    check_shapes: bool = False
    run: Runner = field(init=False, repr=False)

    def __post_init__(self):
        self.run = self.call

    def signature(self, signature_name: str) -> meta_graph_pb2.SignatureDef | None:
        """Return the SignatureDef named `signature_name` ('' means serving_default), or None."""
        return self.signature_defs.get(signature_name or DEFAULT_SIGNATURE)

    def call(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return every output of signature `signature_name` computed on `inputs`.

        The function is called on its flat arguments, as TF Serving feeds a Session: the
        signature's shapes are not enforced, so half_plus_two's `x` ([-1, 1]) takes
        `[1.0, 2.0, 5.0]` and gives `[2.5, 3.0, 4.5]`; a shape the graph cannot compute is
        the kernel's own error. TensorFlow errors come back as ServingErrors with
        TensorFlow's status code.
        """
        function = self.functions[signature_name]
        arguments = [tf.convert_to_tensor(inputs[key]) for key in function._arg_keywords]
        try:
            results = function._call_flat(arguments, function.captured_inputs)
        except Exception as error:
            raise errors.from_exception(error) from None
        return {key: value.numpy() for key, value in results.items()}


def onednn_enabled() -> bool:
    """Return whether this process runs oneDNN kernels (TF_ENABLE_ONEDNN_OPTS, read at import).

    They CHECK-fail, aborting the process, on inputs of the wrong rank; when unsure, say yes.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return True


def check_inputs(
    signature_name: str,
    signature: meta_graph_pb2.SignatureDef,
    inputs: Mapping[str, np.ndarray],
    shapes: bool = False,
) -> None:
    """Raise INVALID_ARGUMENT unless each input's dtype (and, if `shapes`, shape) fits.

    dtypes get the Session's wording ('Expects arg[i] to be uint8 but float is provided').
    TF Serving leaves shapes to the kernels; `shapes` is for processes whose kernels abort
    on a wrong rank instead of returning an error (oneDNN's convolutions do).
    """
    for index, alias in enumerate(sorted(signature.inputs)):
        info = signature.inputs[alias]
        value = inputs[alias]
        actual = dtype_enum(value)
        if actual != info.dtype:
            raise errors.invalid_argument(
                f"Expects arg[{index}] to be {dtype_name(info.dtype)} but "
                f"{dtype_name(actual)} is provided"
            )
        expected = shape_list(info.tensor_shape)
        if shapes and expected is not None and not _shape_fits(value.shape, expected):
            raise errors.invalid_argument(
                f"input '{alias}' of signature '{signature_name}' has shape "
                f"{_format_shape(value.shape)} but the signature expects {_format_shape(expected)}"
            )


def _shape_fits(actual: tuple[int, ...], expected: list[int]) -> bool:
    return len(actual) == len(expected) and all(
        want < 0 or want == got for got, want in zip(actual, expected, strict=True)
    )


def _format_shape(shape) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


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
