"""Guards for reading files that may be mistaken or hostile.

The model, image and IDX readers use these so that a file is judged from its metadata
(what kind of file the path is, magic bytes, headers and the sizes they declare) before
its payload is read:

- :func:`open_regular` opens only regular files: a directory, FIFO, device or socket is
  refused with a message saying what it is, and a FIFO is never waited on.
- :func:`read_npy` reads one ``.npy`` array from a stream after checking its header:
  object arrays are refused (nothing is ever unpickled), and the declared size must be
  within a limit and equal to what the stream holds.
- :func:`check_json_depth` refuses JSON nested deeper than a limit before ``json.loads``
  (which recurses) sees it.

And the one way files are written: :func:`atomic_file` (temporary file named
:data:`TEMP_NAME` next to the target, fsync, rename, SIGINT/SIGTERM held meanwhile).

Limits are plain byte counts; each reader takes a keyword to change its default.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import secrets
import signal
import stat
import struct
import threading

import numpy as np

__all__ = ["KiB", "MiB", "GiB", "NPY_MAGIC", "MAX_NPY_HEADER_BYTES", "file_kind",
           "open_regular", "read_npy", "json_depth", "check_json_depth", "describe_bytes",
           "TEMP_NAME", "TEMP_TOKEN", "signals_held", "create_temp_file", "atomic_file"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
NPY_MAGIC = b"\x93NUMPY"
# numpy's own default bound on the header dict; a longer header is not a real array's.
MAX_NPY_HEADER_BYTES = 10_000
_CHUNK = 1 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "FIFO"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symbolic link"))


def file_kind(mode: int) -> str:
    """What ``st_mode`` describes: ``"regular file"``, ``"a directory"``, ``"FIFO"``, ..."""
    if stat.S_ISREG(mode):
        return "regular file"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "special file"


def describe_bytes(n: int) -> str:
    """``"2147483648 bytes (2.0 GiB)"``: exact, plus a readable size when large."""
    if n < KiB:
        return f"{n} bytes"
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n} bytes"  # pragma: no cover


def _refuse_kind(path, mode, error, what):
    kind = file_kind(mode)
    if kind == "a directory":
        raise error(f"{path}: is a directory, not {what}")
    raise error(f"{path}: is not a regular file ({kind}); expected {what}")


def open_regular(path, error, what: str = "a file", *, missing=None):
    """Open ``path`` for binary reading if it is a regular file (symlinks followed).

    A missing path raises ``missing`` (default FileNotFoundError) with "no such file";
    anything else that is not a regular file, or cannot be opened, raises ``error``
    saying what it is. ``what`` names the expected content ("an .npz model file").
    """
    path = os.fspath(path)
    missing = missing or FileNotFoundError
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise missing(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        _refuse_kind(path, st.st_mode, error, what)
    # O_NONBLOCK: if the path was swapped for a FIFO after the stat, opening it must
    # not wait for a writer; fstat below then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise missing(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot open it ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _refuse_kind(path, st.st_mode, error, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _read_exact(stream, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_npy(stream, available: int | None, where: str, error, max_bytes: int) -> np.ndarray:
    """Read one ``.npy`` array from ``stream``, checking the header before the payload.

    ``available``: the number of bytes the stream holds (the file or zip member size), or
    None if unknown. Refused with ``error`` (messages start with ``where``): a missing
    magic, versions other than 1.0/2.0, object or other pickled dtypes, a declared size
    over ``max_bytes``, a declared size different from what the stream holds, and a
    short payload. The array is allocated only after all header checks pass.
    """
    prefix = _read_exact(stream, 8)
    if not prefix.startswith(NPY_MAGIC):
        raise error(f"{where}: not a .npy array (starts with {prefix[:8]!r}, expected "
                    f"{NPY_MAGIC!r})")
    if len(prefix) < 8 or prefix[6] not in (1, 2):
        raise error(f"{where}: unsupported .npy format version "
                    f"{'.'.join(str(b) for b in prefix[6:8]) or '?'} (1.0 and 2.0 are read)")
    size_bytes = _read_exact(stream, 2 if prefix[6] == 1 else 4)
    if len(size_bytes) not in (2, 4) or len(size_bytes) != (2 if prefix[6] == 1 else 4):
        raise error(f"{where}: truncated .npy header")
    header_len = struct.unpack("<H" if prefix[6] == 1 else "<I", size_bytes)[0]
    if header_len > MAX_NPY_HEADER_BYTES:
        raise error(f"{where}: .npy header of {header_len} bytes is longer than the "
                    f"{MAX_NPY_HEADER_BYTES} a real array needs")
    header = _read_exact(stream, header_len)
    if len(header) != header_len:
        raise error(f"{where}: truncated .npy header")
    buffer = io.BytesIO(prefix + size_bytes + header)
    try:
        np.lib.format.read_magic(buffer)
        read_header = (np.lib.format.read_array_header_1_0 if prefix[6] == 1
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(buffer, max_header_size=MAX_NPY_HEADER_BYTES)
    except (ValueError, SyntaxError, TypeError) as exc:
        message = str(exc)
        if "pickle" in message.lower():
            message = "object arrays are refused for safety (reading them would unpickle)"
        raise error(f"{where}: malformed .npy header ({message})") from None
    if dtype.hasobject:
        raise error(f"{where}: holds Python objects (dtype {dtype}); object arrays are "
                    f"refused for safety, since reading them would unpickle untrusted data")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise error(f"{where}: declares an array of shape {shape} and dtype {dtype}, "
                    f"{describe_bytes(nbytes)}, over the limit of {describe_bytes(max_bytes)}")
    if available is not None:
        holds = available - len(prefix) - len(size_bytes) - header_len
        if holds != nbytes:
            raise error(f"{where}: header declares shape {shape} and dtype {dtype} "
                        f"({describe_bytes(nbytes)}) but {describe_bytes(max(holds, 0))} of "
                        f"data follow")
    flat = np.empty(count, dtype=dtype)
    if nbytes:
        target = flat.view(np.uint8)
        pos = 0
        while pos < nbytes:
            chunk = stream.read(min(nbytes - pos, _CHUNK))
            if not chunk:
                raise error(f"{where}: truncated array data: expected {nbytes} bytes, "
                            f"found {pos}")
            target[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            pos += len(chunk)
    if fortran:
        return flat.reshape(shape[::-1]).transpose()
    return flat.reshape(shape)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text`` outside JSON strings."""
    data = np.frombuffer(_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    depth = best = 0
    for start in range(0, len(data), _CHUNK):  # in blocks: no 8-byte-per-char temporary
        running = np.cumsum(_OPEN[data[start:start + _CHUNK]], dtype=np.int64) + depth
        if len(running):
            best = max(best, int(running.max()))
            depth = int(running[-1])
    return best


def check_json_depth(text: str, limit: int, where: str, error) -> None:
    """Raise ``error`` when ``text`` nests deeper than ``limit`` (before parsing it)."""
    depth = json_depth(text)
    if depth > limit:
        raise error(f"{where}: JSON nested {depth} levels deep, over the limit of {limit}")


# -- atomic writes -----------------------------------------------------------------------
# Signals that would otherwise cut a write short; they wait until the file is in place.
_HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM")
                      if hasattr(signal, name))
