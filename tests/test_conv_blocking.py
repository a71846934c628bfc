"""The im2col strategy's small stacked GEMMs and the two-stage transposed im2col.

A block's GEMMs are issued per group of whole images (``_Plan.stack``) when one image's
product is small (``conv.SMALL_GEMM_MNK``); the default shapes of the other tests never
reach that with more than one group per block, so here the constant is set from the
drawn shape to force 1-3 images per GEMM, with and without a remainder, in one block.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
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
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    dy = data.draw(arrays(config.output_shape, config.dtype, noncontiguous=True))
    with pytest.MonkeyPatch.context() as patch, _parallel.forced_workers(workers):
        # One block holding the whole batch, cut into GEMMs of `images` images.
        patch.setattr(conv_ops, "SMALL_GEMM_MNK", _image_mnk(config) * images)
        patch.setattr(conv_ops, "BLOCK_BYTES", 1 << 40)
        patch.setattr(_parallel, "MIN_BLOCKS", 1)
        patch.setattr(_parallel, "BALANCE", 1)
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
    """The default convnet's first layer (1 -> 32 channels, 5x5, 28x28) runs one GEMM
    per image with the default constants, and matches a float64 direct convolution."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((11, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((32, 1, 5, 5), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    dy = rng.standard_normal((11, 32, 28, 28), dtype=np.float32)
    geometry = WindowGeometry.make(5, 1, 2, 1)
    plan = conv_ops._Plan(geometry, 1, x.shape, (28, 28), 32, x.dtype, "im2col", True)
    assert plan.transposed and plan.stack == 1
    with pytest.MonkeyPatch.context() as patch:
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
