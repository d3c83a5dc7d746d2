"""TensorProto <-> numpy, the one codec the gRPC client and the server both use.

Requests arrive as TensorProto (gRPC) and leave as TensorProto; the hot path avoids
per-element Python work: `tensor_content` is viewed with np.frombuffer (no copy), and
typed repeated fields go through one `tolist()`/`extend()` call. It imports nothing of
the server, so `serving.client` can use it without the server's code.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

DataType = types_pb2.DataType

# Which repeated field of TensorProto holds values of each dtype (TF's AsProtoField).
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_STRING: "string_val",
}
# The dtypes whose numpy values map straight onto the field above (half and complex need
# bit or pair packing, so they take tf.make_tensor_proto/make_ndarray instead).
_FAST_DTYPES = frozenset(_VALUE_FIELD)
_VALUE_FIELDS = [field for field in tensor_pb2.TensorProto.DESCRIPTOR.fields if field.name.endswith("_val")]

# TensorFlow's own limit on the rank of a tensor (TensorShape::MaxDimensions()).
MAX_RANK = 254
# numpy's (NPY_MAXDIMS): tensors of rank 65 to 254 are refused as unparsable, not crashed on.
MAX_ARRAY_RANK = min(MAX_RANK, 64)
_MAX_ELEMENTS = 2**63 - 1
# The most bytes a request tensor may grow to by repeating its last value (or zeros) to fill
# its shape. TensorFlow allows any size; a bound keeps a tiny proto claiming a huge shape from
# costing more memory than a request should. Tensors whose values are all given are unbounded.
MAX_FILLED_BYTES = 256 * 1024 * 1024


class TensorParsingError(ValueError):
    """A TensorProto that does not hold a valid tensor: 'tensor parsing error: <alias>'.

    The server answers it as TF Serving does, with INVALID_ARGUMENT and this message.
    """

    def __init__(self, alias: str):
        super().__init__(f"tensor parsing error: {alias}")


def dtype_name(dtype: int) -> str:
    """Return TF's DataTypeString for an enum value: DT_FLOAT -> 'float', DT_UINT8 -> 'uint8'."""
    try:
        return DataType.Name(dtype)[3:].lower()
    except ValueError:
        return f"unknown dtype enum {dtype}"


@functools.cache
def numpy_dtype(dtype: int) -> np.dtype:
    """Return the numpy dtype holding values of a TF DataType enum (object for strings)."""
    return np.dtype(tf.dtypes.as_dtype(dtype).as_numpy_dtype)


def dtype_enum(array: np.ndarray) -> int:
    """Return the TF DataType enum for a numpy array (object and str/bytes arrays are strings)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    return tf.dtypes.as_dtype(array.dtype).as_datatype_enum


def shape_list(proto: tensor_shape_pb2.TensorShapeProto) -> list[int] | None:
    """Return the dims of a TensorShapeProto (-1 for unknown), or None for unknown rank."""
    if proto.unknown_rank:
        return None
    return [dim.size for dim in proto.dim]


def to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Return the value of a request TensorProto as a numpy array.

    Follows Tensor::FromProto: values may be given as `tensor_content` or the typed field;
    fewer values than elements repeat the last one (none gives zeros), more are cut to the
    shape; any other mismatch raises TensorParsingError.
    """
    shape = shape_list(proto.tensor_shape)
    if shape is None or any(size < 0 for size in shape) or len(shape) > MAX_ARRAY_RANK:
        raise TensorParsingError(alias)
    num_elements = math.prod(shape)
    if num_elements > _MAX_ELEMENTS:  # TensorShape's overflow check
        raise TensorParsingError(alias)
    if not _backed_by_request(proto, num_elements):
        raise TensorParsingError(alias)
    if proto.dtype not in _FAST_DTYPES:
        return _slow_to_ndarray(proto, alias)
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        values = np.frombuffer(proto.tensor_content, dtype=numpy_dtype(proto.dtype))
        return values.reshape(shape)
    field = getattr(proto, _VALUE_FIELD[proto.dtype])
    if proto.dtype == types_pb2.DT_STRING:
        values = np.empty(len(field), dtype=object)
        values[:] = list(field)
    else:
        values = np.array(field, dtype=numpy_dtype(proto.dtype))
    return _fill_to_shape(values, shape, num_elements)


def _item_size(dtype: int) -> int:
    """Return the bytes one element of `dtype` takes in memory (a pointer for strings)."""
    try:
        return numpy_dtype(dtype).itemsize
    except Exception:  # resource, variant, ...: no numpy dtype
        return 8


def _backed_by_request(proto: tensor_pb2.TensorProto, num_elements: int) -> bool:
    """Return whether building the tensor costs no more than the proto's own bytes allow.

    `tensor_content` must hold exactly the elements of the shape (Tensor::FromProto's
    Decode); typed values may be repeated to fill the shape, up to MAX_FILLED_BYTES.
    Checked before anything is allocated from the shape.
    """
    item_size = _item_size(proto.dtype)
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        return len(proto.tensor_content) == num_elements * item_size
    if proto.dtype in _VALUE_FIELD:
        given = len(getattr(proto, _VALUE_FIELD[proto.dtype]))
    else:
        given = max(len(getattr(proto, field.name)) for field in _VALUE_FIELDS)
    return given >= num_elements or num_elements * item_size <= MAX_FILLED_BYTES


def _fill_to_shape(values: np.ndarray, shape: list[int], count: int) -> np.ndarray:
    """Return `values` reshaped to `shape`: cut, or padded with its last value, as TF does."""
    if values.size >= count:
        return values[:count].reshape(shape)
    if values.size == 0:
        filler = b"" if values.dtype == object else 0
        return np.full(shape, filler, dtype=values.dtype)
    padded = np.empty(count, dtype=values.dtype)
    padded[: values.size] = values
    padded[values.size :] = values[-1]
    return padded.reshape(shape)


def _slow_to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Return the value of a TensorProto of an uncommon dtype (half, complex, ...)."""
    try:
        return tf.make_ndarray(proto)
    except Exception:
        raise TensorParsingError(alias) from None


def to_tensor_proto(array: np.ndarray, as_content: bool = False) -> tensor_pb2.TensorProto:
    """Return `array` as a TensorProto, values in the typed field as TF Serving replies.

    TF Serving fills typed fields (Tensor::AsProtoField) unless started with
    --enable_serialization_as_tensor_content, which `as_content` mirrors.
    """
    dtype = dtype_enum(array)
    if dtype not in _FAST_DTYPES:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if dtype == types_pb2.DT_STRING:
        flat = array.ravel().tolist()
        proto.string_val.extend(
            value if isinstance(value, bytes) else str(value).encode("utf-8") for value in flat
        )
    elif as_content:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    else:
        getattr(proto, _VALUE_FIELD[dtype]).extend(array.ravel().tolist())
    return proto
