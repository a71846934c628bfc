"""MNIST and Fashion-MNIST as float32 NCHW arrays, and seeded mini-batches.

``load_dataset(name, split)`` returns ``(images, labels)``: images float32
``(N, 1, 28, 28)`` in ``[0, 1]`` (or standardised with the training set's pixel mean
and standard deviation), labels int64 ``(N,)``. MNIST ships with the package;
:mod:`im2col_net.datasets.sources` says where Fashion-MNIST is looked for and how it
is downloaded. Every file is checked against its published SHA-256 before use.
"""

from __future__ import annotations

import numpy as np

from .idx import ChecksumError, DataError, IdxFormatError, read_idx
from .sources import FILES, load_file

__all__ = [
    "DATASET_NAMES", "SPLITS", "CLASS_NAMES", "IMAGE_SHAPE", "load_dataset", "load_mnist",
    "load_fashion_mnist", "pixel_stats", "iterate_batches", "read_idx", "DataError",
    "IdxFormatError", "ChecksumError",
]

DATASET_NAMES = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
IMAGE_SHAPE = (1, 28, 28)
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_name_split(name, split):
    if name not in DATASET_NAMES:
        raise DataError(f"load_dataset: unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    if split not in SPLITS:
        raise DataError(f"load_dataset: split must be one of {SPLITS}, got {split!r}")


def _raw_split(name, split, data_dir, download, base_url):
    """Verified uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)``, read-only."""
    images = load_file(name, split, "images", data_dir, download, base_url)
    labels = load_file(name, split, "labels", data_dir, download, base_url)
    images_file, labels_file = FILES[(split, "images")], FILES[(split, "labels")]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE[1:]:
        raise IdxFormatError(
            f"{name} {images_file}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IdxFormatError(
            f"{name} {labels_file}: expected uint8 labels of shape (N,), got "
            f"{labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{name} {split}: {images_file} holds {images.shape[0]} images but {labels_file} "
            f"holds {labels.shape[0]} labels")
    classes = len(CLASS_NAMES[name])
    if labels.size and int(labels.max()) >= classes:
        raise IdxFormatError(
            f"{name} {labels_file}: expected labels in [0, {classes}), found {int(labels.max())}")
    return images, labels


def pixel_stats(images: np.ndarray) -> tuple[np.float32, np.float32]:
    """Mean and standard deviation of ``images / 255`` for uint8 ``images`` of any shape.

    Computed exactly from a 256-bin histogram (in row blocks, so no large temporary);
    returned as float32 scalars.
    """
    flat = images.reshape(len(images), -1) if images.ndim > 1 else images.reshape(-1, 1)
    counts = np.zeros(256, np.int64)
    block = max(1, (1 << 22) // max(1, flat.shape[1]))  # ~4M pixels per bincount call
    for start in range(0, len(flat), block):
        counts += np.bincount(flat[start:start + block].ravel(), minlength=256)
    total = counts.sum()
    if total == 0:
        raise DataError("pixel_stats: no pixels to take statistics of")
    values = np.arange(256, dtype=np.float64) / 255
    mean = float(counts @ values) / total
    var = float(counts @ (values - mean) ** 2) / total
    return np.float32(mean), np.float32(np.sqrt(var))


def load_dataset(name, split="train", *, data_dir=None, standardize=False, limit=None,
                 download=True, base_url=None):
    """Load ``split`` ("train" or "test") of ``name`` ("mnist" or "fashion-mnist").

    Parameters
    ----------
    data_dir : str or path, optional
        The directory holding the IDX files (directly or in a ``<name>/``
        subdirectory; see :mod:`.sources`). When given (or when ``$IM2COL_NET_DATA`` is
        set) it is the only place searched: a missing directory or missing files raise
        :class:`DataError` instead of falling back to other data.
    standardize : bool
        Subtract the full training set's pixel mean and divide by its standard deviation
        (both of the [0, 1] scaled pixels, independent of ``limit``).
    limit : int, optional
        Keep only the first ``limit`` examples (all when larger than the split).
    download : bool
        Allow downloading Fashion-MNIST into the user cache when it is found nowhere else.
    base_url : str, optional
        Fashion-MNIST download base URL (default ``$IM2COL_NET_FASHION_MNIST_URL``, else
        the official mirror).

    Returns
    -------
    images : float32 ``(N, 1, 28, 28)``, C-contiguous, in [0, 1] (or standardised).
    labels : int64 ``(N,)``, in ``[0, len(CLASS_NAMES[name]))``.

    Raises :class:`DataError` (a ``ValueError``; subclasses :class:`IdxFormatError`,
    :class:`ChecksumError`) when the arguments are bad or the data cannot be found or
    trusted; messages name the file and the problem.
    """
    _check_name_split(name, split)
    if limit is not None and (not _is_count(limit) or limit < 1):
        raise DataError(f"load_dataset: limit must be a positive int or None, got {limit!r}")
    raw_images, raw_labels = _raw_split(name, split, data_dir, bool(download), base_url)
    if limit is not None:
        raw_images, raw_labels = raw_images[:limit], raw_labels[:limit]
    images = raw_images.astype(np.float32).reshape((-1, *IMAGE_SHAPE))
    images /= np.float32(255)
    if standardize:
        train_images, _ = _raw_split(name, "train", data_dir, bool(download), base_url)
        mean, std = pixel_stats(train_images)
        if std == 0:
            raise DataError(f"load_dataset: the {name} training images are constant; "
                            f"cannot standardise them")
        images -= mean
        images /= std
    return images, raw_labels.astype(np.int64)


def load_mnist(split="train", **kwargs):
    """``load_dataset("mnist", split, **kwargs)``."""
    return load_dataset("mnist", split, **kwargs)


def load_fashion_mnist(split="train", **kwargs):
    """``load_dataset("fashion-mnist", split, **kwargs)``."""
    return load_dataset("fashion-mnist", split, **kwargs)


def iterate_batches(images, labels, batch_size, rng, shuffle=True):
    """Yield ``(images[idx], labels[idx])`` mini-batches covering the data once.

    ``images`` ``(N, ...)`` and ``labels`` ``(N,)`` are arrays of any dtype (kept).
    With ``shuffle`` the order is a fresh permutation drawn from ``rng`` (a
    ``numpy.random.Generator``): sampling without replacement, so every example appears
    exactly once per call (epoch) and successive calls with the same generator give
    different orders. Without ``shuffle`` the order is 0..N-1 and ``rng`` is unused
    (may be None). All batches have ``batch_size`` examples except the last, partial one,
    which is kept. Batches are copies (fancy indexing), never views of the inputs.
    Arguments are validated and the permutation drawn when called, before the first batch.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 0 or labels.ndim == 0:
        raise ValueError(f"iterate_batches: images and labels must be arrays with a batch "
                         f"axis, got shapes {images.shape} and {labels.shape}")
    n = images.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"iterate_batches: expected as many labels as images ({n}), "
                         f"got {labels.shape[0]} labels")
    if not _is_count(batch_size) or batch_size < 1:
        raise ValueError(f"iterate_batches: batch_size must be a positive int, got {batch_size!r}")
    if shuffle and not isinstance(rng, np.random.Generator):
        raise ValueError(f"iterate_batches: shuffle=True needs a numpy.random.Generator as rng, "
                         f"got {type(rng).__name__}")
    # drawn now, at call time, so the generator's state after the call covers this epoch
    order = rng.permutation(n) if shuffle else np.arange(n)
    return _batches(images, labels, int(batch_size), order)


def _batches(images, labels, batch_size, order):
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]
