"""Testing helpers: hypothesis strategies for layer configurations and arrays, and
assertions that hold a layer against the reference loops or finite differences.

Needs ``hypothesis`` (``pip install im2col_net[testing]``). The project's own property
tests are written with these helpers, so a user testing a custom layer can do the same::

    from hypothesis import given, strategies as st
    from im2col_net.testing import (
        arrays, assert_layer_matches_reference, conv2d_configs, reference_pair,
    )

    @given(config=conv2d_configs(), data=st.data())
    def test_conv(config, data):
        layer = config.make_layer(seed=0)
        x = data.draw(arrays(config.input_shape, config.dtype))
        assert_layer_matches_reference(layer, *reference_pair(layer), x)

Every strategy draws only valid configurations (constructively, not by filtering), so
no example is wasted on a shape error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "im2col_net.testing needs hypothesis; install it with "
        "`pip install im2col_net[testing]`"
    ) from exc

from .geometry import PADDING_MODES, WindowGeometry, as_pair
from .gradcheck import gradcheck
from .layers import AvgPool2D, Conv2D, MaxPool2D

__all__ = [
    "CONV_PADDING_MODES",
    "Conv2DConfig",
    "Pool2DConfig",
    "conv2d_configs",
    "pool2d_configs",
    "arrays",
    "tie_free_arrays",
    "away_from_zero",
    "default_tolerances",
    "assert_close",
    "assert_layer_matches_reference",
    "reference_pair",
    "assert_passes_gradcheck",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CONV_STRATEGIES = ("im2col", "strided")


# --------------------------------------------------------------------------------------
# Arrays


def _resolve_shape(draw, shape):
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    return tuple(int(s) for s in shape)


def _relayout(draw, values: np.ndarray, noncontiguous: bool) -> np.ndarray:
    """Same values, optionally in a memory layout other than C-contiguous."""
    if not noncontiguous or values.ndim == 0:
        return values
    layout = draw(st.sampled_from(["c", "reversed-axes", "every-other"]))
    if layout == "reversed-axes":
        # Stored with the axes reversed (Fortran order), read back in the original order.
        return np.ascontiguousarray(values.T).T
    if layout == "every-other":
        wide = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), dtype=values.dtype)
        wide[..., ::2] = values
        return wide[..., ::2]
    return values


@st.composite
def arrays(draw, shape, dtype=np.float64, *, scale=1.0,
           kinds=("uniform", "normal", "integers", "sparse"), noncontiguous=False):
    """Strategy for well-scaled float arrays of ``shape`` (a tuple or a strategy) and ``dtype``.

    Values are drawn from a seeded numpy generator (hypothesis picks the seed and the
    kind), so arrays of any size are cheap and shrink to seed 0:

    ``"uniform"``  U(-scale, scale);
    ``"normal"``   N(0, (scale/2)^2);
    ``"integers"`` multiples of ``scale/4`` in [-scale, scale]: exact in any float dtype,
                   with many ties (max-pool tie breaking, exact sums);
    ``"sparse"``   uniform with about half the entries exactly 0.

    ``noncontiguous=True`` also draws Fortran-ordered and strided (every-other-element)
    layouts of the same values.
    """
    shape = _resolve_shape(draw, shape)
    dtype = np.dtype(dtype)
    kind = draw(st.sampled_from(list(kinds)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "uniform":
        values = rng.uniform(-scale, scale, size=shape)
    elif kind == "normal":
        values = rng.standard_normal(size=shape) * (scale / 2)
    elif kind == "integers":
        values = rng.integers(-4, 5, size=shape) * (scale / 4)
    elif kind == "sparse":
        values = rng.uniform(-scale, scale, size=shape) * (rng.random(size=shape) < 0.5)
    else:
        raise ValueError(f"arrays: unknown kind {kind!r}; expected one of "
                         "'uniform', 'normal', 'integers', 'sparse'")
    return _relayout(draw, np.asarray(values, dtype=dtype), noncontiguous)


@st.composite
def tie_free_arrays(draw, shape, dtype=np.float64, *, min_gap=1e-3, scale=1.0):
    """Strategy for arrays whose values are pairwise distinct, at least ``min_gap`` apart.

    Made for max pooling: with every gap wider than twice the finite-difference step,
    nudging one element by ``+-eps`` never changes which element is a window's maximum,
    so numerical and analytic gradients agree. Values are a shuffled evenly spaced grid
    of spacing ``max(min_gap, 2*scale/(size-1))``, centred on 0.
    """
    shape = _resolve_shape(draw, shape)
    size = int(np.prod(shape, dtype=np.int64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gap = max(min_gap, 2.0 * scale / max(size - 1, 1))
    grid = (np.arange(size) - (size - 1) / 2.0) * gap
    values = rng.permutation(grid).reshape(shape).astype(dtype)
    if size > 1:
        spacing = np.diff(np.sort(values.ravel().astype(np.float64))).min()
        assert spacing >= 0.99 * gap, "tie_free_arrays: dtype too coarse for the gap"
    return values


@st.composite
def away_from_zero(draw, shape, dtype=np.float64, *, margin=0.05, scale=1.0):
    """Strategy for arrays with ``margin <= |value| <= scale`` and random signs.

    For ReLU-like layers, whose derivative jumps at 0: a finite-difference step smaller
    than ``margin`` never crosses the kink.
    """
    if not 0 <= margin < scale:
        raise ValueError(f"away_from_zero: need 0 <= margin < scale, got {margin}, {scale}")
    shape = _resolve_shape(draw, shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    magnitude = rng.uniform(margin, scale, size=shape)
    sign = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
    return np.asarray(magnitude * sign, dtype=dtype)


# --------------------------------------------------------------------------------------
# Layer configurations


@dataclass(frozen=True)
class Conv2DConfig:
    """One valid convolution setup: input shape and every constructor argument.

    ``stride``, ``dilation`` and ``padding`` keep the form they were drawn in (int,
    pair, 4-tuple, ``"same"``, ``"valid"``) so every accepted spelling is exercised.
    """

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: object = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    padding_mode: str = "zeros"
    flip_kernel: bool = False
    bias: bool = True
    dtype: np.dtype = field(default=np.dtype(np.float64))
    strategy: str = "im2col"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def geometry(self) -> WindowGeometry:
        return WindowGeometry.make(self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        kh, kw = self.geometry.kernel
        return (self.out_channels, self.in_channels // self.groups, kh, kw)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        ho, wo = self.geometry.output_size(self.height, self.width)
        return (self.batch, self.out_channels, ho, wo)

    def reference_kwargs(self) -> dict:
        """Keyword arguments for :func:`im2col_net.reference.conv2d_forward`/``backward``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, padding_mode=self.padding_mode,
                    flip_kernel=self.flip_kernel)

    def functional_kwargs(self) -> dict:
        """Keyword arguments for :func:`im2col_net.functional.conv2d_forward`."""
        return dict(self.reference_kwargs(), strategy=self.strategy)

    def layer_kwargs(self) -> dict:
        """Keyword arguments for :class:`im2col_net.Conv2D`."""
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, groups=self.groups, bias=self.bias,
                    padding_mode=self.padding_mode, flip_kernel=self.flip_kernel,
                    strategy=self.strategy, dtype=self.dtype)

    def make_layer(self, seed=0):
        """A :class:`~im2col_net.Conv2D` seeded with ``seed``; the bias (zero after
        construction) is filled with U(-1, 1) so that tests exercise it."""
        layer = Conv2D(**self.layer_kwargs(), rng=seed)
        if self.bias:
            rng = np.random.default_rng(seed + 1)
            layer.params["bias"][...] = rng.uniform(-1, 1, self.out_channels)
        return layer


