"""Conv2D: a thin layer over :mod:`im2col_net.functional.conv`."""

from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..functional import conv_algorithms
from ..functional.conv import (
    STRATEGIES,
    conv2d_backward,
    conv2d_forward_geom,
    conv2d_plan,
    conv_problem,
)
from ..geometry import WindowGeometry, canonical_padding_mode
from ..lowering import check_padding_mode
from .base import (
    Layer,
    check_count,
    check_float_dtype,
    check_float_input,
    check_input_shape,
    grad_enabled,
    he_normal,
    init_zeros,
    make_rng,
    unbatched_allowed,
    xavier_uniform,
)


class ConvLayerBase(Layer):
    """What Conv2D and ConvTranspose2D share: the input check and the backward step.

    A subclass sets ``in_channels``, ``out_channels`` and ``compute_input_grad`` and
    names its functional backward in ``_functional_backward``.
    """

    _functional_backward = None

    @staticmethod
    def _check_channel_args(name, in_channels, out_channels, groups):
        """Positive channel and group counts, both channel counts divisible by groups."""
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("groups", groups)):
            check_count(name, arg, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups})"
            )

    # Like torch.nn.Conv2d, a 3-D input (C, H, W) is one unbatched image: it runs as a
    # batch of one and the batch axis is dropped again from y (and dx).
    _unbatched = False

    def _checked_input(self, x):
        """``x`` as a 4-D array of the weight's dtype with ``in_channels`` channels (a 3-D
        ``(C, H, W)`` input gets a batch axis of one; ``_unbatched`` records it)."""
        x = check_float_input(self, x, self._ranks(), self.params["weight"].dtype)
        self._check_channels(x.shape)
        self._unbatched = x.ndim == 3
        return x[None] if self._unbatched else x

    @staticmethod
    def _ranks():
        return (3, 4) if unbatched_allowed() else 4

    def _check_channels(self, shape):
        """``shape`` (3-D or 4-D) has ``in_channels`` channels."""
        if shape[-3] != self.in_channels:
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.in_channels}, H, W) or "
                f"({self.in_channels}, H, W), got shape {tuple(shape)}"
            )

    def _checked_shape(self, input_shape):
        """``input_shape`` as a 4-D tuple after the rank and channel checks forward makes
        (a 3-D shape gets a batch axis of one)."""
        shape = check_input_shape(self, input_shape, self._ranks())
        self._check_channels(shape)
        return (1,) + shape if len(shape) == 3 else shape

    def _unbatched_shape(self, input_shape, shape):
        """``shape`` without its batch axis when ``input_shape`` is unbatched (3-D)."""
        return tuple(shape[1:]) if len(tuple(input_shape)) == 3 else tuple(shape)

    def backward(self, dy):
        """``dy (N, out_channels, Ho, Wo)`` -> ``dx (N, in_channels, H, W)`` (without the
        ``N`` axis after an unbatched forward) or None when ``compute_input_grad`` is
        False; fills ``grads["weight"]`` (and ``"bias"``)."""
        cache = self._require_cache()
        n = cache.input_shape[0]
        expected = (n, self.out_channels) + tuple(cache.out_size)
        unbatched = self._unbatched
        dy = self._check_dy(dy, expected[1:] if unbatched else expected,
                            self.params["weight"].dtype)
        if unbatched:
            dy = dy[None]
        dx, dw, db = self._functional_backward(
            dy, cache, need_input_grad=self.compute_input_grad)
        self.grads["weight"] = dw
        if db is not None:
            self.grads["bias"] = db
        return dx[0] if unbatched and dx is not None else dx


