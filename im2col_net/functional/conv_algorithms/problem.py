"""What every convolution algorithm is given: the shapes of one call (:class:`Problem`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry import WindowGeometry

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    """One convolution call's shapes: ``x (n, c, h, w)``, ``cout`` filters, output
    ``(out_h, out_w)``; everything an algorithm needs to size its buffers and GEMMs."""

    n: int
    c: int
    h: int
    w: int
    cout: int
    groups: int
    geometry: WindowGeometry
    out_h: int
    out_w: int
    dtype: np.dtype
    has_bias: bool
    padding_mode: str = "zeros"

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def coutg(self) -> int:
        return self.cout // self.groups

    @property
    def k(self) -> int:
        """Columns of the column matrix: ``kh*kw*C/G``."""
        kh, kw = self.geometry.kernel
        return kh * kw * self.cg

    @property
    def padded(self) -> tuple[int, int]:
        return self.geometry.padded_size(self.h, self.w)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def macs_per_image(self) -> int:
        """Multiply-adds of one image's forward GEMM (backward does this twice more)."""
        return self.out_h * self.out_w * self.k * self.cout

    def with_batch(self, n: int) -> Problem:
        return Problem(n, self.c, self.h, self.w, self.cout, self.groups, self.geometry,
                       self.out_h, self.out_w, self.dtype, self.has_bias, self.padding_mode)
