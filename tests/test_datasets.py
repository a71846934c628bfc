"""IDX reading, the shipped MNIST data, checksums and batching."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from im2col_net.datasets import (
    ChecksumError,
    DataError,
    IdxFormatError,
    iterate_batches,
    load_dataset,
    read_idx,
)
from im2col_net.datasets import sources


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_mnist_ships_with_the_package():
    images, labels = load_dataset("mnist", "train")
    assert images.shape == (60000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    _, test_labels = load_dataset("mnist", "test")
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                 974, 1009]


def test_limit_and_standardize():
    images, labels = load_dataset("mnist", "train", limit=500, standardize=True)
    assert images.shape == (500, 1, 28, 28) and labels.shape == (500,)
    assert images.dtype == np.float32
    # standardised with the full training set's statistics: roughly zero mean, unit std
    assert abs(float(images.mean())) < 0.2 and 0.8 < float(images.std()) < 1.2


def test_read_idx_raw_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x00\x01" + b[2:], "magic"),
        (lambda b: b[:-3], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:2], "too short"),
    ],
)
def test_malformed_idx_is_refused(tmp_path, mutate, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(mutate(idx_bytes(np.zeros((2, 3), np.uint8))))
    with pytest.raises(IdxFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupted_gzip_is_refused(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((50, 3), np.uint8)))
    path = tmp_path / "bad.gz"
    path.write_bytes(data[:-12])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


def _write_split(directory, images, labels):
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (directory / sources.FILES[(split, "images")]).write_bytes(idx_bytes(images))
        (directory / sources.FILES[(split, "labels")]).write_bytes(idx_bytes(labels))


def _trust(monkeypatch, directory):
    """Register the crafted files' hashes as the published ones."""
    table = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}
    monkeypatch.setitem(sources.SHA256, "fashion-mnist", table)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch, tmp_path):
    from im2col_net import datasets

    datasets._raw_split.cache_clear()
    datasets._train_stats.cache_clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    yield
    datasets._raw_split.cache_clear()


def test_data_dir_with_crafted_files(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    _write_split(tmp_path / "d", images, labels)
    _trust(monkeypatch, tmp_path / "d")
    x, y = load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", download=False)
    np.testing.assert_allclose(x[:, 0], images / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_env_var_directory_with_subdirectory(monkeypatch, tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.arange(3, dtype=np.uint8)
    _write_split(tmp_path / "root" / "fashion-mnist", images, labels)
    _trust(monkeypatch, tmp_path / "root" / "fashion-mnist")
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "root"))
    _, y = load_dataset("fashion-mnist", "train", download=False)
    assert y.tolist() == [0, 1, 2]


def test_mismatched_counts(monkeypatch, tmp_path):
    _write_split(tmp_path / "d", np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    _trust(monkeypatch, tmp_path / "d")
    with pytest.raises(IdxFormatError, match="5 images but labels of shape"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d", download=False)


def test_checksum_mismatch_is_refused(tmp_path):
    _write_split(tmp_path / "d", np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(ChecksumError, match="SHA-256"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d", download=False)


def test_missing_data_lists_the_ways_to_provide_it():
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", download=False)
    text = str(info.value)
    for hint in ("--data-dir", sources.DATA_ENV, "dataset-fashion-mnist", "download"):
        assert hint in text


def test_bad_arguments():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="split"):
        load_dataset("mnist", "valid")
    with pytest.raises(DataError, match="limit"):
        load_dataset("mnist", limit=0)


def test_iterate_batches_covers_each_example_once_and_keeps_the_last_batch():
    x = np.arange(23, dtype=np.float32)[:, None]
    y = np.arange(23)
    batches = list(iterate_batches(x, y, 5, np.random.default_rng(1)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)
    again = np.concatenate([b[1] for b in iterate_batches(x, y, 5, np.random.default_rng(1))])
    np.testing.assert_array_equal(seen, again)
    rng = np.random.default_rng(1)
    epoch1 = np.concatenate([b[1] for b in iterate_batches(x, y, 5, rng)])
    epoch2 = np.concatenate([b[1] for b in iterate_batches(x, y, 5, rng)])
    assert not np.array_equal(epoch1, epoch2)
    unshuffled = np.concatenate([b[1] for b in iterate_batches(x, y, 5, rng, shuffle=False)])
    np.testing.assert_array_equal(unshuffled, y)


def test_iterate_batches_errors():
    with pytest.raises(ValueError, match="labels"):
        list(iterate_batches(np.zeros((3, 1)), np.zeros(2), 2, np.random.default_rng()))
    with pytest.raises(ValueError, match="batch_size"):
        list(iterate_batches(np.zeros((3, 1)), np.zeros(3), 0, np.random.default_rng()))
