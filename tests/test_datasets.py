"""IDX reading, the shipped MNIST data, the Fashion-MNIST lookup, checksums and batching."""

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

from im2col_net.datasets import (
    CLASS_NAMES,
    DATASET_NAMES,
    ChecksumError,
    DataError,
    IdxFormatError,
    iterate_batches,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    pixel_stats,
    read_idx,
    sources,
)

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
              np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding ``array`` (big-endian, type code from its dtype)."""
    code = TYPE_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No real cache, no $IM2COL_NET_DATA, no Debian directory, no network beyond a dead port."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setenv(sources.URL_ENV, "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")


# --- the shipped MNIST -------------------------------------------------------------------------

def test_mnist_ships_with_the_package():
    images, labels = load_dataset("mnist", "train")
    assert images.shape == (60000, 1, 28, 28) and images.dtype == np.float32
    assert images.flags.c_contiguous
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    test_images, test_labels = load_mnist("test")
    assert test_images.shape == (10000, 1, 28, 28)
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                 974, 1009]


def test_package_files_are_the_published_ones():
    for stem, digest in sources.SHA256["mnist"].items():
        data = gzip.decompress((sources.PACKAGE_MNIST_DIR / (stem + ".gz")).read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest


def test_pixels_are_the_raw_bytes_over_255():
    raw = read_idx(sources.PACKAGE_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert raw.dtype == np.uint8 and raw.shape == (10000, 28, 28)
    images, _ = load_dataset("mnist", "test", limit=50)
    np.testing.assert_array_equal(images[:, 0], raw[:50].astype(np.float32) / np.float32(255))


def test_limit_and_standardize():
    images, labels = load_dataset("mnist", "train", limit=500, standardize=True)
    assert images.shape == (500, 1, 28, 28) and labels.shape == (500,)
    assert images.dtype == np.float32
    plain, _ = load_dataset("mnist", "train", limit=500)
    # the full training set's statistics (the well-known 0.1307 / 0.3081), not the 500's
    mean, std = pixel_stats(read_idx(sources.PACKAGE_MNIST_DIR / "train-images-idx3-ubyte.gz"))
    assert abs(float(mean) - 0.1307) < 1e-4 and abs(float(std) - 0.3081) < 1e-4
    np.testing.assert_allclose(images, (plain - mean) / std, rtol=1e-5, atol=1e-5)
    test_images, _ = load_dataset("mnist", "test", limit=10, standardize=True)
    test_plain, _ = load_dataset("mnist", "test", limit=10)
    np.testing.assert_allclose(test_images, (test_plain - mean) / std, rtol=1e-5, atol=1e-5)


def test_limit_larger_than_the_split_keeps_everything():
    images, labels = load_dataset("mnist", "test", limit=10**6)
    assert len(images) == len(labels) == 10000


def test_pixel_stats_matches_numpy():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (37, 5, 6), dtype=np.uint8)
    mean, std = pixel_stats(images)
    assert mean.dtype == np.float32 and std.dtype == np.float32
    assert np.isclose(mean, (images / 255).mean(), rtol=1e-6)
    assert np.isclose(std, (images / 255).std(), rtol=1e-6)


def test_returned_arrays_are_fresh_copies():
    images, labels = load_dataset("mnist", "test", limit=3)
    images[:] = -1
    labels[:] = 7
    again, again_labels = load_dataset("mnist", "test", limit=3)
    assert again.min() >= 0 and again_labels.tolist() == [7, 2, 1]


def test_names_and_classes():
    assert DATASET_NAMES == ("mnist", "fashion-mnist")
    assert all(len(CLASS_NAMES[name]) == 10 for name in DATASET_NAMES)
    assert CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="split must be one of"):
        load_dataset("mnist", "valid")
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(DataError, match="limit must be a positive int"):
            load_dataset("mnist", limit=bad)
    assert issubclass(DataError, ValueError)
    assert issubclass(IdxFormatError, DataError) and issubclass(ChecksumError, DataError)


# --- the IDX reader ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", list(TYPE_CODES))
def test_read_idx_every_type_raw_and_gzip(tmp_path, dtype):
    array = (np.arange(-12, 12) * 3).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    raw, gz = tmp_path / "a", tmp_path / "a.gz"
    raw.write_bytes(idx_bytes(array))
    gz.write_bytes(gzip.compress(idx_bytes(array)))
    for path in (raw, gz):
        result = read_idx(path)
        assert result.dtype == np.dtype(dtype) and result.dtype.isnative
        np.testing.assert_array_equal(result, array)
        assert result.flags.writeable


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.int16).reshape(6)
    (tmp_path / "compressed.idx").write_bytes(gzip.compress(idx_bytes(array)))
    (tmp_path / "plain.gz").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed.idx"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


GOOD = idx_bytes(np.zeros((2, 3), np.uint8))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x01" + GOOD[2:], "bad IDX magic number 0001.*first two bytes"),
        (b"\x08" + GOOD[1:], "bad IDX magic number 0800"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown type code 0x0a"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "at least one dimension"),
        (GOOD[:2], "too short.*found 2"),
        (GOOD[:9], "truncated header.*12 header bytes, found 9"),
        (GOOD[:-3], "truncated payload.*need 6 payload bytes, found 3"),
        (GOOD + b"\x00", "trailing bytes.*need 6 payload bytes, found 7"),
        (idx_bytes(np.zeros(3, np.float32))[:-1], r"truncated payload.*\(3,\) of float32"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_idx_is_refused(tmp_path, content, message, compress):
    path = tmp_path / "bad-idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IdxFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_huge_declared_dimensions_do_not_overflow(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**31))
    with pytest.raises(IdxFormatError, match="truncated payload"):
        read_idx(path)


def test_corrupted_gzip_is_refused(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(150, dtype=np.uint8).reshape(50, 3)))
    truncated, bad_crc = tmp_path / "truncated.gz", tmp_path / "crc.gz"
    truncated.write_bytes(data[:-12])
    bad_crc.write_bytes(data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:])
    for path in (truncated, bad_crc):
        with pytest.raises(IdxFormatError, match="corrupted gzip") as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read") as info:
        read_idx(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


# --- Fashion-MNIST lookup with crafted files ---------------------------------------------------

def _write_split(directory, images, labels, compress=False, splits=("train", "test")):
    directory.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for kind, array in (("images", images), ("labels", labels)):
            stem = sources.FILES[(split, kind)]
            data = idx_bytes(array)
            if compress:
                (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / stem).write_bytes(data)


def _trust(monkeypatch, directory, dataset="fashion-mnist"):
    """Register the crafted files' (decompressed) hashes as the published ones."""
    table = {}
    for path in directory.iterdir():
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        table[path.name.removesuffix(".gz")] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(sources.SHA256, dataset, table)


