"""Reading single-channel images for prediction: ``.npy`` arrays and 8-bit grayscale PNGs.

Rules (:func:`load_images`):

- ``.npy`` (read with ``allow_pickle=False``): shape ``(H, W)``, ``(N, H, W)`` or
  ``(N, 1, H, W)`` (so ``(1, H, W)`` is one image); dtype ``uint8`` (0-255, divided by
  255) or floating with every value in [0, 1]. Other integer types, values outside
  [0, 1], NaN or other shapes are refused.
- ``.png``: 8-bit grayscale (colour type 0, bit depth 8), not interlaced, decoded by
  :func:`read_png_gray` (no imaging library needed). Palette, RGB, alpha, 1/2/4/16-bit
  and interlaced PNGs are refused with a message saying what the file is.
- Anything else is refused. Images must have the expected size (28x28 for MNIST
  models) unless ``resize=True``, which scales them with :func:`resize_images`: each
  output pixel is the mean of the input area it covers when shrinking (no aliasing of
  thin strokes), bilinear interpolation between pixel centres when enlarging, each axis
  on its own (so a 56x14 image becomes 28x28 by shrinking one axis and enlarging the
  other). The aspect ratio is not kept: crop or pad first if that matters.

Limits, checked from the headers before the payload is read or decoded: the path must
be a regular file (a directory, FIFO or device is refused saying what it is) of at most
``max_bytes`` (default :data:`DEFAULT_MAX_IMAGE_BYTES`, 256 MiB); a ``.npy`` header
must declare at most that many bytes and exactly as many as the file holds; a PNG's
IHDR must give at most ``max_side`` pixels per side and ``max_pixels`` in all (default
:data:`DEFAULT_MAX_PIXELS`, 4 Mi), and, in :func:`load_images`, exactly the expected
size. PNG image data is inflated with a bound, so a stream that inflates to more than
IHDR's size needs is refused as soon as it does.

The result is float32 ``(N, 1, H, W)`` in [0, 1], like :func:`im2col_net.datasets.load_dataset`.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ..safeio import MiB, atomic_file, describe_bytes, open_regular, read_npy

__all__ = ["ImageFileError", "read_png_gray", "write_png_gray", "load_images",
           "resize_images", "DEFAULT_MAX_IMAGE_BYTES", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_IMAGE_BYTES = 256 * MiB
DEFAULT_MAX_PIXELS = 1 << 22   # 2048 x 2048

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


class ImageFileError(ValueError):
    """An image file is unreadable or of a kind that is not accepted."""


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, width: int, path) -> np.ndarray:
    """Undo PNG's per-row filters for 1 byte per pixel; returns uint8 ``(height, width)``."""
    stride = width + 1
    if len(raw) != height * stride:
        raise ImageFileError(f"{path}: PNG image data has {len(raw)} bytes, expected "
                             f"{height * stride} for {width}x{height} 8-bit grayscale")
    out = np.zeros((height, width), dtype=np.int64)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride).astype(np.int64)
    previous = np.zeros(width, dtype=np.int64)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: running sum modulo 256 along the row
            row = np.cumsum(line) % 256
        elif kind == 2:  # Up
            row = (line + previous) % 256
        elif kind in (3, 4):  # Average / Paeth depend on the pixel just decoded
            # Python ints, not numpy scalars: this loop runs once per pixel.
            ups, values, decoded = previous.tolist(), line.tolist(), [0] * width
            left = upleft = 0
            for x in range(width):
                up = ups[x]
                pred = (left + up) // 2 if kind == 3 else _paeth(left, up, upleft)
                left = (values[x] + pred) % 256
                decoded[x] = left
                upleft = up
            row = np.array(decoded, dtype=np.int64)
        else:
            raise ImageFileError(f"{path}: PNG row {y} has unknown filter type {kind}")
        out[y] = row
        previous = row
    return out.astype(np.uint8)


