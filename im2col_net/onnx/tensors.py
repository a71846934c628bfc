"""Reading ONNX tensors safely: sizes are checked against :class:`Limits` before any
array is allocated, and external data may only come from files inside the model's
directory, within their bounds."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .deps import OnnxError

__all__ = ["Limits", "TensorReader", "DTYPES"]

# ONNX TensorProto data type -> NumPy dtype (little-endian, as ONNX raw_data is).
DTYPES = {1: np.dtype("<f4"), 11: np.dtype("<f8"), 7: np.dtype("<i8"), 6: np.dtype("<i4")}
# The typed repeated field holding the values when raw_data is empty.
_FIELDS = {1: "float_data", 11: "double_data", 7: "int64_data", 6: "int32_data"}


@dataclass(frozen=True)
class Limits:
    """Upper bounds for an imported file; anything larger is refused before allocation.

    ``max_file_bytes``: the ``.onnx`` file itself; ``max_tensor_bytes``: one initialiser
    or constant; ``max_total_bytes``: all of them together (external data included);
    ``max_nodes``: graph nodes; ``max_input_elements``: elements of one input sample
    (``C * H * W``); ``max_activation_elements``: elements per sample of any layer's
    padded input, output or lowering workspace (checked before the layer runs);
    ``max_rank``: dimensions of any tensor.
    """

    max_file_bytes: int = 2 << 30
    max_tensor_bytes: int = 1 << 30
    max_total_bytes: int = 2 << 30
    max_nodes: int = 100_000
    max_input_elements: int = 1 << 24
    max_activation_elements: int = 1 << 26
    max_rank: int = 8


def type_name(onnx, data_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(data_type)
    except ValueError:
        return f"data type {data_type}"


class TensorReader:
    """Turns TensorProtos into arrays, counting the bytes read against the limits."""

    def __init__(self, onnx, limits: Limits, base_dir):
        self.onnx = onnx
        self.limits = limits
        self.base_dir = None if base_dir is None else os.path.realpath(os.fspath(base_dir))
        self.total = 0

    def array(self, tensor, where: str) -> np.ndarray:
        name = f"{where}: tensor {tensor.name!r}" if tensor.name else where
        if tensor.data_type not in DTYPES:
            raise OnnxError(f"{name} has data type {type_name(self.onnx, tensor.data_type)}; "
                            f"supported: FLOAT, DOUBLE (and INT64/INT32 for shapes)")
        dtype = DTYPES[tensor.data_type]
        dims = [int(d) for d in tensor.dims]
        if len(dims) > self.limits.max_rank or any(d < 0 for d in dims):
            raise OnnxError(f"{name} has an invalid shape {dims}")
        count = 1
        for d in dims:
            count *= d  # Python ints: no overflow however absurd the dims
        nbytes = count * dtype.itemsize
        if nbytes > self.limits.max_tensor_bytes:
            raise OnnxError(f"{name} declares shape {dims} ({nbytes:,} bytes), more than the "
                            f"limit of {self.limits.max_tensor_bytes:,} bytes per tensor")
        if self.total + nbytes > self.limits.max_total_bytes:
            raise OnnxError(f"{name}: the tensors exceed the total limit of "
                            f"{self.limits.max_total_bytes:,} bytes")
        if tensor.data_location == self.onnx.TensorProto.EXTERNAL:
            data = self._external(tensor, name, nbytes)
            values = np.frombuffer(data, dtype=dtype)
        elif tensor.raw_data:
            if len(tensor.raw_data) != nbytes:
                raise OnnxError(f"{name} declares shape {dims} ({nbytes:,} bytes) but holds "
                                f"{len(tensor.raw_data):,} bytes")
            values = np.frombuffer(tensor.raw_data, dtype=dtype)
        else:
            field = getattr(tensor, _FIELDS[tensor.data_type])
            if len(field) != count:
                raise OnnxError(f"{name} declares shape {dims} ({count:,} values) but holds "
                                f"{len(field):,} values")
            values = np.asarray(field, dtype=dtype)
        self.total += nbytes
        return values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)

    def _external(self, tensor, name, nbytes) -> bytes:
        info = {entry.key: entry.value for entry in tensor.external_data}
        if self.base_dir is None:
            raise OnnxError(f"{name} uses external data, which needs a model file path")
        location = info.get("location", "")
        if not location or os.path.isabs(location) or "\\" in location:
            raise OnnxError(f"{name}: external data location {location!r} must be a relative "
                            f"path inside the model's directory")
        target = os.path.realpath(os.path.join(self.base_dir, location))
        if os.path.commonpath([target, self.base_dir]) != self.base_dir:
            raise OnnxError(f"{name}: external data location {location!r} escapes the "
                            f"model's directory {self.base_dir}")
        try:
            offset = int(info.get("offset", 0))
            length = int(info.get("length", nbytes))
        except ValueError as exc:
            raise OnnxError(f"{name}: malformed external data offset/length: {exc}") from exc
        if offset < 0 or length != nbytes:
            raise OnnxError(f"{name}: external data length {length} (offset {offset}) does not "
                            f"match the declared {nbytes:,} bytes")
        if not os.path.isfile(target):
            raise OnnxError(f"{name}: external data file {location!r} not found")
        size = os.path.getsize(target)
        if offset + length > size:
            raise OnnxError(f"{name}: external data {location!r} has {size:,} bytes, fewer "
                            f"than offset {offset:,} + length {length:,}")
        with open(target, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise OnnxError(f"{name}: short read from external data {location!r}")
        return data
