"""SoftmaxCrossEntropy: fused softmax + mean negative log-likelihood."""

from __future__ import annotations

import numpy as np

from ..functional import basic as F


class SoftmaxCrossEntropy:
    """``forward(logits (N, K), labels (N,) ints) -> float`` mean loss; ``backward() -> dlogits``.

    Stable through log-sum-exp; the gradient is ``(softmax - onehot) / N`` in the
    logits' dtype.
    """

    def __init__(self):
        self._cache = None

    def __repr__(self):
        return "SoftmaxCrossEntropy()"

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels) -> float:
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        if logits.ndim != 2 or logits.dtype.kind != "f" or 0 in logits.shape:
            raise ValueError(
                f"{self!r}: expected float logits of shape (N, K) with N, K >= 1, got shape "
                f"{logits.shape} dtype {logits.dtype}"
            )
        if labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{self!r}: expected integer labels of shape ({logits.shape[0]},), got shape "
                f"{labels.shape} dtype {labels.dtype}"
            )
        k = logits.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)][0]
            raise ValueError(f"{self!r}: labels must be in [0, {k}), got label {bad}")
        loss, self._cache = F.softmax_cross_entropy_forward(logits, labels)
        return loss

    def backward(self, dloss: float = 1.0):
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        if np.ndim(dloss) != 0 or np.asarray(dloss).dtype.kind not in "iuf":
            raise ValueError(f"{self!r}: dloss must be a real number, got {dloss!r}")
        return F.softmax_cross_entropy_backward(self._cache, float(dloss))