# Name of atomic_file's temporary files: "." + target name + "." + 8 random chars + ".tmp"
# (the 8 chars were tempfile's [a-z0-9_] in older versions, hex now).
TEMP_NAME = ".{base}.{token}.tmp"
TEMP_TOKEN = re.compile(r"[a-z0-9_]{8}")


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them.

    A signal arriving inside the block is only recorded; on exit the previous handlers are
    back and each recorded signal is raised again, so its usual effect (KeyboardInterrupt,
    termination, a custom handler) happens after the block. Python handlers run in the
    main thread only, so elsewhere (and for handlers installed outside Python) this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {}

    def hold(signum, frame):
        received.append(signum)

    try:
        for signum in _HELD_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is not None:  # None: installed from C, cannot be restored later
                previous[signum] = handler
                signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


def create_temp_file(directory, base) -> tuple[int, str]:
    """``(fd, path)`` of a new, empty :data:`TEMP_NAME` file for target name ``base`` in
    ``directory``; created with mode 0666 so the process umask applies, like any other
    file this program writes (mkstemp would make it 0600)."""
    directory = os.fspath(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, TEMP_NAME.format(base=base, token=secrets.token_hex(4)))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"atomic_file: no free temporary file name in {directory}")


def _fsync_directory(directory):
    with contextlib.suppress(OSError):  # make the rename itself durable where possible
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_file(path, *, check=None):
    """Write ``path`` all at once: yields a binary file object for a temporary file in
    the same directory; on normal exit it is flushed, fsync-ed, ``check(tmp_path)`` is
    called if given (it may raise to refuse the file), and it is renamed over ``path``.

    On any exception the temporary file is removed and a previous file at ``path`` is
    untouched. The file gets mode ``0666 & ~umask``. SIGINT/SIGTERM arriving in the
    block wait until the file is in place (:func:`signals_held`). The directory must
    exist. Only an uncatchable kill leaves the temporary file behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with signals_held():
        fd, tmp = create_temp_file(directory, os.path.basename(path))
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            if check is not None:
                check(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(directory)
