"""The row/plane algorithm (``rows``: few input channels, small GEMMs read in place) and
the lowerings it is built on: im2row, column planes, the transposed column matrix.

Each path of the algorithm is drawn explicitly: the im2row forward (vertical dilation 1,
``kh >= 2``) or the per-image GEMMs on the transposed columns (otherwise), the
column-plane weight gradient (vertical stride 1) or the per-image one (otherwise), in
one block or many, on one thread or two.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from im2col_net import functional as F
from im2col_net import lowering, runtime
from im2col_net import reference as ref
from im2col_net.functional import conv_algorithms, planner
from im2col_net.geometry import WindowGeometry
from im2col_net.testing import arrays, assert_close, conv2d_configs


def _check_against_reference(config, data):
    """Draw inputs for ``config``, run forward and both backward variants, and compare
    with the reference loops (``dw``/``db`` without ``dx`` must equal those with it
    exactly)."""
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype, noncontiguous=True))
    y, cache = F.conv2d_forward(x, w, b, **config.functional_kwargs())
    assert cache.strategy == config.strategy
    dx, dw, db = F.conv2d_backward(dy, cache)
    _, dw_only, db_only = F.conv2d_backward(dy, cache, need_input_grad=False)
    assert_close(y, ref.conv2d_forward(x, w, b, **config.reference_kwargs()), what="y")
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=config.bias,
                                                 **config.reference_kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    np.testing.assert_array_equal(dw_only, dw)
    if config.bias:
        assert_close(db, db_ref, what="db")
        np.testing.assert_array_equal(db_only, db)


@pytest.mark.parametrize("algorithm", ["rows", "im2col_t"])
@pytest.mark.parametrize("workers, block_bytes", [(1, None), (2, None), (2, 1)])
@given(data=st.data())
def test_few_channel_algorithms_match_reference(algorithm, workers, block_bytes, data):
    """Every path of the rows and im2col_t algorithms, with the usual blocks and with
    one image per block (``block_bytes=1``)."""
    config = data.draw(conv2d_configs(max_groups=1, max_channels=3, max_kernel=4,
                                      max_size=12, strategies=(algorithm,)))
    with pytest.MonkeyPatch.context() as patch, runtime.forced_workers(workers):
        if block_bytes is not None:
            patch.setitem(conv_algorithms.DEFAULT_BLOCK_BYTES, algorithm, block_bytes)
        _check_against_reference(config, data)


@pytest.mark.parametrize("algorithm", ["rows", "im2col_t"])
@pytest.mark.parametrize("batch", [5, 6])
def test_first_layer_shape_on_the_few_channel_algorithms(algorithm, batch):
    """The default convnet's first layer (1 -> 32 channels, 5x5, 28x28) on the rows
    algorithm (one GEMM per output row forward, per kernel row and image for dW) and on
    im2col_t (one GEMM per block on the transposed columns) matches a float64 direct
    convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 5, 5), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    dy = rng.standard_normal((batch, 32, 28, 28), dtype=np.float32)
    y, cache = F.conv2d_forward(x, w, b, padding=2, strategy=algorithm)
    assert cache.strategy == algorithm
    if algorithm == "rows":
        assert cache.prepared.w_rows is not None and cache.prepared.plane_wgrad
    _, dw, db = F.conv2d_backward(dy, cache, need_input_grad=False)
    assert y.dtype == dw.dtype == db.dtype == np.float32
    windows = sliding_window_view(np.pad(x[:, 0].astype(np.float64), ((0, 0), (2, 2), (2, 2))),
                                  (5, 5), axis=(1, 2))       # (N, 28, 28, 5, 5)
    y_ref = np.einsum("nhwij,oij->nohw", windows, w[:, 0].astype(np.float64)) + b[:, None, None]
    dw_ref = np.einsum("nhwij,nohw->oij", windows, dy.astype(np.float64))[:, None]
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4,
                               atol=1e-2)


@pytest.mark.parametrize("algorithm", ["rows", "im2col_t"])
def test_few_channel_algorithms_refuse_groups(algorithm):
    x = np.zeros((1, 4, 6, 6), np.float32)
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=f"conv2d: strategy '{algorithm}' needs groups=1"):
        F.conv2d_forward(x, w, groups=2, strategy=algorithm)
    assert planner.estimate(F.conv_problem(x.shape, w.shape, WindowGeometry.make(3),
                                           groups=2)).algorithm != algorithm


@given(kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 2), sw=st.integers(1, 2),
       dh=st.integers(1, 2), dw=st.integers(1, 2), channels=st.integers(1, 3),
       batch=st.integers(1, 3), layout=st.sampled_from(["plain", "strided_out", "strided_in"]),
       data=st.data())
