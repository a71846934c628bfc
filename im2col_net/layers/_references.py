"""Internal: the reference declarations of the convolution and pooling layers.

Every layer with an oracle declares it as a ``reference_pair()`` method (see
:meth:`im2col_net.layers.base.Layer.reference_pair`); the dense layers and ELU do so in
their own class bodies. These five are defined here, next to each other, and attached
to their classes when :mod:`im2col_net.layers` is imported, so that the modules of the
convolution and pooling layers stay about the fast path alone. Each reads the layer's
geometry and parameters at call time, as the layer itself does.
"""

from __future__ import annotations

from .. import reference as ref
from .base import Layer
from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D


def _conv2d(self):
    g = self.geometry
    opts = dict(stride=g.stride, padding=g.padding, dilation=g.dilation, groups=self.groups,
                padding_mode=self.padding_mode, flip_kernel=self.flip_kernel)

    def forward(x):
        return ref.conv2d_forward(x, self.params["weight"], self.params.get("bias"), **opts)

    def backward(x, dy):
        dx, dw, db = ref.conv2d_backward(x, self.params["weight"], dy,
                                         bias="bias" in self.params, **opts)
        return dx, {"weight": dw, "bias": db}

    return forward, backward


def _conv_transpose2d(self):
    g = self.geometry
    opts = dict(stride=g.stride, padding=(g.padding[0], g.padding[2]),
                output_padding=self.output_padding, groups=self.groups, dilation=g.dilation)

    def forward(x):
        return ref.conv_transpose2d_forward(x, self.params["weight"], self.params.get("bias"),
                                            **opts)

    def backward(x, dy):
        dx, dw, db = ref.conv_transpose2d_backward(x, self.params["weight"], dy,
                                                   bias="bias" in self.params, **opts)
        return dx, {"weight": dw, "bias": db}

    return forward, backward


def _pool_options(layer) -> dict:
    g = layer.geometry
    return dict(kernel_size=g.kernel, stride=g.stride, padding=(g.padding[0], g.padding[2]))


def _max_pool2d(self):
    opts = _pool_options(self)
    return (lambda x: ref.max_pool2d_forward(x, **opts),
            lambda x, dy: ref.max_pool2d_backward(x, dy, **opts))


def _avg_pool2d(self):
    opts = dict(_pool_options(self), count_include_pad=self.count_include_pad)
    return (lambda x: ref.avg_pool2d_forward(x, **opts),
            lambda x, dy: ref.avg_pool2d_backward(x, dy, **opts))


def _global_avg_pool2d(self):
    return ref.global_avg_pool2d_forward, ref.global_avg_pool2d_backward


DECLARED = {Conv2D: _conv2d, ConvTranspose2D: _conv_transpose2d, MaxPool2D: _max_pool2d,
            AvgPool2D: _avg_pool2d, GlobalAvgPool2D: _global_avg_pool2d}

for _cls, _method in DECLARED.items():
    _method.__name__ = "reference_pair"
    _method.__qualname__ = f"{_cls.__name__}.reference_pair"
    _method.__doc__ = Layer.reference_pair.__doc__
    _cls.reference_pair = _method
del _cls, _method
