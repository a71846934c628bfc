"""The im2col strategy's small-channel paths: stacked GEMMs, the two-stage transposed
im2col, and the column-matrix-free forward (im2row) and weight gradient (column planes).

A block's GEMMs are issued per group of whole images (``_Plan.stack``) when one image's
product is small (``conv.SMALL_GEMM_MNK``); the default shapes of the other tests never
reach that with more than one group per block, so here the constant is set from the
drawn shape to force 1-3 images per GEMM, with and without a remainder, in one block.
Likewise the im2row forward needs output rows of ``conv.ROW_GEMM_MIN_WIDTH`` (16), more
than the drawn shapes have, so one test lowers it.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from im2col_net import functional as F
from im2col_net import lowering
from im2col_net import reference as ref
from im2col_net.functional import _parallel
from im2col_net.functional import conv as conv_ops
from im2col_net.geometry import WindowGeometry
from im2col_net.testing import arrays, assert_close, conv2d_configs


def _image_mnk(config):
    """One image's GEMM size as :class:`conv_ops._Plan` computes it."""
    kh, kw = config.geometry.kernel
    ho, wo = config.output_shape[2:]
    k = kh * kw * config.in_channels // config.groups + int(config.bias)
    return ho * wo * k * config.out_channels // config.groups


@pytest.mark.parametrize("workers", [1, 2])
@given(config=conv2d_configs(max_batch=1, max_groups=1, strategies=("im2col",)),
       images=st.integers(1, 3), data=st.data())
def test_stacked_gemms_match_reference(workers, config, images, data):
    # Several images per block: stacks of `images` images and, mostly, a remainder.
    config = dataclasses.replace(config, batch=data.draw(st.sampled_from([4, 5, 7])))
    with pytest.MonkeyPatch.context() as patch, _parallel.forced_workers(workers):
        # One block holding the whole batch, cut into GEMMs of `images` images.
        patch.setattr(conv_ops, "small_gemm_kernel", lambda: True)  # whatever BLAS runs
        patch.setattr(conv_ops, "SMALL_GEMM_MNK", _image_mnk(config) * images)
        patch.setattr(conv_ops, "BLOCK_BYTES", 1 << 40)
        patch.setattr(_parallel, "MIN_BLOCKS", 1)
        patch.setattr(_parallel, "BALANCE", 1)
        _check_against_reference(config, data)


def _check_against_reference(config, data):
    """Draw inputs for ``config``, run forward and both backward variants with the
    constants in effect, and compare with the reference loops (``dw``/``db`` without
    ``dx`` must equal those with it exactly)."""
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype, noncontiguous=True))
    y, cache = F.conv2d_forward(x, w, b, **config.functional_kwargs())
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


