"""ConvTranspose2D (functional and layer) against the reference loops, finite differences,
the adjoint identity with Conv2D, and (when installed) torch."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from im2col_net import ConvTranspose2D
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.geometry import conv_transpose_output_size
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
)


@dataclass(frozen=True)
class TConvConfig:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple
    groups: int
    bias: bool
    dtype: np.dtype

    @property
    def input_shape(self):
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.groups) + self.kernel

    @property
    def out_size(self):
        return tuple(conv_transpose_output_size(size, k, s, 2 * p, d, op) for size, k, s, p, d, op
                     in zip((self.height, self.width), self.kernel, self.stride, self.padding,
                            self.dilation, self.output_padding, strict=True))

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def make_layer(self, seed=0):
        return ConvTranspose2D(self.in_channels, self.out_channels, self.kernel, bias=self.bias,
                               rng=seed, dtype=self.dtype, **self.kwargs())


@st.composite
def tconv_configs(draw, max_size=4, dtypes=(np.float32, np.float64)):
    groups = draw(st.integers(1, 2))
    pair = st.tuples
    kernel = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    stride = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    dilation = draw(pair(st.integers(1, 2), st.integers(1, 2)))
    padding = draw(pair(st.integers(0, 2), st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation, strict=True))
    config = TConvConfig(
        batch=draw(st.integers(1, 2)),
        in_channels=groups * draw(st.integers(1, 3)),
        out_channels=groups * draw(st.integers(1, 3)),
        height=draw(st.integers(1, max_size)),
        width=draw(st.integers(1, max_size)),
        kernel=kernel, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups, bias=draw(st.booleans()),
        dtype=np.dtype(draw(st.sampled_from(dtypes))),
    )
    assume(min(config.out_size) >= 1)
    return config


@given(config=tconv_configs(), data=st.data())
def test_layer_matches_reference(config, data):
    layer = config.make_layer(seed=data.draw(st.integers(0, 2**16)))
    assert layer.params["weight"].shape == config.weight_shape
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.shape == (config.batch, config.out_channels) + config.out_size
    assert y.dtype == dx.dtype == config.dtype
    assert set(layer.grads) == ({"weight", "bias"} if config.bias else {"weight"})


@given(config=tconv_configs(), data=st.data())
def test_functional_matches_reference(config, data):
    x = data.draw(arrays(config.input_shape, config.dtype, noncontiguous=True))
    w = data.draw(arrays(config.weight_shape, config.dtype, noncontiguous=True))
    b = data.draw(arrays((config.out_channels,), config.dtype)) if config.bias else None
    y, cache = F.conv_transpose2d_forward(x, w, b, **config.kwargs())
    assert_close(y, ref.conv_transpose2d_forward(x, w, b, **config.kwargs()), what="y")
    dy = data.draw(arrays(y.shape, config.dtype, noncontiguous=True))
    dy_before = dy.copy()
    dx, dw, db = F.conv_transpose2d_backward(dy, cache)
    np.testing.assert_array_equal(dy, dy_before, err_msg="backward modified dy")
    dx_ref, dw_ref, db_ref = ref.conv_transpose2d_backward(x, w, dy, bias=config.bias,
                                                           **config.kwargs())
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, what="dw")
    if config.bias:
        assert_close(db, db_ref, what="db")
    else:
        assert db is None
    no_dx, dw2, _ = F.conv_transpose2d_backward(dy, cache, need_input_grad=False)
    assert no_dx is None
    np.testing.assert_array_equal(dw2, dw)


@given(config=tconv_configs(max_size=3, dtypes=(np.float64,)), data=st.data())
def test_layer_passes_gradcheck(config, data):
    layer = config.make_layer(seed=data.draw(st.integers(0, 2**16)))
    x = data.draw(arrays(config.input_shape, np.float64))
    assert_passes_gradcheck(layer, x)


@given(config=tconv_configs(dtypes=(np.float64,)), data=st.data())
def test_is_the_adjoint_of_conv2d(config, data):
    # <conv_transpose(x, w), z> == <x, conv2d(z, w)> for the same weight array and
    # geometry, as long as conv2d maps z back to x's size (output_padding < stride).
    assume(all(op < s for op, s in zip(config.output_padding, config.stride, strict=True)))
    x = data.draw(arrays(config.input_shape, np.float64))
    w = data.draw(arrays(config.weight_shape, np.float64))
    y, _ = F.conv_transpose2d_forward(x, w, **config.kwargs())
    z = data.draw(arrays(y.shape, np.float64))
    conv_z, _ = F.conv2d_forward(z, w, stride=config.stride, padding=config.padding,
                                 dilation=config.dilation, groups=config.groups)
    assert conv_z.shape == x.shape
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * conv_z), rtol=1e-10, atol=1e-10)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = ConvTranspose2D(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                            groups=2, dilation=(1, 2), rng=0, dtype=np.float64)
    layer.params["bias"][...] = rng.uniform(-1, 1, 6)
    tlayer = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                      output_padding=(1, 2), groups=2, dilation=(1, 2)).double()
    assert tuple(tlayer.weight.shape) == layer.params["weight"].shape
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(layer.params["weight"]))
        tlayer.bias.copy_(torch.from_numpy(layer.params["bias"]))
    x = rng.standard_normal((2, 4, 5, 3))
    xt = torch.tensor(x, requires_grad=True)
    yt = tlayer(xt)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], tlayer.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], tlayer.bias.grad.numpy(), rtol=1e-12)


def test_float32_stays_float32_and_config_round_trips():
    layer = ConvTranspose2D(3, 4, 3, stride=2, padding=1, output_padding=1)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, 4, 10, 10) and y.dtype == np.float32
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == layer.grads["weight"].dtype == layer.grads["bias"].dtype == np.float32
    assert layer.output_size(5, 5) == (10, 10)
    clone = ConvTranspose2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.params["weight"].shape == (3, 4, 3, 3)
    layer.compute_input_grad = False
    layer(x)
    assert layer.backward(np.ones_like(y)) is None


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "divisible by groups"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, output_padding=2),
     "output_padding must be smaller than stride or dilation"),
    (dict(in_channels=2, out_channels=2, kernel_size=3, padding_mode="reflect"),
     "only padding_mode='zeros'"),
    (dict(in_channels=0, out_channels=2, kernel_size=3), "in_channels must be a positive int"),
    (dict(in_channels=2, out_channels=2, kernel_size=0), "kernel_size must be >= 1"),
    (dict(in_channels=2, out_channels=2, kernel_size=1, dtype=np.int64), "floating-point dtype"),
    (dict(in_channels=2, out_channels=2, kernel_size=1, rng="seed"), "rng must be"),
])
def test_bad_constructor_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        ConvTranspose2D(**kwargs)
    assert "ConvTranspose2D" in str(info.value)


def test_bad_inputs_name_the_layer():
    layer = ConvTranspose2D(2, 3, 3, padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2D.*\(N, 2, H, W\).*\(1, 3, 4, 4\)"):
        layer(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="output size -1x0 is not positive"):
        layer(np.zeros((1, 2, 1, 2), np.float32))
    with pytest.raises(ValueError, match="does not match parameter dtype"):
        layer(np.zeros((1, 2, 4, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="weight must have shape"):
        F.conv_transpose2d_forward(np.zeros((1, 2, 3, 3)), np.zeros((2, 3, 3)))
