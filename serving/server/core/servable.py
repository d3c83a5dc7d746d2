"""One loaded version of a model, as inference sees it: SignatureDefs and a way to run them.

`Servable` is what both fronts' requests run on; `check_inputs` is the Session's dtype
check, plus a shape check when `onednn_enabled` says this process runs oneDNN's kernels.
Loading a servable from disk is `management/loader.py`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving.codec import dtype_enum, dtype_name, shape_list
from serving.server.core import errors

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
        return {key: _to_numpy(value) for key, value in results.items()}


def _to_numpy(tensor: tf.Tensor) -> np.ndarray:
    """Return a tensor's value as an array; strings always as an object array of bytes.

    A rank-0 string's .numpy() is a bare `bytes`, which numpy would later turn into a
    fixed-width (NUL-stripping) 'S' array that neither front can write.
    """
    value = tensor.numpy()
    return np.asarray(value, dtype=object) if tensor.dtype == tf.string else value


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
                f"{errors.shape_string(value.shape)} but the signature expects "
                f"{errors.shape_string(expected)}"
            )


def _shape_fits(actual: tuple[int, ...], expected: list[int]) -> bool:
    return len(actual) == len(expected) and all(
        want < 0 or want == got for got, want in zip(actual, expected, strict=True)
    )