def test_im2col_transposed_is_the_window_copy(kh, kw, sh, sw, dh, dw, channels, batch, layout,
                                              data):
    """Both copy routes (two-stage through the plane buffer, or direct) and both view
    builders (ndarray constructor, as_strided fallback) give the windows exactly."""
    geometry = WindowGeometry((kh, kw), (sh, sw), (0, 0, 0, 0), (dh, dw))
    hp = data.draw(st.integers(geometry.span[0], geometry.span[0] + 5))
    wp = data.draw(st.integers(geometry.span[1], geometry.span[1] + 5))
    xp = data.draw(arrays((batch, hp, wp, channels), np.float32))
    if layout == "strided_in":
        xp = np.repeat(xp, 2, axis=2)[:, :, ::2]        # not C-contiguous
    out_h, out_w = geometry.output_size(hp, wp)
    rows, cols = kh * kw * channels, batch * out_h * out_w
    expected = lowering.window_view(xp, geometry, out_h, out_w).transpose(
        3, 4, 5, 0, 1, 2).reshape(rows, cols)
    if layout == "strided_out":
        out = np.full((rows, 2 * cols), np.nan, np.float32)[:, ::2]
        lowering.im2col_transposed(xp, geometry, out_h, out_w, out=out)
        got = out
    else:
        got = lowering.im2col_transposed(xp, geometry, out_h, out_w)
    np.testing.assert_array_equal(got, expected)


@given(kh=st.integers(2, 4), kw=st.integers(1, 4), sh=st.integers(1, 2), sw=st.integers(1, 2),
       dw=st.integers(1, 2), channels=st.integers(1, 3), batch=st.integers(0, 3),
       cout=st.integers(1, 3), bias=st.booleans(), data=st.data())
def test_im2row_windows_and_weights(kh, kw, sh, sw, dw, channels, batch, cout, bias, data):
    """im2row's view holds the windows (and ones where the bias goes), and a GEMM with
    im2row_weights gives the convolution: the same as the column matrix times the
    weights."""
    geometry = WindowGeometry((kh, kw), (sh, sw), (0, 0, 0, 0), (1, dw))
    hp = data.draw(st.integers(geometry.span[0], geometry.span[0] + 4))
    wp = data.draw(st.integers(geometry.span[1], geometry.span[1] + 4))
    xp = data.draw(arrays((batch, hp, wp, channels), np.float64))
    w = data.draw(arrays((kh, kw * channels, cout), np.float64))
    b = data.draw(arrays((cout,), np.float64)) if bias else None
    out_h, out_w = geometry.output_size(hp, wp)
    windows = lowering.im2row(xp, geometry, out_h, out_w, ones=bias)
    segments = kw * channels + int(bias)
    assert windows.shape == (batch, out_h, out_w, (kh - 1) * segments + kw * channels)
    expected = lowering.window_view(xp, geometry, out_h, out_w).reshape(
        batch, out_h, out_w, kh, kw * channels)
    for i in range(kh):
        got = windows[..., i * segments:i * segments + kw * channels]
        np.testing.assert_array_equal(got, expected[..., i, :])
        if bias and i < kh - 1:
            np.testing.assert_array_equal(windows[..., i * segments + kw * channels], 1)
    y = windows @ lowering.im2row_weights(w, b)
    y_ref = expected.reshape(batch, out_h, out_w, kh * kw * channels) @ w.reshape(-1, cout)
    if bias:
        y_ref = y_ref + b
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)


@given(kh=st.integers(1, 4), kw=st.integers(1, 4), sw=st.integers(1, 2), dh=st.integers(1, 2),
       dw=st.integers(1, 2), channels=st.integers(1, 3), batch=st.integers(0, 3),
       ones=st.booleans(), data=st.data())
def test_plane_windows_are_the_transposed_columns(kh, kw, sw, dh, dw, channels, batch, ones,
                                                  data):
    geometry = WindowGeometry((kh, kw), (1, sw), (0, 0, 0, 0), (dh, dw))
    hp = data.draw(st.integers(geometry.span[0], geometry.span[0] + 4))
    wp = data.draw(st.integers(geometry.span[1], geometry.span[1] + 4))
    xp = data.draw(arrays((batch, hp, wp, channels), np.float32))
    out_h, out_w = geometry.output_size(hp, wp)
    planes = lowering.column_planes(xp, geometry, out_h, out_w, ones=ones)
    windows = lowering.plane_windows(planes, geometry, out_h, out_w)
    data_rows = kw * channels
    assert windows.shape == (kh, batch, data_rows + int(ones), out_h * out_w)
    cols_t = lowering.im2col_transposed(xp, geometry, out_h, out_w)   # (kh*kw*C, N*Ho*Wo)
    expected = cols_t.reshape(kh, data_rows, batch, out_h * out_w).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(windows[:, :, :data_rows], expected)
    if ones:
        np.testing.assert_array_equal(windows[:, :, data_rows], 1)


def test_row_lowering_rejects_geometries_it_cannot_lay_out():
    xp = np.zeros((1, 6, 6, 1), np.float32)
    dilated = WindowGeometry((2, 2), (1, 1), (0, 0, 0, 0), (2, 1))
    with pytest.raises(ValueError, match=r"im2row: needs vertical dilation 1 .* got dilation"):
        lowering.im2row(xp, dilated, 4, 5)
    flat = WindowGeometry((1, 3), (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"kh >= 2.*kernel \(1, 3\)"):
        lowering.im2row(xp, flat, 6, 4)
    strided = WindowGeometry((2, 2), (2, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"column_planes: needs vertical stride 1, got stride"):
        lowering.column_planes(xp, strided, 3, 5)


