"""The prediction-input readers: .npy rules and the 8-bit grayscale PNG decoder."""

import struct
import zlib

import numpy as np
import pytest

from im2col_net.app.imageio import ImageFileError, load_images, read_png_gray


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind, row, prev):
    out = []
    for x, value in enumerate(row):
        left = row[x - 1] if x else 0
        up = prev[x]
        upleft = prev[x - 1] if x else 0
        pred = [0, left, up, (left + up) // 2, _paeth(left, up, upleft)][kind]
        out.append((value - pred) % 256)
    return bytes([kind] + out)


def write_png(path, pixels, *, color_type=0, bit_depth=8, interlace=0, filters=(0,),
              corrupt_crc=False, drop_iend=False):
    """A minimal PNG writer: rows filtered with the given filter types in turn."""
    pixels = np.asarray(pixels)
    h, w = pixels.shape[:2]
    if color_type == 0 and bit_depth == 8:
        rows, prev = [], [0] * w
        for y in range(h):
            row = [int(v) for v in pixels[y]]
            rows.append(_filter_row(filters[y % len(filters)], row, prev))
            prev = row
        raw = b"".join(rows)
    else:  # unfiltered bytes of any layout, for the "refused" cases
        raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, body, bad=False):
        crc = zlib.crc32(kind + body) ^ (1 if bad else 0)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    data += chunk(b"IDAT", zlib.compress(raw), bad=corrupt_crc)
    if not drop_iend:
        data += chunk(b"IEND", b"")
    with open(path, "wb") as handle:
        handle.write(data)


def test_png_decoder_handles_all_five_filters(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    pixels[:, :10] = np.arange(10) * 25  # smooth part: filters predict well
    for filters in [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)]:
        path = tmp_path / "img.png"
        write_png(path, pixels, filters=filters)
        assert np.array_equal(read_png_gray(path), pixels), filters


def test_png_decoder_agrees_with_pillow(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    for optimize in (False, True):
        pixels = rng.integers(0, 256, (28, 28)).astype(np.uint8)
        pixels[5:20, 5:20] = 200
        image_module.fromarray(pixels, "L").save(tmp_path / "p.png", optimize=optimize)
        assert np.array_equal(read_png_gray(tmp_path / "p.png"), pixels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(color_type=2), "8-bit RGB"),
    (dict(color_type=4), "grayscale\\+alpha"),
    (dict(color_type=3), "palette"),
    (dict(bit_depth=16), "16-bit grayscale"),
    (dict(interlace=1), "interlaced"),
    (dict(corrupt_crc=True), "bad CRC"),
    (dict(drop_iend=True), "no IEND"),
])
def test_other_png_kinds_are_refused(tmp_path, kwargs, message):
    pixels = np.zeros((28, 28, 3 if kwargs.get("color_type") == 2 else 1), np.uint8)
    path = tmp_path / "bad.png"
    write_png(path, pixels[..., 0] if pixels.shape[2] == 1 else pixels, **kwargs)
    with pytest.raises(ImageFileError, match=f"bad.png.*{message}"):
        load_images(path)


def test_truncated_and_non_png_files_are_refused(tmp_path):
    path = tmp_path / "t.png"
    write_png(path, np.zeros((28, 28), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:40])
    with pytest.raises(ImageFileError, match="t.png.*truncated"):
        load_images(path)
    path.write_bytes(b"GIF89a....")
    with pytest.raises(ImageFileError, match="t.png.*not a PNG"):
        load_images(path)


def test_npy_rules(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    images = load_images(tmp_path / "u8.npy")
    assert images.shape == (1, 1, 28, 28) and images.dtype == np.float32
    assert np.array_equal(images[0, 0], pixels.astype(np.float32) / np.float32(255))
    unit = pixels.astype(np.float64) / 255
    np.save(tmp_path / "f64.npy", unit[None])  # (1, 28, 28)
    assert np.allclose(load_images(tmp_path / "f64.npy"), images)
    np.save(tmp_path / "stack.npy", np.stack([unit, unit, unit])[:, None])  # (3, 1, 28, 28)
    assert load_images(tmp_path / "stack.npy").shape == (3, 1, 28, 28)
    refused = {
        "range.npy": (pixels.astype(np.float32), "must lie in \\[0, 1\\]"),
        "int.npy": (pixels.astype(np.int32), "dtype must be uint8"),
        "nan.npy": (np.full((28, 28), np.nan), "NaN"),
        "size.npy": (np.zeros((32, 32), np.uint8), "must be 28x28"),
        "rank.npy": (np.zeros((2, 3, 28, 28), np.uint8), "shape"),
        "obj.npy": (np.array([None, 1], dtype=object), "object arrays are refused"),
    }
    for name, (array, message) in refused.items():
        np.save(tmp_path / name, array, allow_pickle=True)
        with pytest.raises(ImageFileError, match=f"{name}.*{message}"):
            load_images(tmp_path / name)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ImageFileError, match="unsupported file type"):
        load_images(tmp_path / "x.jpg")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "missing.npy")