def _crafted(n=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


def test_data_dir_with_crafted_files(monkeypatch, tmp_path):
    images, labels = _crafted()
    _write_split(tmp_path / "d", images, labels)
    _trust(monkeypatch, tmp_path / "d")
    x, y = load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", download=False)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels)


def test_env_var_directory_with_subdirectory(monkeypatch, tmp_path):
    images, labels = _crafted(3)
    _write_split(tmp_path / "root" / "fashion-mnist", images, labels, compress=True)
    _trust(monkeypatch, tmp_path / "root" / "fashion-mnist")
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "root"))
    _, y = load_fashion_mnist("train", download=False)
    np.testing.assert_array_equal(y, labels)


def test_data_dir_comes_before_the_env_var(monkeypatch, tmp_path):
    images, labels = _crafted(4, seed=1)
    _write_split(tmp_path / "first", images, labels)
    _write_split(tmp_path / "second", images, (labels + 1) % 10)
    table = {}
    for directory in ("first", "second"):
        _trust(monkeypatch, tmp_path / directory)
        table[directory] = dict(sources.SHA256["fashion-mnist"])
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", table["first"])
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "second"))
    _, y = load_dataset("fashion-mnist", "test", data_dir=tmp_path / "first", download=False)
    np.testing.assert_array_equal(y, labels)
    # with the env var's files trusted instead, the explicit directory is still read first
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", table["second"])
    with pytest.raises(ChecksumError, match=str(tmp_path / "first")):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "first", download=False)


def test_debian_directory_then_user_cache(monkeypatch, tmp_path):
    images, labels = _crafted(5, seed=2)
    debian = tmp_path / "debian" / "fashion-mnist"
    _write_split(debian, images, labels, compress=True, splits=("test",))
    cache = tmp_path / "cache" / "im2col_net" / "fashion-mnist"
    _write_split(cache, images, (labels + 3) % 10, compress=True)
    _trust(monkeypatch, cache)
    table = dict(sources.SHA256["fashion-mnist"])
    _trust(monkeypatch, debian)  # Debian's test files override the cache's (which now fail)
    table.update(sources.SHA256["fashion-mnist"])
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", table)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", debian)
    _, y_test = load_dataset("fashion-mnist", "test", download=False)
    _, y_train = load_dataset("fashion-mnist", "train", download=False)
    np.testing.assert_array_equal(y_test, labels)
    np.testing.assert_array_equal(y_train, (labels + 3) % 10)


def test_a_named_data_dir_without_the_files_is_an_error_not_a_fallback(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="does not hold the file.*t10k-images.idx3-ubyte"):
        load_dataset("mnist", "test", data_dir=tmp_path / "empty", limit=5)
    _, y = load_dataset("mnist", "test", limit=5)  # without data_dir: the package's MNIST
    assert y.tolist() == [7, 2, 1, 0, 4]


def test_mnist_from_data_dir_is_checked_too(tmp_path):
    _write_split(tmp_path / "d" / "mnist", *_crafted(3))
    with pytest.raises(ChecksumError, match="SHA-256.*mnist t10k-images-idx3-ubyte"):
        load_dataset("mnist", "test", data_dir=tmp_path / "d")


