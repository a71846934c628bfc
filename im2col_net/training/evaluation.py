"""Evaluation helpers: loss/accuracy/predictions, class probabilities, confusion matrix."""

from __future__ import annotations

import numpy as np

from ..functional.basic import log_softmax
from ..layers.base import no_grad
from ..layers.loss import SoftmaxCrossEntropy
from .numerics import NonFiniteError, count_non_finite

__all__ = ["evaluate", "predict_proba", "predict_logits", "confusion_matrix",
           "per_class_accuracy", "batch_bounds"]


def _check_images(images, owner):
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype.kind != "f":
        raise ValueError(f"{owner}: expected float images of shape (N, C, H, W), got shape "
                         f"{images.shape} dtype {images.dtype}")
    return images


def _check_batch_size(batch_size, owner):
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``ceil(n / batch_size)`` batches covering ``range(n)`` in
    order, of near-equal sizes (they differ by at most one, none exceeds ``batch_size``).

    Not full batches and a short remainder: a remainder has a shape of its own, which a
    measuring planner would time afresh, and it runs a small, slow batch.
    """
    count = -(-n // batch_size)
    return [(i * n // count, (i + 1) * n // count) for i in range(count)]


def _batches_in_eval_mode(model, images, batch_size):
    """Yield ``(start, logits)`` per batch (:func:`batch_bounds`) with the model in eval
    mode (its mode restored at the end), each forward under ``no_grad()``."""
    was_training = model.training
    dtype = model.dtype or images.dtype
    model.eval()
    try:
        for start, stop in batch_bounds(len(images), batch_size):
            xb = images[start:stop].astype(dtype, copy=False)
            with no_grad():     # per batch: not across the yield, into the caller's code
                logits = model.forward(xb)
            yield start, logits
    finally:
        model.train(was_training)


# The logits are checked for NaN/inf and one clear error raised, so numpy's own warnings
# would only add noise.
def _quiet():
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _non_finite_logits(owner, bad, total):
    return NonFiniteError(f"{owner}: {bad} of {total} logits are NaN or infinite (the model's "
                          f"weights are non-finite, or they overflow on these images); its "
                          f"results would be meaningless")


def predict_logits(model, images, batch_size: int = 256) -> np.ndarray:
    """Logits ``(N, K)`` in the model's dtype for ``images (N, C, H, W)`` (eval mode, at
    most ``batch_size`` images per forward: :func:`batch_bounds`).

    Raises :class:`~.numerics.NonFiniteError` if any logit is NaN or infinite.
    """
    images = _check_images(images, "predict_logits")
    batch_size = _check_batch_size(batch_size, "predict_logits")
    with _quiet():
        parts = [logits for _, logits in _batches_in_eval_mode(model, images, batch_size)]
    if not parts:
        raise ValueError("predict_logits: no images given (N = 0)")
    logits = np.concatenate(parts)
    bad = count_non_finite(logits)
    if bad:
        raise _non_finite_logits("predict_logits", bad, logits.size)
    return logits


def predict_proba(model, images, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, K)`` (softmax of the logits, rows sum to 1), model dtype."""
    images = _check_images(images, "predict_proba")
    return np.exp(log_softmax(predict_logits(model, images, batch_size)))


def evaluate(model, images, labels, batch_size: int = 256):
    """Mean cross-entropy, accuracy and predicted classes on a labelled set.

    ``images (N, C, H, W)`` float, ``labels (N,)`` ints. Returns ``(loss: float,
    accuracy: float in [0, 1], predictions (N,) int64)``. Runs in eval mode (dropout off)
    and restores the model's previous mode, at most ``batch_size`` images per forward
    (:func:`batch_bounds`). Raises :class:`~.numerics.NonFiniteError` (a ValueError)
    with the count if any logit is NaN or infinite.
    """
    images = _check_images(images, "evaluate")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"evaluate: expected integer labels of shape ({len(images)},), got "
                         f"shape {labels.shape} dtype {labels.dtype}")
    if len(images) == 0:
        raise ValueError("evaluate: no images given (N = 0)")
    batch_size = _check_batch_size(batch_size, "evaluate")
    loss_fn = SoftmaxCrossEntropy()
    predictions = np.empty(len(images), dtype=np.int64)
    loss_sum = 0.0
    bad = total = 0
    with _quiet():
        for start, logits in _batches_in_eval_mode(model, images, batch_size):
            yb = labels[start:start + len(logits)]
            bad += count_non_finite(logits)
            total += logits.size
            loss_sum += loss_fn.forward(logits, yb) * len(yb)
            predictions[start:start + len(logits)] = logits.argmax(axis=1)
    if bad:
        raise _non_finite_logits("evaluate", bad, total)
    accuracy = float(np.mean(predictions == labels))
    return loss_sum / len(images), accuracy, predictions


def confusion_matrix(labels, predictions, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"confusion_matrix: labels {labels.shape} and predictions "
                         f"{predictions.shape} must be 1-D of equal length")
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), predictions.max(initial=-1))) + 1
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must lie in [0, {num_classes}), got "
                             f"values in [{values.min()}, {values.max()}]")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (NaN for a class with no samples)."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(matrix) / totals
