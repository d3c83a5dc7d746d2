"""One loaded version of a model: its SignatureDefs and the functions behind them.

The SignatureDefs are read from saved_model.pb itself (not reconstructed from the loaded
functions), so GetModelMetadata returns what TF Serving returns, method names included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.server import errors
from serving.server.tensors import dtype_enum, dtype_name, shape_list

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
    run: Runner = field(init=False, repr=False)

    def __post_init__(self):
        self.run = self.call

    def signature(self, signature_name: str) -> meta_graph_pb2.SignatureDef | None:
        """Return the SignatureDef named `signature_name` ('' means serving_default), or None."""
        return self.signature_defs.get(signature_name or DEFAULT_SIGNATURE)

    def call(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return every output of signature `signature_name` computed on `inputs`.

        Inputs must already match the signature (see `check_inputs`); TensorFlow errors come
        back as ServingErrors with TensorFlow's own status code.
        """
        function = self.functions[signature_name]
        try:
            results = function(**{key: tf.convert_to_tensor(value) for key, value in inputs.items()})
        except Exception as error:
            raise errors.from_exception(error) from None
        return {key: value.numpy() for key, value in results.items()}


def check_inputs(
    signature_name: str, signature: meta_graph_pb2.SignatureDef, inputs: Mapping[str, np.ndarray]
) -> None:
    """Raise INVALID_ARGUMENT unless each input's dtype and shape fit the signature.

    TF Serving lets the Session reject such inputs; calling a restored function would
    instead raise a Python TypeError, so the same checks run here, with TF's wording for
    dtypes ('Expects arg[i] to be uint8 but float is provided').
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
        if expected is not None and not _shape_fits(value.shape, expected):
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


def read_meta_graph(path: str | os.PathLike, tags: set[str]) -> meta_graph_pb2.MetaGraphDef:
    """Return the MetaGraphDef of the SavedModel at `path` whose tag set equals `tags`."""
    directory = Path(path)
    binary, text = directory / "saved_model.pb", directory / "saved_model.pbtxt"
    saved_model = saved_model_pb2.SavedModel()
    if binary.is_file():
        try:
            saved_model.ParseFromString(binary.read_bytes())
        except Exception as error:
            raise errors.ServingError(
                grpc.StatusCode.DATA_LOSS, f"Could not parse {binary}: {error}"
            ) from None
    elif text.is_file():
        from google.protobuf import text_format

        text_format.Parse(text.read_text(), saved_model)
    else:
        raise errors.not_found(
            "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{directory}"
        )
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == tags:
            return meta_graph
    raise errors.not_found(
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(tags))} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli`"
    )


def load_servable(name: str, version: int, path: str, tags: set[str]) -> Servable:
    """Return the SavedModel at `path` loaded as servable (`name`, `version`)."""
    meta_graph = read_meta_graph(path, tags)
    try:
        loaded = tf.saved_model.load(path, tags=sorted(tags))
    except Exception as error:
        raise errors.from_exception(error) from None
    signature_defs = dict(meta_graph.signature_def)
    functions = {key: loaded.signatures[key] for key in signature_defs if key in loaded.signatures}
    return Servable(name, version, path, signature_defs, functions, loaded)
