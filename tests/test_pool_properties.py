"""Property tests of max, average and global average pooling against the reference loops."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.functional import pool as pool_ops
from im2col_net.geometry import WindowGeometry
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    pool2d_configs,
    reference_pair,
    tie_free_arrays,
)

F64 = np.dtype(np.float64)


class UntiledGeometry(WindowGeometry):
    """Same windows, but never takes the reshape shortcut: forces the window-view path."""

    @property
    def tiles_exactly(self):
        return False


@given(config=pool2d_configs("max"), data=st.data())
def test_max_pool_matches_reference_tie_free(config, data):
    layer = config.make_layer()
    x = data.draw(tie_free_arrays(config.input_shape, config.dtype))
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@given(config=pool2d_configs("max"), data=st.data())
def test_max_pool_matches_reference_with_ties(config, data):
    # "integers" arrays repeat values; the reference takes the first maximum in row-major
    # window order, and so must the fast path.
    layer = config.make_layer()
    x = data.draw(arrays(config.input_shape, config.dtype, kinds=("integers",)))
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@given(config=pool2d_configs("avg"), data=st.data())
def test_avg_pool_matches_reference(config, data):
    layer = config.make_layer()
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


@given(config=pool2d_configs(tiled=True), data=st.data())
def test_tiled_and_window_view_paths_agree(config, data):
    geometry = F.pool_geometry(config.kernel_size, config.stride, config.padding)
    assert geometry.tiles_exactly
    untiled = UntiledGeometry(geometry.kernel, geometry.stride, geometry.padding,
                              geometry.dilation)
    x = data.draw(arrays(config.input_shape, config.dtype))
    if config.kind == "max":
        y1, c1 = pool_ops.max_pool2d_forward_geom(x, geometry)
        y2, c2 = pool_ops.max_pool2d_forward_geom(x, untiled)
        backward = pool_ops.max_pool2d_backward
    else:
        y1, c1 = pool_ops.avg_pool2d_forward_geom(x, geometry, config.count_include_pad)
        y2, c2 = pool_ops.avg_pool2d_forward_geom(x, untiled, config.count_include_pad)
        backward = pool_ops.avg_pool2d_backward
    assert_close(y2, y1, what="y")
    dy = data.draw(arrays(y1.shape, config.dtype))
    assert_close(backward(dy, c2), backward(dy, c1), what="dx")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("size", [(5, 5), (6, 7), (9, 4)])
def test_overlapping_3x3_stride_2(kind, padding, size):
    """The classic overlapping pool (3x3, stride 2): shared elements collect gradients."""
    rng = np.random.default_rng(sum(size) + padding)
    # Distinct values so max pooling has no ties.
    x = rng.permutation(2 * 3 * size[0] * size[1]).reshape(2, 3, *size).astype(np.float64)
    layer = MaxPool2D(3, 2, padding) if kind == "max" else AvgPool2D(3, 2, padding)
    assert_layer_matches_reference(layer, *reference_pair(layer), x)


def test_max_pool_ties_go_to_first_maximum():
    # Window [[0, 5], [5, 5]]: three equal maxima, the row-major first one wins.
    x = np.array([[[[0.0, 5.0], [5.0, 5.0]]]])
    for layer in (MaxPool2D(2), MaxPool2D(2, stride=1)):
        layer.forward(x)
        dx = layer.backward(np.full((1, 1, 1, 1), 7.0))
        np.testing.assert_array_equal(dx[0, 0], [[0.0, 7.0], [0.0, 0.0]])
    # A constant window: the top-left element takes the gradient.
    layer = MaxPool2D(3, stride=1, padding=1)
    layer.forward(np.ones((1, 1, 3, 3)))
    dx = layer.backward(np.ones((1, 1, 3, 3)))
    # Output (a, b) covers input rows a-1..a+1; its first real element is (max(a-1,0), ...).
    np.testing.assert_array_equal(dx[0, 0], [[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


@given(config=pool2d_configs("max"), data=st.data())
def test_max_pool_backward_conserves_gradient_sum(config, data):
    """Every window routes its whole gradient to one real element: sum(dx) == sum(dy)."""
    layer = config.make_layer()
    y = layer.forward(data.draw(arrays(config.input_shape, F64)))
    dy = data.draw(arrays(y.shape, F64))
    assert layer.backward(dy).sum() == pytest.approx(dy.sum(), rel=1e-12, abs=1e-12)


@given(config=pool2d_configs("avg", dtypes=(F64,)), data=st.data())
def test_avg_pool_backward_gradient_sum(config, data):
    """What average-pool backward hands on, window by window.

    A window with ``r`` real elements and divisor ``d`` passes ``dy * r / d`` on. With
    ``count_include_pad=False`` (``d == r``) and with no padding (``d == r == kh*kw``) the
    gradient sum is conserved exactly. With padding and ``count_include_pad=True`` the
    share of the padded positions is dropped: ``sum(dx) == sum(dy * r / (kh*kw))``, and
    ``r / (kh*kw)`` is exactly that average pool applied to an all-ones input.
    """
    layer = config.make_layer()
    x = data.draw(arrays(config.input_shape, F64))
    y = layer.forward(x)
    dy = data.draw(arrays(y.shape, F64))
    total = layer.backward(dy).sum()
    if not config.count_include_pad or config.padding in (0, (0, 0)):
        assert total == pytest.approx(dy.sum(), rel=1e-12, abs=1e-12)
    else:
        fraction = config.make_layer().forward(np.ones_like(x))
        assert total == pytest.approx((dy * fraction).sum(), rel=1e-12, abs=1e-12)


@given(config=pool2d_configs("avg", dtypes=(F64,)), data=st.data())
def test_count_include_pad_both_ways(config, data):
    """Both settings agree exactly where a window holds no padding; they differ by the
    factor ``r / (kh*kw)`` elsewhere."""
    x = data.draw(arrays(config.input_shape, F64))
    kwargs = dict(kernel_size=config.kernel_size, stride=config.stride, padding=config.padding)
    inc = AvgPool2D(**kwargs, count_include_pad=True).forward(x)
    exc = AvgPool2D(**kwargs, count_include_pad=False).forward(x)
    fraction = AvgPool2D(**kwargs, count_include_pad=True).forward(np.ones_like(x))
    assert_close(inc, exc * fraction, what="include = exclude * r/(kh*kw)")
    assert_close(exc, ref.avg_pool2d_forward(x, **kwargs, count_include_pad=False), what="exc")


@given(config=pool2d_configs(dtypes=(F64,), max_batch=2, max_channels=2, max_size=6),
       data=st.data())
def test_pool_passes_gradcheck(config, data):
    layer = config.make_layer()
    # Gaps of 1e-3 dwarf gradcheck's eps of 1e-6: no max-pool window is near a tie.
    x = data.draw(tie_free_arrays(config.input_shape, F64))
    assert_passes_gradcheck(layer, x)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6),
                       st.integers(1, 6)),
       dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_global_avg_pool_matches_reference(shape, dtype, data):
    layer = GlobalAvgPool2D()
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == shape[:2] + (1, 1)
    # Global average pooling is average pooling with the whole image as the window.
    assert_close(y, ref.avg_pool2d_forward(x, shape[2:]), what="as avg_pool")
    assert dx.flags.writeable


@given(config=pool2d_configs(dtypes=(np.dtype(np.float32),)), data=st.data())
def test_float32_stays_float32(config, data):
    layer = config.make_layer()
    y = layer.forward(data.draw(arrays(config.input_shape, np.float32)))
    assert y.dtype == np.float32
    assert layer.backward(np.ones(y.shape, np.float32)).dtype == np.float32


def test_functional_and_layer_agree():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    y, cache = F.max_pool2d_forward(x, 3, stride=2, padding=1)
    np.testing.assert_array_equal(y, MaxPool2D(3, 2, 1).forward(x))
    y, cache = F.avg_pool2d_forward(x, 2, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(y, AvgPool2D(2, 1, 1, count_include_pad=False).forward(x))
