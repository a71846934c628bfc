"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, ``ndim``
big-endian uint32 dimensions, then the payload in C order, big-endian. Type codes:
0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

Gzip compression is recognised by the first two bytes (1f 8b), not by the file name.
Every inconsistency is reported as :class:`IdxFormatError` naming the file and what
was expected versus found.

Limits: the path must be a regular file (a directory, FIFO or device is refused saying
what it is); a raw file may hold at most ``max_bytes`` (default
:data:`DEFAULT_MAX_IDX_BYTES`, 1 GiB) of payload; a gzip file is inflated as a stream,
its IDX header's dimensions are checked against ``max_bytes`` before the payload is
inflated, and no more than the header declares (plus a little, to report trailing
bytes) is ever inflated.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..safeio import GiB, MiB, describe_bytes, open_regular

__all__ = ["DataError", "IdxFormatError", "ChecksumError", "read_idx", "read_idx_bytes",
           "file_bytes", "IDX_TYPES", "DEFAULT_MAX_IDX_BYTES"]

DEFAULT_MAX_IDX_BYTES = GiB
_TRAILING_SLACK = MiB  # how far past the declared payload a gzip stream is followed

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


def file_bytes(path, *, max_bytes: int = DEFAULT_MAX_IDX_BYTES) -> bytes:
    """The content of ``path``, decompressed when it starts with the gzip magic bytes.

    Raises :class:`IdxFormatError` for corrupted gzip data (bad header, truncated
    stream, CRC or length mismatch) and for content over the limits (see the module
    docstring; ``max_bytes`` sets them), and :class:`DataError` when the path cannot
    be read or is not a regular file.
    """
    path = Path(path)
    try:
        handle = open_regular(path, DataError, "an IDX file")
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read the file (No such file or directory)") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(2)
        if head != _GZIP_MAGIC:
            head += handle.read(2)
            header = 4 + 4 * head[3] if len(head) == 4 else 0
            if size - header > max_bytes:
                raise IdxFormatError(f"{path}: file holds {describe_bytes(size - header)} of "
                                     f"IDX data, over the limit of {describe_bytes(max_bytes)}")
            try:
                return head + handle.read()
            except OSError as exc:
                raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") \
                    from None
        handle.seek(0)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _inflate_idx(stream, path, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(f"{path}: corrupted gzip data ({exc})") from None


def _read_upto(stream, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        chunk = stream.read(min(left, MiB))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _inflate_idx(stream, path, max_bytes) -> bytes:
    """Inflate a gzip stream no further than its IDX header says it should go."""
    head = _read_upto(stream, 4)
    if len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in IDX_TYPES and head[3]:
        head += _read_upto(stream, 4 * head[3])
        if len(head) == 4 + 4 * head[3]:
            dims = tuple(int(d) for d in np.frombuffer(head, ">u4", count=head[3], offset=4))
            declared = math.prod(dims) * IDX_TYPES[head[2]].itemsize
            if declared > max_bytes:
                raise IdxFormatError(
                    f"{path}: IDX header declares dimensions {dims} of "
                    f"{IDX_TYPES[head[2]].newbyteorder('=').name}, "
                    f"{describe_bytes(declared)}, over the limit of {describe_bytes(max_bytes)}")
            body = _read_upto(stream, declared + _TRAILING_SLACK + 1)
            if len(body) > declared + _TRAILING_SLACK:
                raise IdxFormatError(
                    f"{path}: trailing bytes after the payload: dimensions {dims} need "
                    f"{declared} payload bytes, found more than {declared + _TRAILING_SLACK}")
            return head + body
    # Not an IDX header: read_idx_bytes will say why; inflate no more than the limit.
    body = _read_upto(stream, max_bytes + 1)
    if len(body) + len(head) > max_bytes:
        raise IdxFormatError(f"{path}: inflates to more than {describe_bytes(max_bytes)} "
                             f"(the limit)")
    return head + body


def read_idx(path, *, max_bytes: int = DEFAULT_MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of its stored type.

    Returns a new, writable array of shape = the file's dimensions and dtype = the
    native-endian version of its type code (uint8 for MNIST). ``max_bytes`` bounds the
    payload (see the module docstring).
    """
    return read_idx_bytes(file_bytes(path, max_bytes=max_bytes), str(path))


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
