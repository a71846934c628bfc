"""The torch.nn parity activations (ReLU6, PReLU, SELU, GELU, SiLU, Hardswish, Hardsigmoid,
Softplus), Dropout2D, Identity and Softmax/LogSoftmax over any dim: against the reference
loops, finite differences and PyTorch; configs, model.npz, summary, dtypes, errors."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import (
    GELU,
    SELU,
    Dropout2D,
    Hardsigmoid,
    Hardswish,
    Identity,
    Linear,
    PReLU,
    ReLU6,
    Sequential,
    SiLU,
    Softplus,
    load_model,
    save_model,
)
from im2col_net import reference as ref
from im2col_net.app.cli import main
from im2col_net.functional import activations as A
from im2col_net.interop import load_torch_state_dict, to_torch_state_dict
from im2col_net.layers import LogSoftmax, Softmax
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    reference_pair,
)

DTYPES = st.sampled_from([np.float32, np.float64])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)
image_shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
                         st.integers(1, 3))

# Every parameter-free activation with a spread of options.
POINTWISE = [
    ("relu6", ReLU6),
    ("hardsigmoid", Hardsigmoid),
    ("hardswish", Hardswish),
    ("selu", SELU),
    ("silu", SiLU),
    ("gelu-none", lambda: GELU()),
    ("gelu-tanh", lambda: GELU("tanh")),
    ("softplus", lambda: Softplus()),
    ("softplus-b2-t1", lambda: Softplus(beta=2.0, threshold=1.0)),
    ("softplus-b0.5-t5", lambda: Softplus(beta=0.5, threshold=5.0)),
    ("softplus-neg-beta", lambda: Softplus(beta=-1.5, threshold=3.0)),
]
POINTWISE_IDS = [name for name, _ in POINTWISE]
KINKS = {"relu6": (0.0, 6.0), "hardsigmoid": (-3.0, 3.0), "hardswish": (-3.0, 3.0),
         "selu": (0.0,)}


def build(make):
    return make()


def off_kinks(x, kinks, margin=1e-3):
    """``x`` with every element within ``margin`` of a kink pushed ``2 * margin`` away."""
    x = np.array(x, dtype=np.float64)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + 2 * margin * np.where(x[near] >= k, 1.0, -1.0)
    return x


# ---- reference and finite differences -------------------------------------------------


@pytest.mark.parametrize("name,make", POINTWISE, ids=POINTWISE_IDS)
@given(shape=shapes, dtype=DTYPES, data=st.data())
def test_pointwise_layer_matches_reference(name, make, shape, dtype, data):
    layer = build(make)
    # scale 8 reaches past every kink (-3, 0, 3, 6) and the softplus thresholds; the
    # "integers" kind lands exactly on them.
    x = data.draw(arrays(shape, dtype, scale=8.0, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dx.dtype == np.dtype(dtype)


@pytest.mark.parametrize("name,make", POINTWISE, ids=POINTWISE_IDS)
@given(shape=shapes, data=st.data())
def test_pointwise_passes_gradcheck(name, make, shape, data):
    x = data.draw(arrays(shape, np.float64, scale=8.0, kinds=("uniform", "normal")))
    x = off_kinks(x, KINKS.get(name.split("-")[0], ()))
    layer = build(make)
    if isinstance(layer, Softplus):
        # The switch to the identity at beta * x = threshold is a (tiny) jump.
        x = off_kinks(x, (layer.threshold / layer.beta,))
    assert_passes_gradcheck(layer, x)


@given(shape=image_shapes, dtype=DTYPES, per_channel=st.booleans(), data=st.data())
def test_prelu_matches_reference(shape, dtype, per_channel, data):
    layer = PReLU(shape[1] if per_channel else 1, init=0.1, dtype=dtype)
    layer.params["weight"][...] = data.draw(arrays((layer.num_parameters,), dtype))
    x = data.draw(arrays(shape, dtype, scale=2.0, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dx.dtype == layer.grads["weight"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5), (2, 3, 5)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_passes_gradcheck(shape, per_channel):
    rng = np.random.default_rng(1)
    layer = PReLU(shape[1] if per_channel else 1, dtype=np.float64)
    layer.params["weight"][...] = rng.uniform(-1, 1, layer.num_parameters)
    x = off_kinks(rng.standard_normal(shape), (0.0,))
    report = assert_passes_gradcheck(layer, x)
    assert report.names == ["input 0", "weight"]


@given(shape=image_shapes, dtype=DTYPES, p=st.sampled_from([0.0, 0.3, 0.7]),
       training=st.booleans(), seed=st.integers(0, 100), data=st.data())
def test_dropout2d_matches_reference(shape, dtype, p, training, seed, data):
    layer = Dropout2D(p, rng=seed)
    layer.train(training)
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    pair = reference_pair(layer)
    y, dx = assert_layer_matches_reference(layer, *pair, x)
    assert y.dtype == dx.dtype == np.dtype(dtype)
    # Whole planes: each (n, c) plane is either all zero or x / (1 - p).
    scale = 1 / (1 - p) if training else 1.0
    kept = np.isclose(y, x * scale).all(axis=(2, 3))
    dropped = (y == 0).all(axis=(2, 3))
    assert (kept | dropped).all()


def test_dropout2d_statistics_and_rng_like_dropout():
    x = np.ones((200, 50, 2, 2), np.float32)
    layer = Dropout2D(0.3, rng=5)
    y = layer.forward(x)
    planes = y[:, :, 0, 0]
    assert 0.27 < (planes == 0).mean() < 0.33
    np.testing.assert_allclose(planes[planes != 0], 1 / 0.7, rtol=1e-6)
    # Same seed, same masks; the generator is the attribute the trainer checkpoints.
    again = Dropout2D(0.3, rng=5)
    np.testing.assert_array_equal(again.forward(x), y)
    assert isinstance(layer.rng, np.random.Generator)
    layer.eval()
    assert layer.forward(x) is x or np.array_equal(layer.forward(x), x)


def test_dropout2d_and_identity_pass_gradcheck():
    x = np.random.default_rng(2).standard_normal((2, 4, 3, 3))
    assert_passes_gradcheck(Dropout2D(0.5, rng=3), x)
    assert_passes_gradcheck(Dropout2D(0.5, rng=3).eval(), x)
    assert_passes_gradcheck(Identity(), x)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), dtype=DTYPES,
       log=st.booleans(), data=st.data())
def test_softmax_any_dim_matches_reference(shape, dtype, log, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    layer = (LogSoftmax if log else Softmax)(dim=dim)
    x = data.draw(arrays(shape, dtype, scale=5.0, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dx.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("cls", [Softmax, LogSoftmax])
def test_softmax_dim_passes_gradcheck(cls, dim):
    x = np.random.default_rng(3).standard_normal((2, 3, 4)) * 2
    assert_passes_gradcheck(cls(dim=dim), x)


@given(shape=shapes, name=st.sampled_from(["relu6", "hardsigmoid", "hardswish", "selu", "silu",
                                           "gelu", "softplus"]), data=st.data())
def test_functional_float32_stays_float32(shape, name, data):
    x = data.draw(arrays(shape, np.float32, scale=8.0))
    op = {"relu6": A.relu6_forward, "hardsigmoid": A.hardsigmoid_forward,
          "hardswish": A.hardswish_forward, "selu": A.selu_forward, "silu": A.silu_forward,
          "gelu": A.gelu_forward, "softplus": A.softplus_forward}[name]
    y, slope = op(x)
    assert y.dtype == slope.dtype == np.float32
    assert_close(y, ref.activation_forward(name, x), what=name)


def test_kink_values_are_torchs():
    # Measured on torch 2.13: the gradient at each kink (see the layer docstrings).
    x = np.array([-3.0, 0.0, 3.0, 6.0])
    one = np.ones(4)
    cases = [(ReLU6(), [0, 0, 1, 0]), (Hardsigmoid(), [0, 1 / 6, 0, 0]),
             (Hardswish(), [0, 0.5, 1, 1]),
             (SELU(), [None, A.SELU_SCALE * A.SELU_ALPHA, A.SELU_SCALE, A.SELU_SCALE]),
             (PReLU(dtype=np.float64), [0.25, 0.25, 1, 1])]
    for layer, expected in cases:
        layer.forward(x)
        dx = layer.backward(one)
        for got, want in zip(dx, expected, strict=True):
            if want is not None:
                assert got == pytest.approx(want, rel=1e-15), layer


def test_extreme_inputs_stay_finite():
    x = np.array([-1e30, -1e4, -90.0, 0.0, 90.0, 1e4, 1e30], np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise"):
        warnings.simplefilter("error")
        for layer in [SELU(), SiLU(), GELU(), Softplus(), Softplus(beta=1.0, threshold=1e6),
                      Hardswish(), Hardsigmoid(), ReLU6()]:
            y = layer.forward(x)
            dx = layer.backward(np.ones_like(x))
            assert np.isfinite(dx).all(), layer
            assert np.isfinite(y[1:-1]).all(), layer
    # Softplus with a huge threshold is still right where torch's formula overflows.
    assert Softplus(threshold=1e6).forward(np.array([1e4], np.float32))[0] == 1e4


def test_nan_stays_local():
    x = np.array([[np.nan, 1.0], [0.5, -2.0]])
    for layer in [ReLU6(), SELU(), GELU(), SiLU(), Hardswish(), Hardsigmoid(), Softplus(),
                  PReLU(dtype=np.float64)]:
        y = layer.forward(x)
        assert np.isnan(y[0, 0]) and np.isfinite(y.ravel()[1:]).all(), layer


# ---- PyTorch cross-checks ---------------------------------------------------------------


def torch_module(torch, name):
    nn = torch.nn
    return {
        "relu6": nn.ReLU6(), "hardsigmoid": nn.Hardsigmoid(), "hardswish": nn.Hardswish(),
        "selu": nn.SELU(), "silu": nn.SiLU(), "gelu-none": nn.GELU(),
        "gelu-tanh": nn.GELU(approximate="tanh"), "softplus": nn.Softplus(),
        "softplus-b2-t1": nn.Softplus(beta=2.0, threshold=1.0),
        "softplus-b0.5-t5": nn.Softplus(beta=0.5, threshold=5.0),
        "softplus-neg-beta": nn.Softplus(beta=-1.5, threshold=3.0),
    }[name]


def torch_inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-8, 8, (2, 3, 4, 5))
    # Exactly on every kink and threshold, and far out.
    x.flat[:14] = [-3, 0, 3, 6, 20, 0.5, 10, -1 / 1.5 * 3, 2, -20, 30, -30, 1e3, -1e3]
    return x.astype(dtype)


def torch_tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,make", POINTWISE, ids=POINTWISE_IDS)
def test_pointwise_matches_torch(name, make, dtype):
    torch = pytest.importorskip("torch")
    x = torch_inputs(dtype)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    layer = build(make)
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_module(torch, name)(xt)
    yt.backward(torch.tensor(dy))
    tol = torch_tolerance(dtype)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    expected = xt.grad.numpy()
    if name == "hardsigmoid" and dtype == np.float64:
        # torch's float64 backward multiplies by the float32 value of 1/6 (a 3e-8 relative
        # difference); here the slope is the exact 1/6.
        tol = dict(rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(dx, expected, **tol)
    assert y.dtype == dx.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,per_channel", [((4, 3), False), ((4, 3), True),
                                               ((2, 3, 4, 5), False), ((2, 3, 4, 5), True),
                                               ((2, 3, 6), True), ((5,), False)])
def test_prelu_matches_torch_and_maps_its_state_dict(shape, per_channel, dtype):
    torch = pytest.importorskip("torch")
    channels = shape[1] if per_channel else 1
    module = torch.nn.PReLU(channels, init=0.25).to(torch.float64 if dtype == np.float64
                                                     else torch.float32)
    with torch.no_grad():
        module.weight.uniform_(-1, 1)
    layer = PReLU(channels, dtype=dtype)
    load_torch_state_dict(layer, module.state_dict())
    assert set(to_torch_state_dict(layer)) == set(module.state_dict()) == {"weight"}
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0  # the kink: both take the negative branch
    dy = rng.standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(dy))
    tol = torch_tolerance(dtype)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads["weight"], module.weight.grad.numpy(),
                               **(tol if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)))


def test_prelu_default_init_matches_torch():
    torch = pytest.importorskip("torch")
    for n in (1, 4):
        np.testing.assert_array_equal(PReLU(n).params["weight"],
                                      torch.nn.PReLU(n).weight.detach().numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_dim_matches_torch(dim, log, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 3, 4, 5)) * 4).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = (LogSoftmax if log else Softmax)(dim=dim)
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = (torch.log_softmax if log else torch.softmax)(xt, dim=dim)
    yt.backward(torch.tensor(dy))
    tol = torch_tolerance(dtype)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


def test_dropout2d_eval_and_identity_match_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(Dropout2D(0.4).eval().forward(x),
                                  torch.nn.Dropout2d(0.4).eval()(torch.tensor(x)).numpy())
    np.testing.assert_array_equal(Identity().forward(x), torch.nn.Identity()(torch.tensor(x)))
    # Training: the same zero-whole-planes-and-rescale structure as torch's.
    y = torch.nn.Dropout2d(0.5)(torch.ones(50, 8, 2, 2)).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and (y == y[:, :, :1, :1]).all()


# ---- configs, files, summary, errors ----------------------------------------------------


def all_layers():
    return [ReLU6(), Hardsigmoid(), Hardswish(), SELU(), SiLU(), GELU("tanh"),
            Softplus(beta=2.0, threshold=3.0), PReLU(3, init=0.1), Dropout2D(0.2, rng=1),
            Identity(), Softmax(dim=-1), LogSoftmax(dim=2)]


def test_model_npz_round_trip(tmp_path):
    model = Sequential(*all_layers())
    model.layers[7].params["weight"][...] = [0.1, -0.2, 0.3]
    model.eval()
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert [repr(a) for a in loaded.layers] == [repr(b) for b in model.layers]
    np.testing.assert_array_equal(loaded.layers[7].params["weight"],
                                  np.array([0.1, -0.2, 0.3], np.float32))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_configs_round_trip():
    for layer in all_layers():
        again = type(layer).from_config(layer.get_config())
        assert repr(again) == repr(layer)
    assert Softmax().dim == LogSoftmax().dim == 1


def test_summary_rows():
    model = Sequential(PReLU(3), ReLU6(), GELU(), Dropout2D(0.1), Identity(), Softmax(dim=1))
    s = model.summary((3, 4, 4), batch_size=2)
    assert [r.output_shape for r in s.rows] == [(2, 3, 4, 4)] * 6
    assert [r.params for r in s.rows] == [3, 0, 0, 0, 0, 0]
    assert s.rows[0].flops == s.rows[1].flops == 2 * 3 * 16


def test_float64_model_and_astype():
    model = Sequential(Linear(4, 3, dtype=np.float64), PReLU(3, dtype=np.float64), SELU())
    x = np.random.default_rng(0).standard_normal((2, 4))
    assert model.forward(x).dtype == np.float64
    model.astype(np.float32)
    assert model.forward(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="dtype float64 does not match parameter dtype float32"):
        model.forward(x)


@pytest.mark.parametrize("make,message", [
    (lambda: GELU("erf"), "GELU: approximate must be 'none' or 'tanh', got 'erf'"),
    (lambda: GELU(None), "GELU: approximate must be"),
    (lambda: Softplus(beta=0), "Softplus: beta must be non-zero"),
    (lambda: Softplus(threshold=float("nan")), "Softplus: threshold must be finite"),
    (lambda: Softplus(beta="1"), "Softplus: beta must be a real number"),
    (lambda: PReLU(0), "PReLU: num_parameters must be a positive int"),
    (lambda: PReLU(2.0), "PReLU: num_parameters must be a positive int"),
    (lambda: PReLU(init=float("inf")), "PReLU: init must be finite"),
    (lambda: PReLU(dtype=np.int32), "PReLU: dtype must be a floating-point dtype"),
    (lambda: Dropout2D(1.0), r"Dropout2D: p must be in \[0, 1\), got 1.0"),
    (lambda: Dropout2D(-0.1), r"Dropout2D: p must be in \[0, 1\)"),
    (lambda: Dropout2D(0.5, rng="x"), "Dropout2D.*rng must be"),
    (lambda: Softmax(dim=None), "Softmax: dim must be an int.*dim=None is not supported"),
    (lambda: LogSoftmax(dim=1.0), "LogSoftmax: dim must be an int"),
])
def test_bad_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"PReLU.*num_parameters=3 needs an input with 3 "
                                         r"channels on axis 1, got shape \(2, 4\)"):
        PReLU(3).forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"needs an input with 3 channels.*\(3,\)"):
        PReLU(3).output_shape((3,))
    with pytest.raises(ValueError, match=r"Dropout2D.*expected a 4-D input, got shape "
                                         r"\(2, 3, 4\)"):
        Dropout2D().forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"Softmax\(dim=2\): dim 2 is out of range for a "
                                         r"2-D input"):
        Softmax(dim=2).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="dim -3 is out of range"):
        LogSoftmax(dim=-3).output_shape((2, 3))
    with pytest.raises(ValueError, match="ReLU6.*real floating-point input"):
        ReLU6().forward(np.zeros(3, np.int64))
    layer = GELU()
    layer.forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"GELU.*backward expected dy of shape \(2, 3\)"):
        layer.backward(np.zeros((3, 2), np.float32))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        Identity().backward(np.zeros(2))


def test_gradcheck_cli_lists_every_new_layer(capsys):
    names = ["relu6", "hardsigmoid", "hardswish", "selu", "silu", "gelu", "softplus", "prelu",
             "dropout2d", "identity"]
    for name in names:
        assert main(["gradcheck", name, "--dtype", "float64", "--size", "3", "--batch",
                     "1"]) == 0, name
    assert main(["gradcheck", "prelu", "--per-channel", "--size", "3"]) == 0
    assert main(["gradcheck", "gelu", "--approximate", "tanh", "--size", "3"]) == 0
    assert main(["gradcheck", "softplus", "--beta", "2", "--threshold", "1", "--size",
                 "3"]) == 0
    out = capsys.readouterr().out
    assert "PReLU(num_parameters=3" in out and "weight" in out


def test_dropout2d_generator_is_checkpointed_like_dropout():
    from im2col_net.training.checkpoint import layer_rng_states, set_layer_rng_states

    model = Sequential(PReLU(2), Dropout2D(0.5, rng=3))
    states = layer_rng_states(model)
    assert list(states) == ["1"]
    x = np.ones((4, 2, 2, 2), np.float32)
    first = model.forward(x)
    set_layer_rng_states(model, states)
    np.testing.assert_array_equal(model.forward(x), first)  # the same mask again


def test_prelu_in_a_network_maps_to_torch_state_dict():
    torch = pytest.importorskip("torch")
    from im2col_net import Conv2D

    ours = Sequential(Conv2D(2, 3, 3, rng=0), PReLU(3), Dropout2D(0.2), Identity(), SELU())
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.PReLU(3),
                                 torch.nn.Dropout2d(0.2), torch.nn.Identity(), torch.nn.SELU())
    with torch.no_grad():
        theirs[1].weight.uniform_(-1, 1)
    load_torch_state_dict(ours, theirs.state_dict())
    assert list(to_torch_state_dict(ours)) == list(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_float16_stays_float16():
    x = np.linspace(-5, 7, 24).reshape(2, 3, 2, 2).astype(np.float16)
    for layer in [ReLU6(), Hardsigmoid(), Hardswish(), SELU(), SiLU(), GELU(), GELU("tanh"),
                  Softplus(), Dropout2D(0.5), Identity(), Softmax(), LogSoftmax(),
                  PReLU(3, dtype=np.float16)]:
        y = layer.forward(x)
        assert y.dtype == layer.backward(np.ones_like(y)).dtype == np.float16, layer
