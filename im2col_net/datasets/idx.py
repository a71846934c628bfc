"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, ``ndim``
big-endian uint32 dimensions, then the payload in C order. Every inconsistency is
reported as :class:`IdxFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "IdxFormatError", "ChecksumError", "read_idx", "read_idx_bytes",
           "file_bytes"]

# IDX type code -> big-endian dtype
_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data set cannot be found, read or trusted."""


class IdxFormatError(DataError):
    """A file is not a well-formed IDX file."""


class ChecksumError(DataError):
    """A file's SHA-256 is not the published one."""


def file_bytes(path) -> bytes:
    """The decompressed content of ``path`` (gzip detected by its magic bytes)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: corrupted gzip data ({exc})") from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of its stored type."""
    return read_idx_bytes(file_bytes(path), str(path))


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file; ``name`` is used in error messages."""
    if len(data) < 4:
        raise IdxFormatError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 or zero2 or type_code not in _TYPES or ndim == 0:
        raise IdxFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()}; expected 0000 followed by a type "
            f"code in {sorted(hex(t) for t in _TYPES)} and a non-zero dimension count"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{name}: header declares {ndim} dimensions but the file ends after {len(data)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _TYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{name}: {kind}: dimensions {dims} of {dtype.name} need {expected} payload bytes, "
            f"found {found}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))
