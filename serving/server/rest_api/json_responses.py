"""Tensors and results -> REST response bodies, byte for byte as TF Serving writes them.

:predict answers "predictions" (row requests) or "outputs" (columnar requests); string
outputs whose name ends in "_bytes" are written as {"b64": ...}; :classify and :regress
answer "results". Layout and number formatting come from `json_writer`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import numpy as np

from serving.server.core import errors
from serving.server.rest_api.json_writer import PrettyWriter, format_floats, quote

_BYTES_SUFFIX = "_bytes"
_INT_KINDS = "iu"


def _leaf_tokens(name: str, array: np.ndarray) -> list[bytes]:
    """Return the JSON tokens of every element of `array`, flattened in row-major order."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype in (np.float32, np.float64):
        return [text.encode() for text in format_floats(array)]
    if kind == "b":
        return [b"true" if value else b"false" for value in array.ravel().tolist()]
    if kind in _INT_KINDS and array.dtype != np.uint16:
        return [str(value).encode() for value in array.ravel().tolist()]
    if kind == "O":
        values = array.ravel().tolist()
        if name.endswith(_BYTES_SUFFIX):
            return [b'{"b64": "' + base64.b64encode(value) + b'"}' for value in values]
        return [quote(value) for value in values]
    raise errors.invalid_argument(
        f"Failed to write JSON value for tensor type: {_numpy_type_name(array)}"
    )


def _numpy_type_name(array: np.ndarray) -> str:
    names = {"float16": "half", "complex64": "complex64", "complex128": "complex128"}
    return names.get(array.dtype.name, array.dtype.name)


def _write_tensor(writer: PrettyWriter, tokens: list[bytes], shape: tuple, dim: int, offset: int) -> int:
    """Write tokens[offset:] nested by shape[dim:] (AddTensorValues); return the new offset."""
    if dim >= len(shape):
        writer.raw(tokens[offset])
        return offset + 1
    writer.start_array()
    if dim == len(shape) - 1:
        writer.scalars(tokens[offset : offset + shape[dim]])
        offset += shape[dim]
    else:
        for _ in range(shape[dim]):
            offset = _write_tensor(writer, tokens, shape, dim + 1, offset)
    writer.end_array()
    return offset


def _b64_object_token(writer: PrettyWriter, token: bytes) -> None:
    """Write a {"b64": ...} value with PrettyWriter's object layout (it is not single-line)."""
    writer.start_object()
    writer.key("b64")
    writer.raw(token[len(b'{"b64": ') : -1])
    writer.end_object()


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """Return the :predict response body ("predictions" or "outputs"), TF Serving's layout."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    tokens = {name: _leaf_tokens(name, np.asarray(outputs[name])) for name in names}
    writer = _TensorWriter()
    writer.start_object()
    if row_format:
        _write_rows(writer, outputs, names, tokens)
    else:
        writer.key("outputs")
        multiple = len(names) > 1
        if multiple:
            writer.start_object()
        for name in names:
            if multiple:
                writer.key(name)
            writer.tensor(tokens[name], outputs[name].shape, 0, 0)
        if multiple:
            writer.end_object()
    writer.end_object()
    return writer.getvalue()


def _write_rows(writer, outputs, names, tokens) -> None:
    batch_size = None
    for name in names:
        shape = outputs[name].shape
        if not shape:
            raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size is not None and shape[0] != batch_size:
            raise errors.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch_size}"
            )
        batch_size = shape[0]
    writer.key("predictions")
    writer.start_array()
    multiple = len(names) > 1
    offsets = dict.fromkeys(names, 0)
    for _ in range(batch_size):
        if multiple:
            writer.start_object()
        writer.single_line_arrays = True
        for name in names:
            if multiple:
                writer.key(name)
            offsets[name] = writer.tensor(tokens[name], outputs[name].shape, 1, offsets[name])
        writer.single_line_arrays = False
        if multiple:
            writer.end_object()
    writer.end_array()


class _TensorWriter(PrettyWriter):
    """PrettyWriter that writes tensors, expanding b64 tokens into real objects."""

    def tensor(self, tokens: list[bytes], shape: tuple, dim: int, offset: int) -> int:
        if tokens and tokens[0].startswith(b"{"):
            return self._b64_tensor(tokens, shape, dim, offset)
        return _write_tensor(self, tokens, shape, dim, offset)

    def _b64_tensor(self, tokens, shape, dim, offset) -> int:
        if dim >= len(shape):
            _b64_object_token(self, tokens[offset])
            return offset + 1
        self.start_array()
        for _ in range(shape[dim]):
            offset = self._b64_tensor(tokens, shape, dim + 1, offset)
        self.end_array()
        return offset


def classify_response(result) -> bytes:
    """Return the :classify body: {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classifications in result.classifications:
        writer.single_line_arrays = True
        writer.start_array()
        scores = np.array([entry.score for entry in classifications.classes], dtype=np.float32)
        for entry, score in zip(classifications.classes, format_floats(scores), strict=True):
            writer.start_array()
            writer.string(entry.label)
            writer.raw(score.encode())
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return writer.getvalue()


def regress_response(result) -> bytes:
    """Return the :regress body: {"results": [value, ...]}."""
    if not result.regressions:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = np.array([regression.value for regression in result.regressions], dtype=np.float32)
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True
    writer.start_array()
    writer.scalars([text.encode() for text in format_floats(values)])
    writer.end_array()
    writer.end_object()
    return writer.getvalue()