def test_first_layer_shape_uses_per_image_gemms():
    """The default convnet's first layer (1 -> 32 channels, 5x5, 28x28) takes the paths
    without a column matrix with the default constants (one GEMM per output row forward,
    per kernel row and image for dW), and matches a float64 direct convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((11, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 5, 5), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    dy = rng.standard_normal((11, 32, 28, 28), dtype=np.float32)
    geometry = WindowGeometry.make(5, 1, 2, 1)
    with pytest.MonkeyPatch.context() as patch:
        # As with OpenBLAS's SkylakeX kernels (see test_small_gemm_kernel_detection).
        patch.setattr(conv_ops, "small_gemm_kernel", lambda: True)
        plan = conv_ops._Plan(geometry, 1, x.shape, (28, 28), 32, x.dtype, "im2col", True)
        assert plan.transposed and plan.stack == 1
        # Forward by im2row (K = 4 * (5 + 1) + 5), weight gradient from the column planes.
        assert plan.row_gemm == 29 and plan.plane_wgrad
        patch.setattr(_parallel, "MIN_BLOCKS", 2)  # blocks of 5-6 images, 1 per GEMM
        y, cache = F.conv2d_forward(x, w, b, padding=2)
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


@pytest.mark.parametrize("workers", [1, 2])
@given(config=conv2d_configs(max_groups=1, max_channels=2, max_kernel=4, max_size=12,
                             strategies=("im2col",)), data=st.data())
def test_row_and_plane_paths_match_reference(workers, config, data):
    """With ROW_GEMM_MIN_WIDTH at 1 and no bound on the extra ones rows, the drawn shapes
    take the im2row forward and the column-plane weight gradient wherever their other
    conditions hold (vertical dilation 1 for the first, vertical stride 1 for the
    second, few channels for both)."""
    geometry = config.geometry
    out_h, out_w = config.output_shape[2:]
    with pytest.MonkeyPatch.context() as patch, _parallel.forced_workers(workers):
        patch.setattr(conv_ops, "small_gemm_kernel", lambda: True)  # whatever BLAS runs
        patch.setattr(conv_ops, "ROW_GEMM_MIN_WIDTH", 1)
        patch.setattr(conv_ops, "ROW_GEMM_MAX_EXTRA", 100.0)
        plan = conv_ops._Plan(geometry, 1, config.input_shape, (out_h, out_w),
                              config.out_channels, config.dtype, "im2col", config.bias)
        assume(plan.row_gemm or plan.plane_wgrad)
        _check_against_reference(config, data)


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


@pytest.mark.parametrize("infos, env, expected", [
    ([{"internal_api": "openblas", "architecture": "SkylakeX"}] * 2, None, True),
    ([{"internal_api": "openblas", "architecture": "SapphireRapids"}], "Haswell", True),
    ([{"internal_api": "openblas", "architecture": "Haswell"}], None, False),
    ([{"internal_api": "openblas", "architecture": "SkylakeX"},
      {"internal_api": "mkl", "architecture": "SkylakeX"}], None, False),
    # NumPy's own OpenBLAS decides; another library's BLAS (torch's MKL) does not count.
    ([{"internal_api": "mkl", "architecture": "SkylakeX", "filepath": "/x/torch/lib/mkl.so"},
      {"internal_api": "openblas", "architecture": "SkylakeX",
       "filepath": "/x/numpy.libs/libscipy_openblas64_.so"}], None, True),
    ([{"internal_api": "openblas", "architecture": "SkylakeX", "filepath": "/x/scipy.libs/o.so"},
      {"internal_api": "openblas", "architecture": "Haswell",
       "filepath": "/x/numpy.libs/libscipy_openblas64_.so"}], None, False),
    ([], None, True),               # no threadpoolctl: trust OpenBLAS's own choice ...
    ([], "Haswell", False),         # ... unless the environment forces another kernel
    ([], "skylakex", True),
])
def test_small_gemm_kernel_detection(infos, env, expected):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_parallel, "_small_gemm", None)
        patch.setattr(_parallel, "blas_info", lambda: infos)
        if env is None:
            patch.delenv("OPENBLAS_CORETYPE", raising=False)
        else:
            patch.setenv("OPENBLAS_CORETYPE", env)
        assert _parallel.small_gemm_kernel() is expected


@pytest.mark.parametrize("workers", [1, 2])
def test_first_layer_without_a_small_gemm_kernel(workers):
    """Under a BLAS kernel that packs every GEMM (e.g. OPENBLAS_CORETYPE=Haswell) the
    first layer takes one GEMM per block, and still matches the reference."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 5, 5), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    dy = rng.standard_normal((6, 32, 28, 28), dtype=np.float32)
    with pytest.MonkeyPatch.context() as patch, _parallel.forced_workers(workers):
        patch.setattr(conv_ops, "small_gemm_kernel", lambda: False)
        plan = conv_ops._Plan(WindowGeometry.make(5, 1, 2, 1), 1, x.shape, (28, 28), 32,
                              x.dtype, "im2col", True)
        assert plan.transposed and not plan.row_gemm and not plan.plane_wgrad
        assert plan.stack is None
        y, cache = F.conv2d_forward(x, w, b, padding=2)
        dx, dw, db = F.conv2d_backward(dy, cache)
    assert_close(y, ref.conv2d_forward(x, w, b, padding=2), what="y")
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x, w, dy, bias=True, padding=2)
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    assert_close(db, db_ref, what="db")
