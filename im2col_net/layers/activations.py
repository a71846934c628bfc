"""ELU layer over :mod:`im2col_net.functional.elu`."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..functional.elu import elu_backward, elu_forward
from .dense import _Elementwise


class ELU(_Elementwise):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (torch.nn.ELU); any shape."""

    def __init__(self, alpha=1.0):
        super().__init__()
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(alpha, bool) or not np.isfinite(value):
            raise ValueError(f"ELU: alpha must be a finite number, got {alpha!r}")
        self.alpha = value

    def get_config(self):
        return dict(alpha=self.alpha)

    def _forward(self, x):
        return elu_forward(x, self.alpha)

    _backward = staticmethod(elu_backward)

    def reference_pair(self):
        return (lambda x: ref.elu_forward(x, self.alpha),
                lambda x, dy: ref.elu_backward(x, dy, self.alpha))