def _check_header(path, header, max_side, max_pixels, expected_size):
    width, height, depth, color, compression, filtering, interlace = header
    if color != 0 or depth != 8:
        kind = _COLOR_TYPES.get(color, f"colour type {color}")
        raise ImageFileError(f"{path}: PNG is {depth}-bit {kind}; only 8-bit grayscale PNGs "
                             f"are accepted (convert it, e.g. to mode 'L')")
    if interlace != 0:
        raise ImageFileError(f"{path}: interlaced (Adam7) PNGs are not accepted")
    if compression != 0 or filtering != 0:
        raise ImageFileError(f"{path}: unknown PNG compression/filter method")
    if not (0 < width <= max_side and 0 < height <= max_side):
        raise ImageFileError(f"{path}: PNG size {width}x{height} is out of range (each side "
                             f"must be 1 to {max_side} pixels)")
    if width * height > max_pixels:
        raise ImageFileError(f"{path}: PNG size {width}x{height} is {width * height:,} pixels, "
                             f"over the limit of {max_pixels:,}")
    if expected_size is not None and (height, width) != tuple(expected_size):
        raise ImageFileError(f"{path}: images must be {expected_size[0]}x{expected_size[1]}, "
                             f"got {height}x{width}; pass --resize (resize=True) to scale "
                             f"them")
    return width, height


def read_png_gray(path, *, max_side: int = 4096, max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, expected_size=None) -> np.ndarray:
    """Decode an 8-bit grayscale, non-interlaced PNG into uint8 ``(H, W)``.

    Checks the signature, chunk CRCs and the IHDR fields; other PNG kinds raise
    :class:`ImageFileError` naming the file and what it is. The size limits
    (``max_side`` per side, ``max_pixels`` in all, ``expected_size`` ``(H, W)`` if
    given, the file at most ``max_bytes``) are checked from IHDR, before any image data
    is inflated; the data is inflated with a bound, so it can never grow past what
    IHDR's size needs.
    """
    path = os.fspath(path)
    with open_regular(path, ImageFileError, "a PNG image") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise ImageFileError(f"{path}: file is {describe_bytes(size)}, over the limit of "
                                 f"{describe_bytes(max_bytes)} for an image")
        data = handle.read(size + 1)  # not max_bytes: read(n) reserves n bytes up front
    if len(data) > max_bytes:
        raise ImageFileError(f"{path}: file grew past the limit of {describe_bytes(max_bytes)} "
                             f"while being read")
    if not data.startswith(PNG_SIGNATURE):
        raise ImageFileError(f"{path}: not a PNG file (bad signature)")
    pos, dims, ended = len(PNG_SIGNATURE), None, False
    inflater, parts, got, expected = zlib.decompressobj(), [], 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc_bytes = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc_bytes) != 4:
            raise ImageFileError(f"{path}: PNG truncated inside chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc_bytes)[0]:
            raise ImageFileError(f"{path}: PNG chunk {kind!r} has a bad CRC (file damaged)")
        pos += 12 + length
        if kind == b"IHDR":
            if length != 13 or dims is not None:
                raise ImageFileError(f"{path}: malformed PNG IHDR chunk")
            dims = _check_header(path, struct.unpack(">IIBBBBB", body), max_side, max_pixels,
                                 expected_size)
            expected = dims[1] * (dims[0] + 1)
        elif kind == b"IDAT":
            if dims is None:
                raise ImageFileError(f"{path}: PNG image data (IDAT) comes before the IHDR "
                                     f"chunk")
            try:
                while body and not inflater.eof:
                    out = inflater.decompress(body, expected - got + 1)
                    got += len(out)
                    parts.append(out)
                    if got > expected:
                        raise ImageFileError(
                            f"{path}: PNG image data inflates to more than the {expected:,} "
                            f"bytes a {dims[0]}x{dims[1]} 8-bit grayscale image needs")
                    body = inflater.unconsumed_tail
            except zlib.error as exc:
                raise ImageFileError(f"{path}: PNG image data is corrupt ({exc})") from exc
        elif kind == b"IEND":
            ended = True
            break
    if dims is None:
        raise ImageFileError(f"{path}: PNG has no IHDR chunk")
    if not ended:
        raise ImageFileError(f"{path}: PNG truncated (no IEND chunk)")
    if not inflater.eof:
        raise ImageFileError(f"{path}: PNG image data is corrupt (the compressed stream "
                             f"is incomplete)")
    width, height = dims
    return _unfilter(b"".join(parts), height, width, path)


def _from_array(array: np.ndarray, path) -> np.ndarray:
    if array.dtype == np.uint8:
        images = array.astype(np.float32) / np.float32(255)
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageFileError(f"{path}: image contains NaN or infinite values")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ImageFileError(
                f"{path}: float image values must lie in [0, 1], got [{array.min():g}, "
                f"{array.max():g}] (save uint8 0-255 pixels, or divide by 255)")
        images = array.astype(np.float32)
    else:
        raise ImageFileError(f"{path}: image dtype must be uint8 (0-255) or float in [0, 1], "
                             f"got {array.dtype}")
    if images.ndim == 2:
        images = images[None, None]
    elif images.ndim == 3:
        images = images[:, None]
    elif not (images.ndim == 4 and images.shape[1] == 1):
        raise ImageFileError(f"{path}: expected an array of shape (H, W), (N, H, W) or "
                             f"(N, 1, H, W), got {array.shape}")
    if images.shape[0] == 0:
        raise ImageFileError(f"{path}: the array holds no images")
    return np.ascontiguousarray(images)


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix taking one image axis from ``n_in`` to ``n_out``
    pixels: area averaging when shrinking, bilinear (half-pixel centres) otherwise."""
    weights = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if n_out <= n_in:
        edges = np.arange(n_out + 1) * scale  # output pixel i covers [edges[i], edges[i+1])
        for i in range(n_out):
            lo, hi = edges[i], edges[i + 1]
            for j in range(int(lo), min(n_in, int(np.ceil(hi)))):
                weights[i, j] = min(hi, j + 1) - max(lo, j)
            weights[i] /= weights[i].sum()
        return weights
    centres = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    left = np.floor(centres).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    frac = centres - left
    rows = np.arange(n_out)
    weights[rows, left] += 1 - frac  # two statements: where left == right both add up
    weights[rows, right] += frac
    return weights


def resize_images(images: np.ndarray, size) -> np.ndarray:
    """``images`` (N, C, H, W) float scaled to ``size`` = (H', W') (rule in the module
    docstring); values stay in the input's range; the dtype is kept."""
    images = np.asarray(images)
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"resize_images: size must be positive, got {size!r}")
    if images.shape[2:] == (height, width):
        return images
    rows = _axis_weights(images.shape[2], height).astype(images.dtype)
    cols = _axis_weights(images.shape[3], width).astype(images.dtype)
    out = np.matmul(np.matmul(rows, images), cols.T)
    return np.clip(out, images.min(initial=0), images.max(initial=1), out=out)