def _pair_form(draw, pair):
    """Spell a pair as an int when both entries agree (half of the time)."""
    if pair[0] == pair[1] and draw(st.booleans()):
        return pair[0]
    return tuple(pair)


# Every padding mode Conv2D accepts, the alias included, so property tests cover each.
CONV_PADDING_MODES = PADDING_MODES + ("edge",)


@st.composite
def conv2d_configs(draw, *, max_batch=3, max_channels=6, max_size=8, max_kernel=3,
                   max_stride=3, max_dilation=2, max_padding=2, max_groups=3,
                   dtypes=FLOAT_DTYPES, padding_modes=CONV_PADDING_MODES,
                   strategies=CONV_STRATEGIES, padding_forms=("int", "pair", "quad", "same",
                                                              "valid"),
                   flip_kernel=(False, True), bias=(True, False)):
    """Strategy for :class:`Conv2DConfig`: every option of Conv2D, always a valid shape.

    Draws groups first (including depthwise: one input channel per group), then kernel,
    dilation, stride and padding, then an input size large enough for the dilated
    kernel and for reflect padding (which needs ``pad < size``) and circular padding
    (``pad <= size``). Padding modes: torch's four names and the ``"edge"`` alias.
    ``"same"`` padding forces stride 1. Limit a dimension by passing a smaller ``max_*``
    or a one-element tuple of choices.
    """
    groups = draw(st.integers(1, max(1, min(max_groups, max_channels))))
    per_group = max(1, max_channels // groups)
    depthwise = draw(st.booleans())
    cg = 1 if depthwise else draw(st.integers(1, per_group))
    coutg = draw(st.integers(1, per_group))

    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    span = WindowGeometry(kernel, (1, 1), (0, 0, 0, 0), dilation).span
    assume(max(span) <= max_size)

    form = draw(st.sampled_from(list(padding_forms)))
    if form == "same":
        stride = (1, 1)
    else:
        stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    if form == "int":
        padding = draw(st.integers(0, max_padding))
    elif form == "pair":
        padding = (draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding)))
    elif form == "quad":
        padding = tuple(draw(st.integers(0, max_padding)) for _ in range(4))
    else:
        padding = form
    stride_arg, dilation_arg = _pair_form(draw, stride), _pair_form(draw, dilation)
    kernel_arg = _pair_form(draw, kernel)
    geometry = WindowGeometry.make(kernel_arg, stride_arg, padding, dilation_arg)
    top, bottom, left, right = geometry.padding

    mode = draw(st.sampled_from(list(padding_modes)))
    extra = {"reflect": 1, "circular": 0}.get(mode)      # size - pad must be >= this
    min_h = max(1, span[0] - top - bottom, 1 if extra is None else max(top, bottom) + extra)
    min_w = max(1, span[1] - left - right, 1 if extra is None else max(left, right) + extra)
    assume(min_h <= max_size and min_w <= max_size)

    return Conv2DConfig(
        batch=draw(st.integers(1, max_batch)),
        in_channels=groups * cg,
        height=draw(st.integers(min_h, max_size)),
        width=draw(st.integers(min_w, max_size)),
        out_channels=groups * coutg,
        kernel_size=kernel_arg,
        stride=stride_arg,
        padding=padding,
        dilation=dilation_arg,
        groups=groups,
        padding_mode=mode,
        flip_kernel=draw(st.sampled_from(list(flip_kernel))),
        bias=draw(st.sampled_from(list(bias))),
        dtype=np.dtype(draw(st.sampled_from(list(dtypes)))),
        strategy=draw(st.sampled_from(list(strategies))),
    )