class Conv2D(ConvLayerBase):
    """2-D convolution (cross-correlation by default), PyTorch argument names and shapes.

    ``weight (out_channels, in_channels // groups, kh, kw)``, ``bias (out_channels,)``.
    Input ``(N, in_channels, H, W)``, output ``(N, out_channels, Ho, Wo)``; an unbatched
    ``(in_channels, H, W)`` input gives ``(out_channels, Ho, Wo)``, as in torch.

    ``padding``: int, pair, ``(top, bottom, left, right)``, ``"same"`` (stride 1) or
    ``"valid"``; ``padding_mode`` (torch's names): ``"zeros"``, ``"reflect"`` (each pad
    smaller than the input), ``"replicate"`` (alias ``"edge"``, the name in older model
    files; saved as ``"replicate"``) or ``"circular"`` (each pad at most the input size).
    ``flip_kernel=True`` makes it a true convolution (kernel rotated by 180 degrees).
    ``strategy``: ``"auto"`` (default: whatever the planner's mode in effect picks, see
    :mod:`im2col_net.functional.planner`; ``"measure"`` inside ``fit``), ``"measure"``,
    ``"estimate"``, or an algorithm: ``"im2col"``, ``"rows"`` and ``"im2col_t"`` (both
    no groups), ``"strided"`` or ``"fft"`` (stride 1, no dilation or groups). All give
    the same results up to rounding, and a NaN or infinity makes non-finite only the
    outputs (and gradients) whose windows contain it: a call on non-finite data runs
    im2col instead of the FFT, which would spread it over the image. ``init``: ``"he"``
    (normal, default) or ``"xavier"`` (uniform), drawn from ``rng`` (a
    ``numpy.random.Generator`` or seed). ``compute_input_grad=False`` skips ``dx`` (for
    a first layer); ``backward`` then returns None.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, flip_kernel=False,
                 strategy="auto", init="he", rng=None, dtype=np.float32):
        super().__init__()
        name = f"Conv2D({in_channels}, {out_channels}, kernel_size={kernel_size!r})"
        self._check_channel_args(name, in_channels, out_channels, groups)
        # Stored (and saved in the config) under torch's name: a model.npz that says
        # "edge" loads as "replicate".
        padding_mode = canonical_padding_mode(padding_mode, owner=name)
        if strategy not in STRATEGIES:
            raise ValueError(f"{name}: strategy must be one of {STRATEGIES}, got {strategy!r}")
        if init not in ("he", "xavier"):
            raise ValueError(f"{name}: init must be 'he' or 'xavier', got {init!r}")
        self.geometry = WindowGeometry.make(kernel_size, stride, padding, dilation, owner=name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.flip_kernel = bool(flip_kernel)
        self.strategy = strategy
        self.init = init
        self.compute_input_grad = True
        self._config = dict(
            in_channels=self.in_channels, out_channels=self.out_channels,
            kernel_size=list(self.geometry.kernel), stride=list(self.geometry.stride),
            padding=padding if isinstance(padding, str) else list(self.geometry.padding),
            dilation=list(self.geometry.dilation), groups=self.groups, bias=bool(bias),
            padding_mode=padding_mode, flip_kernel=self.flip_kernel, strategy=strategy,
            init=init,
        )
        kh, kw = self.geometry.kernel
        dtype = check_float_dtype(name, dtype)
        missing = self._unsupported(strategy, dtype)
        if missing:
            raise ValueError(f"{name}: strategy {strategy!r} needs {missing}; use 'auto' or "
                             f"'im2col'")
        rng = make_rng(rng, owner=name)
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        fan_in = shape[1] * kh * kw
        if init == "he":
            weight = he_normal(rng, shape, fan_in, dtype)
        else:
            fan_out = self.out_channels // self.groups * kh * kw
            weight = xavier_uniform(rng, shape, fan_in, fan_out, dtype)
        self.params["weight"] = weight
        if bias:
            self.params["bias"] = init_zeros(self.out_channels, dtype)

    def get_config(self):
        return dict(self._config)

    def reference_pair(self):
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

    def extra_repr(self):
        c = self._config
        return (f"{c['in_channels']}, {c['out_channels']}, kernel_size={tuple(c['kernel_size'])}, "
                f"stride={tuple(c['stride'])}, padding={c['padding']!r}, "
                f"dilation={tuple(c['dilation'])}, groups={c['groups']}, bias={c['bias']}, "
                f"padding_mode={c['padding_mode']!r}")

    _functional_backward = staticmethod(conv2d_backward)

    def _unsupported(self, strategy, dtype):
        """Why the named algorithm cannot run this layer (None: it can, or a mode)."""
        if strategy not in conv_algorithms.ALGORITHMS:
            return None
        problem = conv_problem((1, self.in_channels, 1, 1), (self.out_channels,),
                               self.geometry, groups=self.groups, dtype=dtype, check=False)
        return conv_algorithms.supported(strategy, problem)

    def plan(self, input_shape, mode=None):
        """The plan (algorithm and block size) a forward on ``input_shape`` runs: in
        ``mode`` (``"estimate"``, ``"measure"``; None: the planner's mode in effect)
        unless ``strategy`` names an algorithm. ``"estimate"`` runs no convolution."""
        self.output_shape(input_shape)           # the checks forward would make
        shape = self._checked_shape(input_shape)
        problem = conv_problem(shape, self.params["weight"].shape, self.geometry,
                               groups=self.groups, dtype=self.params["weight"].dtype,
                               has_bias="bias" in self.params, padding_mode=self.padding_mode)
        strategy = self.strategy if self.strategy != "auto" else (mode or "auto")
        return conv2d_plan(problem, strategy, self.compute_input_grad)

    def output_shape(self, input_shape):
        n, _, h, w = self._checked_shape(input_shape)
        owner = repr(self)
        check_padding_mode(self.padding_mode, self.geometry.padding, h, w, owner=owner)
        ho, wo = self.geometry.checked_output_size(h, w, owner=owner)
        return self._unbatched_shape(input_shape, (n, self.out_channels, ho, wo))

    def forward(self, x):
        x = self._checked_input(x)
        y, self._cache = conv2d_forward_geom(
            x, self.params["weight"], self.params.get("bias"), self.geometry, groups=self.groups,
            padding_mode=self.padding_mode, flip_kernel=self.flip_kernel,
            strategy=self.strategy, owner=repr(self), input_grad=self.compute_input_grad,
            for_backward=grad_enabled(),
        )
        return y[0] if self._unbatched else y