def write_png_gray(path, image) -> None:
    """Write ``image`` (H, W) uint8 as an 8-bit grayscale PNG (the kind
    :func:`read_png_gray` reads), via a temporary file renamed over ``path``."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"write_png_gray: expected a non-empty (H, W) uint8 array, got shape "
                         f"{image.shape} dtype {image.dtype}")

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    height, width = image.shape
    raw = b"".join(b"\0" + image[y].tobytes() for y in range(height))  # filter 0: none
    data = (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with atomic_file(path) as handle:
        handle.write(data)


def load_images(path, size=(28, 28), *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS, resize: bool = False) -> np.ndarray:
    """Images of one ``.npy`` or ``.png`` file as float32 ``(N, 1, H, W)`` in [0, 1].

    ``size``: required ``(H, W)`` (None accepts any); with ``resize=True`` images of
    another size are scaled to it (:func:`resize_images`) instead of refused. Raises
    :class:`ImageFileError` naming the file for anything refused (see the module
    docstring for the rules and the limits ``max_bytes`` and ``max_pixels``),
    FileNotFoundError if it does not exist.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        with open_regular(path, ImageFileError, "a .npy image array") as handle:
            available = os.fstat(handle.fileno()).st_size
            if available > max_bytes:
                raise ImageFileError(f"{path}: file is {describe_bytes(available)}, over the "
                                     f"limit of {describe_bytes(max_bytes)} for images")
            array = read_npy(handle, available, path, ImageFileError, max_bytes)
        images = _from_array(array, path)
    elif ext == ".png":
        images = _from_array(read_png_gray(path, max_pixels=max_pixels, max_bytes=max_bytes,
                                           expected_size=None if resize else size), path)
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        raise ImageFileError(f"{path}: unsupported file type {ext or '(none)'!r}; give .npy "
                             f"arrays or 8-bit grayscale .png files")
    if size is not None and images.shape[2:] != tuple(size):
        if resize:
            return resize_images(images, size)
        raise ImageFileError(f"{path}: images must be {size[0]}x{size[1]}, got "
                             f"{images.shape[2]}x{images.shape[3]}; pass --resize "
                             f"(resize=True) to scale them")
    return images
