"""Property tests of the convolution fast path (Conv2D, functional conv, lowering) against
the reference loops, finite differences and algebraic identities."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import Conv2D, lowering
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.testing import (
    CONV_PADDING_MODES,
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    conv2d_configs,
    reference_pair,
)

F64 = np.dtype(np.float64)


def draw_operands(data, config, noncontiguous=False):
    """x, weight and bias (or None) for ``config``, in its dtype."""
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=noncontiguous))
    w = data.draw(arrays(config.weight_shape, config.dtype, noncontiguous=noncontiguous))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    return x, w, b


@given(config=conv2d_configs(), data=st.data())
def test_conv2d_layer_matches_reference(config, data):
    layer = config.make_layer(seed=data.draw(st.integers(0, 2**16)))
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == config.output_shape
    assert set(layer.grads) == ({"weight", "bias"} if config.bias else {"weight"})


@given(config=conv2d_configs(), data=st.data())
def test_functional_conv2d_matches_reference(config, data):
    x, w, b = draw_operands(data, config, noncontiguous=True)
    y, cache = F.conv2d_forward(x, w, b, **config.functional_kwargs())
    assert_close(y, ref.conv2d_forward(x, w, b, **config.reference_kwargs()), what="y")
    dy = data.draw(arrays(y.shape, config.dtype, noncontiguous=True))
    dy_before = dy.copy()
    dx, dw, db = F.conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dy, dy_before, err_msg="conv2d_backward modified dy")
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=config.bias,
                                                 **config.reference_kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    if config.bias:
        assert_close(db, db_ref, what="db")
    else:
        assert db is None
    # Skipping the input gradient changes nothing else.
    no_dx, dw2, _ = F.conv2d_backward(dy, cache, need_input_grad=False)
    assert no_dx is None
    np.testing.assert_array_equal(dw2, dw)


# Each algorithm on the configurations it supports (the FFT: stride and dilation 1, no
# groups; rows and im2col_t: no groups), drawn explicitly rather than through what "auto"
# picks.
ALGORITHM_CONFIGS = {
    "im2col": conv2d_configs(strategies=("im2col",)),
    "rows": conv2d_configs(max_groups=1, strategies=("rows",)),
    "strided": conv2d_configs(strategies=("strided",)),
    "fft": conv2d_configs(max_stride=1, max_dilation=1, max_groups=1, strategies=("fft",)),
    "im2col_t": conv2d_configs(max_groups=1, strategies=("im2col_t",)),
}


@pytest.mark.parametrize("algorithm", list(ALGORITHM_CONFIGS))
@given(data=st.data())
def test_each_algorithm_matches_reference(algorithm, data):
    config = data.draw(ALGORITHM_CONFIGS[algorithm])
    x, w, b = draw_operands(data, config, noncontiguous=True)
    y, cache = F.conv2d_forward(x, w, b, **config.functional_kwargs())
    assert cache.strategy == algorithm
    assert_close(y, ref.conv2d_forward(x, w, b, **config.reference_kwargs()), what="y")
    dy = data.draw(arrays(y.shape, config.dtype, noncontiguous=True))
    dx, dw, db = F.conv2d_backward(dy, cache)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=config.bias,
                                                 **config.reference_kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    if config.bias:
        assert_close(db, db_ref, what="db")
    assert y.dtype == dw.dtype == config.dtype


@given(config=conv2d_configs(strategies=("im2col",)), data=st.data())
def test_strategies_agree(config, data):
    x, w, b = draw_operands(data, config)
    y1, c1 = F.conv2d_forward(x, w, b, **config.functional_kwargs())
    strided = dataclasses.replace(config, strategy="strided")
    y2, c2 = F.conv2d_forward(x, w, b, **strided.functional_kwargs())
    assert_close(y2, y1, what="strided vs im2col y")
    dy = data.draw(arrays(y1.shape, config.dtype))
    for g1, g2, what in zip(F.conv2d_backward(dy, c1), F.conv2d_backward(dy, c2),
                            ("dx", "dw", "db"), strict=True):
        if g1 is None:
            assert g2 is None
        else:
            assert_close(g2, g1, what=f"strided vs im2col {what}")


@given(config=conv2d_configs(dtypes=(F64,), bias=(False,)), data=st.data())
def test_conv_is_bilinear(config, data):
    """Without bias, conv(x, w) is linear in x for fixed w and in w for fixed x."""
    kwargs = config.functional_kwargs()
    x1, w1, _ = draw_operands(data, config)
    x2, w2, _ = draw_operands(data, config)
    alpha, beta = data.draw(st.sampled_from([(2.0, -0.5), (0.25, 3.0), (-1.0, 1.0)]))

    def conv(x, w):
        return F.conv2d_forward(x, w, None, **kwargs)[0]

    assert_close(conv(alpha * x1 + beta * x2, w1),
                 alpha * conv(x1, w1) + beta * conv(x2, w1), what="linear in x")
    assert_close(conv(x1, alpha * w1 + beta * w2),
                 alpha * conv(x1, w1) + beta * conv(x1, w2), what="linear in w")


@given(config=conv2d_configs(dtypes=(F64,)), data=st.data())
def test_col2im_is_the_adjoint_of_im2col(config, data):
    """<im2col(x), c> == <x, col2im(c)> for every geometry and group count (NHWC)."""
    geometry = config.geometry
    hp, wp = geometry.padded_size(config.height, config.width)
    ho, wo = geometry.output_size(config.height, config.width)
    xp = data.draw(arrays((config.batch, hp, wp, config.in_channels), F64))
    cols = lowering.im2col(xp, geometry, ho, wo, config.groups)
    c = data.draw(arrays(cols.shape, F64))
    back = lowering.col2im(c, xp.shape, geometry, ho, wo)
    assert back.shape == xp.shape and back.dtype == xp.dtype
    lhs, rhs = float(np.vdot(cols, c)), float(np.vdot(xp, back))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs), float(np.abs(cols * c).sum()))


@given(mode=st.sampled_from(CONV_PADDING_MODES), data=st.data())
def test_pad_grad_is_the_adjoint_of_pad(mode, data):
    """<pad(x), g> == <x, pad_grad(g)> in each mode; both agree with the reference."""
    h, w = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    # reflect: pad < size; circular: pad <= size (one wrap); the others: any pad.
    limit_h = {"reflect": h - 1, "circular": h}.get(mode, 3)
    limit_w = {"reflect": w - 1, "circular": w}.get(mode, 3)
    padding = (data.draw(st.integers(0, limit_h)), data.draw(st.integers(0, limit_h)),
               data.draw(st.integers(0, limit_w)), data.draw(st.integers(0, limit_w)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(arrays((2, h, w, 3), dtype, noncontiguous=True))
    xp = lowering.pad(x, padding, mode)
    assert xp.dtype == dtype and xp.flags.c_contiguous
    assert_close(xp, ref.pad2d(x.transpose(0, 3, 1, 2), padding, mode).transpose(0, 2, 3, 1),
                 what=f"pad {mode}")
    g = data.draw(arrays(xp.shape, dtype))
    g_ref = ref.pad2d_backward(g.transpose(0, 3, 1, 2), padding, mode).transpose(0, 2, 3, 1)
    back = lowering.pad_grad(g.copy(), padding, mode)  # pad_grad may work in place
    assert back.dtype == dtype
    assert_close(back, g_ref, what=f"pad_grad {mode}")
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    lhs = float(np.vdot(lowering.pad(x64, padding, mode), g64))
    rhs = float(np.vdot(x64, lowering.pad_grad(g64.copy(), padding, mode)))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, float(np.abs(g64).sum()))


def test_pad_into_a_zeroed_buffer_copies_only_the_interior():
    """border_filled=True leaves the border as it is (the caller zeroed it) and writes the
    interior; without it the border is overwritten with the fill; other modes refuse it."""
    x = -1 - np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    padding = (1, 2, 2, 1)
    expected = lowering.pad(x, padding)
    out = np.zeros_like(expected)
    assert lowering.pad(x, padding, out=out, border_filled=True) is out
    np.testing.assert_array_equal(out, expected)
    marked = np.full_like(expected, 7.0)
    lowering.pad(x, padding, out=marked, border_filled=True)
    assert (marked == 7.0).sum() == expected.size - x.size   # border untouched
    lowering.pad(x, padding, out=marked)
    np.testing.assert_array_equal(marked, expected)
    with pytest.raises(ValueError, match="border_filled applies to mode 'zeros' only, got 'edge'"):
        lowering.pad(x, padding, "edge", out=np.empty_like(expected), border_filled=True)


@given(config=conv2d_configs(max_batch=2, max_channels=4, max_size=5, dtypes=(F64,)),
       data=st.data())
def test_conv2d_passes_gradcheck(config, data):
    layer = config.make_layer(seed=1)
    x = data.draw(arrays(config.input_shape, F64, kinds=("uniform", "normal")))
    report = assert_passes_gradcheck(layer, x)
    expected = {"input 0", "weight"} | ({"bias"} if config.bias else set())
    assert set(report.names) == expected


@given(config=conv2d_configs(max_batch=2, max_channels=3, max_size=5,
                             dtypes=(np.dtype(np.float32),)), data=st.data())
def test_float32_conv2d_passes_fast_gradcheck(config, data):
    # gradcheck works on a float64 copy; the layer and the input stay float32.
    layer = config.make_layer(seed=2)
    x = data.draw(arrays(config.input_shape, np.float32))
    assert_passes_gradcheck(layer, x, mode="fast")
    assert layer.params["weight"].dtype == np.float32 and x.dtype == np.float32


@given(config=conv2d_configs(dtypes=(np.dtype(np.float32),)), data=st.data())
def test_float32_stays_float32(config, data):
    layer = config.make_layer(seed=0)
    x = data.draw(arrays(config.input_shape, np.float32))
    y = layer.forward(x)
    assert y.dtype == np.float32
    dx = layer.backward(np.ones(y.shape, dtype=np.float32))
    assert dx.dtype == np.float32
    for name, grad in layer.grads.items():
        assert grad.dtype == np.float32, name
    for name, param in layer.params.items():
        assert param.dtype == np.float32, name


@given(config=conv2d_configs(), data=st.data())
def test_backward_never_modifies_dy(config, data):
    layer = config.make_layer(seed=0)
    x = data.draw(arrays(config.input_shape, config.dtype))
    y = layer.forward(x)
    # Both a fresh C-contiguous dy and an NCHW view of NHWC memory (what our own layers
    # hand back) must survive.
    for dy in (data.draw(arrays(y.shape, config.dtype)),
               np.ascontiguousarray(y.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
        before = dy.copy()
        layer.backward(dy)
        np.testing.assert_array_equal(dy, before)


def test_compute_input_grad_false_returns_none_and_keeps_weight_grad():
    rng = np.random.default_rng(0)
    layer = Conv2D(2, 3, 3, padding=1, dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 2, 5, 5))
    dy = rng.standard_normal((2, 3, 5, 5))
    layer.forward(x)
    layer.backward(dy)
    dw = layer.grads["weight"].copy()
    layer.compute_input_grad = False
    layer.forward(x)
    assert layer.backward(dy) is None
    np.testing.assert_allclose(layer.grads["weight"], dw, rtol=1e-12, atol=1e-12)


def test_replicate_alias_matches_edge():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 4))
    edge = Conv2D(2, 2, 3, padding=1, padding_mode="edge", dtype=np.float64, rng=0)
    replicate = Conv2D(2, 2, 3, padding=1, padding_mode="replicate", dtype=np.float64, rng=0)
    np.testing.assert_array_equal(edge.forward(x), replicate.forward(x))
