"""MNIST and Fashion-MNIST as float32 NCHW arrays, and seeded mini-batches.

``load_dataset(name, split)`` returns ``(images, labels)``: images float32
``(N, 1, 28, 28)`` in ``[0, 1]`` (or standardised with the training set's mean and
standard deviation), labels int64 ``(N,)``. MNIST ships with the package; see
:mod:`im2col_net.datasets.sources` for where Fashion-MNIST is looked for.
"""

from __future__ import annotations

import functools

import numpy as np

from .idx import ChecksumError, DataError, IdxFormatError, read_idx
from .sources import load_file

__all__ = [
    "DATASET_NAMES", "CLASS_NAMES", "load_dataset", "load_mnist", "load_fashion_mnist",
    "iterate_batches", "read_idx", "DataError", "IdxFormatError", "ChecksumError",
]

DATASET_NAMES = ("mnist", "fashion-mnist")
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


def _check_name(name):
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")


@functools.lru_cache(maxsize=4)
def _raw_split(name, split, data_dir, download):
    images = load_file(name, split, "images", data_dir, download)
    labels = load_file(name, split, "labels", data_dir, download)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxFormatError(f"{name} {split} images: expected shape (N, 28, 28), got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{name} {split}: {images.shape[0]} images but labels of shape {labels.shape}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_dataset(name="mnist", split="train", *, data_dir=None, standardize=False, limit=None,
                 download=True):
    """Load ``split`` ("train" or "test") of ``name`` ("mnist" or "fashion-mnist").

    Returns images float32 ``(N, 1, 28, 28)`` in [0, 1] (``standardize=True``: minus the
    training set's mean, divided by its standard deviation) and labels int64 ``(N,)``.
    ``limit`` keeps the first ``limit`` examples. Raises :class:`DataError` (a
    ``ValueError``) when the data cannot be found or trusted.
    """
    _check_name(name)
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DataError(f"limit must be a positive int or None, got {limit!r}")
    data_dir = None if data_dir is None else str(data_dir)
    raw_images, raw_labels = _raw_split(name, split, data_dir, bool(download))
    if limit is not None:
        raw_images, raw_labels = raw_images[:limit], raw_labels[:limit]
    images = raw_images.astype(np.float32)[:, None]
    images *= np.float32(1 / 255)
    if standardize:
        mean, std = _train_stats(name, data_dir, bool(download))
        images -= mean
        images /= std
    return images, raw_labels.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _train_stats(name, data_dir, download):
    images, _ = _raw_split(name, "train", data_dir, download)
    scaled = images.astype(np.float64) / 255
    return np.float32(scaled.mean()), np.float32(scaled.std())


def load_mnist(split="train", **kwargs):
    """``load_dataset("mnist", split, ...)``."""
    return load_dataset("mnist", split, **kwargs)


def load_fashion_mnist(split="train", **kwargs):
    """``load_dataset("fashion-mnist", split, ...)``."""
    return load_dataset("fashion-mnist", split, **kwargs)


def iterate_batches(images, labels, batch_size, rng, shuffle=True):
    """Yield ``(images[idx], labels[idx])`` mini-batches covering the data once.

    With ``shuffle`` the order is a fresh permutation from ``rng`` (a
    ``numpy.random.Generator``): sampling without replacement, so every example appears
    exactly once per epoch. The last, partial batch is kept.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"iterate_batches: {n} images but {len(labels)} labels")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"iterate_batches: batch_size must be a positive int, got {batch_size!r}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]
