"""Non-finite values (NaN, inf): the error training and evaluation raise, and cheap checks."""

from __future__ import annotations

import numpy as np

__all__ = ["NonFiniteError", "first_non_finite", "count_non_finite"]


class NonFiniteError(ValueError):
    """A loss, gradient, parameter, optimizer state or logit is NaN or infinite.

    ``epoch`` (1-based, the epoch in progress) and ``step`` (the optimizer update being
    made, 1-based) say where training noticed it; both are None outside training.
    """

    def __init__(self, message, *, epoch=None, step=None, what=None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.what = what


def count_non_finite(array) -> int:
    """Number of NaN/inf entries of a float array (0 for integer arrays)."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def first_non_finite(named_arrays) -> str | None:
    """The name of the first array holding a NaN/inf in ``{name: array}``, or None."""
    for name, value in named_arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return name
    return None