@dataclass(frozen=True)
class Pool2DConfig:
    """One valid pooling setup (``kind`` is ``"max"`` or ``"avg"``)."""

    kind: str
    batch: int
    channels: int
    height: int
    width: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    count_include_pad: bool = True
    dtype: np.dtype = field(default=np.dtype(np.float64))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def tiled(self) -> bool:
        """True when windows tile the input (kernel == stride, no padding): the reshape
        path of the fast implementation."""
        kernel = as_pair(self.kernel_size, "kernel_size")
        stride = kernel if self.stride is None else as_pair(self.stride, "stride")
        return kernel == stride and as_pair(self.padding, "padding", minimum=0) == (0, 0)

    def kwargs(self) -> dict:
        """Keyword arguments shared by the layer, the functional op and the reference."""
        out = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        if self.kind == "avg":
            out["count_include_pad"] = self.count_include_pad
        return out

    def make_layer(self):
        """The matching :class:`~im2col_net.MaxPool2D` or :class:`~im2col_net.AvgPool2D`."""
        return (MaxPool2D if self.kind == "max" else AvgPool2D)(**self.kwargs())


@st.composite
def pool2d_configs(draw, kind=("max", "avg"), *, max_batch=3, max_channels=4, max_size=8,
                   max_kernel=3, max_stride=3, dtypes=FLOAT_DTYPES, tiled=None):
    """Strategy for :class:`Pool2DConfig`.

    ``kind``: ``"max"``, ``"avg"`` or a tuple to choose from. ``tiled=True`` forces
    kernel == stride without padding (the reshape path), ``False`` forbids it only in
    the sense that it draws stride and padding freely (they may still happen to tile);
    None draws either. Padding is at most half the kernel (as PyTorch requires), so
    every window holds at least one input element.
    """
    kind = draw(st.sampled_from([kind] if isinstance(kind, str) else list(kind)))
    is_tiled = draw(st.booleans()) if tiled is None else tiled
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    if is_tiled:
        stride, padding = _pair_form(draw, kernel), 0
    else:
        stride_pair = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
        stride = draw(st.sampled_from([None, _pair_form(draw, stride_pair)]))
        padding = _pair_form(draw, (draw(st.integers(0, kernel[0] // 2)),
                                    draw(st.integers(0, kernel[1] // 2))))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    min_h, min_w = max(1, kernel[0] - 2 * ph), max(1, kernel[1] - 2 * pw)
    assume(min_h <= max_size and min_w <= max_size)
    return Pool2DConfig(
        kind=kind,
        batch=draw(st.integers(1, max_batch)),
        channels=draw(st.integers(1, max_channels)),
        height=draw(st.integers(min_h, max_size)),
        width=draw(st.integers(min_w, max_size)),
        kernel_size=_pair_form(draw, kernel),
        stride=stride,
        padding=padding,
        count_include_pad=draw(st.booleans()),
        dtype=np.dtype(draw(st.sampled_from(list(dtypes)))),
    )


# --------------------------------------------------------------------------------------
# Assertions


def default_tolerances(dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing a result of ``dtype`` with a float64 reference.

    float64: ``1e-10``; float32: ``1e-4``; float16: ``1e-2``. ``atol`` is scaled by the
    largest magnitude of the expected array (at least 1) in :func:`assert_close`, so
    entries that cancel to nearly 0 are judged against the size of the terms.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return 1e-10, 1e-10
    if dtype == np.float32:
        return 1e-4, 1e-4
    return 1e-2, 1e-2


def assert_close(actual, expected, *, rtol=None, atol=None, what="array", check_dtype=True):
    """Assert ``actual`` matches ``expected`` in shape, dtype (optional) and value.

    ``|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|``
    element-wise, tolerances by dtype (:func:`default_tolerances`) unless given.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if check_dtype and actual.dtype != expected.dtype:
        raise AssertionError(f"{what}: dtype {actual.dtype}, expected {expected.dtype}")
    d_rtol, d_atol = default_tolerances(expected.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    a64, e64 = actual.astype(np.float64), expected.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(e64)))) if e64.size else 1.0
    err = np.abs(a64 - e64)
    bad = ~(err <= atol * scale + rtol * np.abs(e64))
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, err, -1.0)), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ (rtol={rtol}, "
            f"atol={atol}*{scale:.3g}); worst at {tuple(int(i) for i in worst)}: "
            f"{a64[worst]!r} vs expected {e64[worst]!r} (|diff| {err[worst]:.3g})"
        )


def assert_layer_matches_reference(layer, reference_forward, reference_backward, x, dy=None,
                                   *, rtol=None, atol=None, seed=0):
    """Run ``layer`` forward and backward on ``x`` and compare with the reference.

    ``reference_forward(x) -> y``; ``reference_backward(x, dy) -> dx`` or ``(dx, grads)``
    with ``grads`` a dict ``{param name: expected gradient}`` (a None value asserts the
    layer has no such gradient). ``dy`` defaults to U(-1, 1) drawn with ``seed``.

    Also asserts: ``y`` and ``dx`` have ``x``'s dtype, every gradient has its
    parameter's dtype and shape, and neither ``x`` nor ``dy`` was modified. Returns
    ``(y, dx)``.
    """
    x = np.asarray(x)
    x_before = x.copy()
    name = repr(layer)
    y = layer.forward(x)
    assert_close(y, reference_forward(x), rtol=rtol, atol=atol, what=f"{name} forward")
    if dy is None:
        dy = np.random.default_rng(seed).uniform(-1, 1, np.shape(y)).astype(np.asarray(y).dtype)
    dy = np.asarray(dy)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    if not np.array_equal(dy, dy_before, equal_nan=True):
        raise AssertionError(f"{name}: backward modified dy")
    if not np.array_equal(x, x_before, equal_nan=True):
        raise AssertionError(f"{name}: forward/backward modified the input x")

    expected = reference_backward(x, dy)
    dx_ref, grads_ref = expected if isinstance(expected, tuple) else (expected, {})
    if dx is None:
        if getattr(layer, "compute_input_grad", True):
            raise AssertionError(f"{name}: backward returned None for dx")
    elif dx_ref is not None:
        assert_close(dx, dx_ref, rtol=rtol, atol=atol, what=f"{name} dx")
    for pname, g_ref in grads_ref.items():
        if g_ref is None:
            if pname in layer.grads:
                raise AssertionError(f"{name}: unexpected gradient {pname!r}")
            continue
        if pname not in layer.grads:
            raise AssertionError(f"{name}: no gradient {pname!r} after backward")
        grad, param = layer.grads[pname], layer.params[pname]
        if grad.dtype != param.dtype or grad.shape != param.shape:
            raise AssertionError(
                f"{name}: gradient {pname!r} is {grad.dtype}{grad.shape}, parameter is "
                f"{param.dtype}{param.shape}"
            )
        assert_close(grad, g_ref, rtol=rtol, atol=atol, what=f"{name} grad {pname!r}")
    return y, dx


def reference_pair(layer):
    """``(reference_forward, reference_backward)`` for ``layer``, reading its current
    parameters and configuration at call time: what the layer's own
    :meth:`~im2col_net.layers.base.Layer.reference_pair` declares.

    The built-in Conv2D, ConvTranspose2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Linear,
    ReLU, LeakyReLU, ELU, Sigmoid, Tanh and Flatten declare one, and so can a user's own
    layer. (BatchNorm's reference, :func:`im2col_net.reference.batch_norm_forward`, also
    returns running statistics, so it is called directly.) ``ValueError`` for a layer
    that declares none.
    """
    declared = getattr(layer, "reference_pair", None)
    if not callable(declared):
        raise ValueError(f"reference_pair: no reference for {type(layer).__name__} (it has "
                         f"no reference_pair() method)")
    return declared()


def assert_passes_gradcheck(target, *inputs, allow_kinks=False, **kwargs):
    """Assert that :func:`im2col_net.gradcheck.gradcheck` accepts ``target`` at ``inputs``.

    Keyword arguments (``eps``, ``atol``, ``rtol``, ``mode``, ``seed``, ``backward``,
    ``dy``, ...) are passed on. gradcheck excuses elements that sit within ``eps`` of a
    kink (ReLU at 0, max-pool near-ties); unless ``allow_kinks`` is True such an element
    also fails the assertion, because it means the inputs were not drawn away from the
    kinks and part of the gradient went unchecked. On failure the message is the
    gradcheck report table. Returns the report.
    """
    kwargs["raise_on_failure"] = False
    report = gradcheck(target, *inputs, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradcheck failed for {target!r}:\n{report}")
    kinks = sum(row.kinks for row in report.rows)
    if kinks and not allow_kinks:
        raise AssertionError(
            f"gradcheck excused {kinks} element(s) of {target!r} as kinks; draw inputs away "
            f"from them (tie_free_arrays, away_from_zero) or pass allow_kinks=True:\n{report}"
        )
    return report
