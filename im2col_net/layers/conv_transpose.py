"""ConvTranspose2D: a thin layer over :mod:`im2col_net.functional.conv_transpose`."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..functional.conv_transpose import (
    conv_transpose2d_backward,
    conv_transpose2d_forward_geom,
    conv_transpose2d_geometry,
    conv_transpose2d_output_size,
)
from ..geometry import canonical_padding_mode
from .base import check_float_dtype, make_rng, uniform_init
from .conv import ConvLayerBase


class ConvTranspose2D(ConvLayerBase):
    """Transposed 2-D convolution, PyTorch argument names and weight shape.

    ``weight (in_channels, out_channels // groups, kh, kw)``, ``bias (out_channels,)``.
    Input ``(N, in_channels, H, W)`` (or unbatched ``(in_channels, H, W)``), output
    ``(N, out_channels, Hout, Wout)`` (unbatched: ``(out_channels, Hout, Wout)``) with
    ``Hout = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1``.
    ``padding`` is an int or a pair; ``output_padding`` must be smaller than the stride
    or the dilation. ``padding_mode``: ``"zeros"`` only, as in torch (its other names
    are refused with a clear error). Weights are drawn like torch's default (``U(-b, b)``, ``b =
    1/sqrt(fan_in)`` with ``fan_in = (out_channels // groups) * kh * kw``) from ``rng``;
    the bias likewise. ``compute_input_grad=False`` makes ``backward`` return None.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 rng=None, dtype=np.float32):
        super().__init__()
        name = f"ConvTranspose2D({in_channels}, {out_channels}, kernel_size={kernel_size!r})"
        self._check_channel_args(name, in_channels, out_channels, groups)
        # torch.nn.ConvTranspose2d accepts only "zeros" and raises for its other names too.
        mode = canonical_padding_mode(padding_mode, owner=name)
        if mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported (as in "
                             f"torch.nn.ConvTranspose2d), got {padding_mode!r}")
        self.geometry, self.output_padding = conv_transpose2d_geometry(
            kernel_size, stride, padding, dilation, output_padding, owner=name
        )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        self.compute_input_grad = True
        g = self.geometry
        self._config = dict(
            in_channels=self.in_channels, out_channels=self.out_channels,
            kernel_size=list(g.kernel), stride=list(g.stride),
            padding=[g.padding[0], g.padding[2]], output_padding=list(self.output_padding),
            groups=self.groups, bias=bool(bias), dilation=list(g.dilation),
        )
        kh, kw = g.kernel
        dtype = check_float_dtype(name, dtype)
        rng = make_rng(rng, owner=name)
        shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        bound = 1.0 / np.sqrt(shape[1] * kh * kw)
        self.params["weight"] = uniform_init(rng, shape, bound, dtype)
        if bias:
            self.params["bias"] = uniform_init(rng, self.out_channels, bound, dtype)

    def get_config(self):
        return dict(self._config)

    def reference_pair(self):
        g = self.geometry
        opts = dict(stride=g.stride, padding=(g.padding[0], g.padding[2]),
                    output_padding=self.output_padding, groups=self.groups, dilation=g.dilation)

        def forward(x):
            return ref.conv_transpose2d_forward(x, self.params["weight"],
                                                self.params.get("bias"), **opts)

        def backward(x, dy):
            dx, dw, db = ref.conv_transpose2d_backward(x, self.params["weight"], dy,
                                                       bias="bias" in self.params, **opts)
            return dx, {"weight": dw, "bias": db}

        return forward, backward

    def extra_repr(self):
        c = self._config
        return (f"{c['in_channels']}, {c['out_channels']}, kernel_size={tuple(c['kernel_size'])}, "
                f"stride={tuple(c['stride'])}, padding={tuple(c['padding'])}, "
                f"output_padding={tuple(c['output_padding'])}, groups={c['groups']}, "
                f"bias={c['bias']}, dilation={tuple(c['dilation'])}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(Hout, Wout)`` for an ``height x width`` input."""
        return conv_transpose2d_output_size(self.geometry, self.output_padding, height, width)

    _functional_backward = staticmethod(conv_transpose2d_backward)

    def output_shape(self, input_shape):
        n, _, h, w = self._checked_shape(input_shape)
        out_h, out_w = conv_transpose2d_output_size(self.geometry, self.output_padding, h, w,
                                                    owner=repr(self))
        return self._unbatched_shape(input_shape, (n, self.out_channels, out_h, out_w))

    def forward(self, x):
        x = self._checked_input(x)
        y, self._cache = conv_transpose2d_forward_geom(
            x, self.params["weight"], self.params.get("bias"), self.geometry, self.output_padding,
            groups=self.groups, owner=repr(self),
        )
        return y[0] if self._unbatched else y
