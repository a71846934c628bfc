"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, ``ndim``
big-endian uint32 dimensions, then the payload in C order, big-endian. Type codes:
0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

Gzip compression is recognised by the first two bytes (1f 8b), not by the file name.
Every inconsistency is reported as :class:`IdxFormatError` naming the file and what
was expected versus found.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "IdxFormatError", "ChecksumError", "read_idx", "read_idx_bytes",
           "file_bytes", "IDX_TYPES"]

# IDX type code -> the big-endian dtype it stores
IDX_TYPES = {
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
    """A file is not a well-formed IDX file (or not well-formed gzip)."""


class ChecksumError(DataError):
    """A file's SHA-256 is not the published one."""


def file_bytes(path) -> bytes:
    """The content of ``path``, decompressed when it starts with the gzip magic bytes.

    Raises :class:`IdxFormatError` for corrupted gzip data (bad header, truncated
    stream, CRC or length mismatch) and :class:`DataError` when the file cannot be read.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: corrupted gzip data ({exc})") from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of its stored type.

    Returns a new, writable array of shape = the file's dimensions and dtype = the
    native-endian version of its type code (uint8 for MNIST).
    """
    return read_idx_bytes(file_bytes(path), str(path))


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file; ``name`` appears in error messages."""
    if len(data) < 4:
        raise IdxFormatError(
            f"{name}: too short for an IDX header: expected at least 4 bytes, found {len(data)}")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()}: expected the first two bytes to be "
            f"00 00, found {data[:2].hex(' ')}")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_TYPES)
        raise IdxFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()}: unknown type code 0x{type_code:02x}, "
            f"expected one of {known}")
    if ndim == 0:
        raise IdxFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()}: expected at least one dimension, "
            f"found 0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header} header bytes, "
            f"found {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    # Python ints: a crafted header must not overflow the size computation
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        kind = "truncated payload" if found < expected else "trailing bytes after the payload"
        raise IdxFormatError(
            f"{name}: {kind}: dimensions {dims} of {dtype.newbyteorder('=').name} need "
            f"{expected} payload bytes, found {found}")
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))