def test_mismatched_counts(monkeypatch, tmp_path):
    _write_split(tmp_path / "d", np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    _trust(monkeypatch, tmp_path / "d")
    with pytest.raises(IdxFormatError, match="holds 5 images but .* holds 4 labels"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d", download=False)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((2, 27, 28), np.uint8), np.zeros(2, np.uint8), r"shape \(N, 28, 28\)"),
        (np.zeros((2, 28, 28), np.int16), np.zeros(2, np.uint8), "uint8 images"),
        (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 1), np.uint8), "uint8 labels"),
        (np.zeros((2, 28, 28), np.uint8), np.array([3, 10], np.uint8), r"labels in \[0, 10\)"),
    ],
)
def test_content_that_is_not_a_dataset_is_refused(monkeypatch, tmp_path, images, labels,
                                                 message):
    _write_split(tmp_path / "d", images, labels)
    _trust(monkeypatch, tmp_path / "d")
    with pytest.raises(IdxFormatError, match=message):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d", download=False)


def test_checksum_mismatch_is_refused(tmp_path):
    _write_split(tmp_path / "d", np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(ChecksumError, match="SHA-256") as info:
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d", download=False)
    assert str(tmp_path / "d" / "train-images-idx3-ubyte") in str(info.value)
    assert sources.SHA256["fashion-mnist"]["train-images-idx3-ubyte"] in str(info.value)


def test_file_replaced_after_loading_is_checked_again(monkeypatch, tmp_path):
    images, labels = _crafted(4, seed=5)
    _write_split(tmp_path / "d", images, labels)
    _trust(monkeypatch, tmp_path / "d")
    load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", download=False)
    _write_split(tmp_path / "d", images, (labels + 1) % 10)  # same size, new content
    path = tmp_path / "d" / "t10k-labels-idx1-ubyte"
    stamp = path.stat().st_mtime_ns + 10**9  # a distinct mtime even on coarse file systems
    os.utime(path, ns=(stamp, stamp))
    with pytest.raises(ChecksumError):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", download=False)


def test_missing_data_lists_the_ways_to_provide_it():
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", download=False)
    text = str(info.value)
    for hint in ("--data-dir", sources.DATA_ENV, "dataset-fashion-mnist", "download",
                 sources.URL_ENV):
        assert hint in text


def test_failed_download_lists_the_ways_to_provide_it(tmp_path):
    # $IM2COL_NET_FASHION_MNIST_URL points at a closed port on 127.0.0.1 (fixture)
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "test")
    text = str(info.value)
    assert "http://127.0.0.1:9/t10k-images-idx3-ubyte.gz failed" in text
    for hint in ("--data-dir", sources.DATA_ENV, "dataset-fashion-mnist"):
        assert hint in text
    assert list((tmp_path / "cache" / "im2col_net" / "fashion-mnist").iterdir()) == []


def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    debian = sources.Path("/usr/share/datasets/fashion-mnist")
    if not (debian / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", debian)
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.float32
    assert np.bincount(labels).tolist() == [1000] * 10
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]


# --- batching ----------------------------------------------------------------------------------

def test_iterate_batches_covers_each_example_once_and_keeps_the_last_batch():
    x = np.arange(23, dtype=np.float32)[:, None]
    y = np.arange(23)
    batches = list(iterate_batches(x, y, 5, np.random.default_rng(1)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23))
    assert not np.array_equal(seen, y)  # actually shuffled
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.shape[1:] == (1,)
        np.testing.assert_array_equal(xb[:, 0], yb)


def test_iterate_batches_is_seeded_and_epochs_differ():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)

    def epoch(rng):
        return np.concatenate([b[1] for b in iterate_batches(x, y, 6, rng)])

    first = epoch(np.random.default_rng(7))
    np.testing.assert_array_equal(first, epoch(np.random.default_rng(7)))
    rng = np.random.default_rng(7)
    epoch1, epoch2 = epoch(rng), epoch(rng)
    np.testing.assert_array_equal(epoch1, first)
    assert not np.array_equal(epoch1, epoch2)
    assert sorted(epoch2.tolist()) == list(range(20))


def test_iterate_batches_without_shuffle_and_exact_division():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    batches = list(iterate_batches(x, y, 3, None, shuffle=False))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5]]
    batches[0][0][:] = -1  # a copy, not a view
    assert x.min() == 0
    assert len(list(iterate_batches(x, y, 100, np.random.default_rng(0)))) == 1


def test_iterate_batches_errors():
    rng = np.random.default_rng()
    with pytest.raises(ValueError, match="expected as many labels as images \\(3\\), got 2"):
        iterate_batches(np.zeros((3, 1)), np.zeros(2), 2, rng)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            iterate_batches(np.zeros((3, 1)), np.zeros(3), bad, rng)
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        iterate_batches(np.zeros((3, 1)), np.zeros(3), 2, np.random.RandomState(0))
    with pytest.raises(ValueError, match="batch axis"):
        iterate_batches(np.float32(1), np.zeros(3), 2, rng)
