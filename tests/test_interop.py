"""PyTorch state_dict interoperability. The key/shape/round-trip tests need no torch; the
equivalence tests build the same network in both frameworks and skip without torch."""

import numpy as np
import pytest

from im2col_net import (
    ELU,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    MaxPool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Tanh,
)
from im2col_net.interop import load_torch_state_dict, to_torch_state_dict, torch_state_keys
from im2col_net.models import build_model


def mixed_net(rng=0, dtype=np.float64):
    """Conv, BatchNorm, a projection residual, an Inception-style Parallel, ConvTranspose."""
    return Sequential(
        Conv2D(2, 4, 3, padding=1, rng=rng, dtype=dtype),
        BatchNorm2D(4, dtype=dtype),
        ReLU(),
        Residual(
            Sequential(Conv2D(4, 6, 3, stride=2, padding=1, bias=False, rng=rng, dtype=dtype),
                       BatchNorm2D(6, dtype=dtype), ELU(0.5)),
            Sequential(Conv2D(4, 6, 1, stride=2, bias=False, rng=rng, dtype=dtype),
                       BatchNorm2D(6, momentum=None, dtype=dtype)),
        ),
        Parallel(Conv2D(6, 2, 1, rng=rng, dtype=dtype),
                 Sequential(MaxPool2D(3, stride=1, padding=1),
                            Conv2D(6, 3, 3, padding=1, groups=3, rng=rng, dtype=dtype))),
        ConvTranspose2D(5, 4, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype=dtype),
        BatchNorm2D(4, affine=False, dtype=dtype),
        Tanh(),
        GlobalAvgPool2D(),
        Flatten(),
        Linear(4, 5, rng=rng, dtype=dtype),
        BatchNorm1D(5, dtype=dtype),
    )


def randomize(model, seed):
    """Non-trivial values everywhere (biases, BN affine and running statistics)."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p[...] = rng.uniform(-0.5, 0.5, p.shape)
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 2.0, b.shape)
        elif name.endswith("running_mean"):
            b[...] = rng.uniform(-0.5, 0.5, b.shape)
        else:
            b[...] = rng.integers(0, 5)
    return model


def test_keys_order_and_dtypes():
    state = to_torch_state_dict(mixed_net())
    keys = list(state)
    assert keys == torch_state_keys(mixed_net())
    assert keys[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked"]
    assert "3.0.0.weight" in keys and "3.1.1.running_var" in keys and "3.0.0.bias" not in keys
    assert "4.1.1.weight" in keys and "5.weight" in keys
    assert "6.weight" not in keys and "6.running_mean" in keys  # affine=False
    assert state["5.weight"].shape == (5, 4, 3, 3)  # ConvTranspose2D: (in, out/groups, kh, kw)
    assert state["1.num_batches_tracked"].dtype == np.int64
    assert state["1.num_batches_tracked"].shape == ()
    assert state["0.weight"].dtype == np.float64


def test_export_copies_and_round_trip():
    source = randomize(mixed_net(rng=0), seed=1)
    state = to_torch_state_dict(source)
    state["0.weight"][...] = 0  # a copy: the model is unaffected
    assert np.any(source.params["0.weight"] != 0)
    target = mixed_net(rng=5)
    load_torch_state_dict(target, to_torch_state_dict(source))
    for (name, a), (_, b) in zip(source.named_parameters(), target.named_parameters(),
                                 strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for (name, a), (_, b) in zip(source.named_buffers(), target.named_buffers(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    x = np.random.default_rng(2).standard_normal((3, 2, 6, 6))
    source.eval()
    target.eval()
    np.testing.assert_array_equal(source(x), target(x))


def test_float64_state_fills_a_float32_model():
    source = randomize(mixed_net(rng=0), seed=3)
    target = mixed_net(rng=0, dtype=np.float32)
    load_torch_state_dict(target, to_torch_state_dict(source))
    assert target.params["0.weight"].dtype == np.float32
    np.testing.assert_allclose(target.params["0.weight"], source.params["0.weight"], rtol=1e-6)


def test_flipped_kernels_are_rotated_for_torch():
    conv = Conv2D(1, 2, 3, flip_kernel=True, rng=0)
    state = to_torch_state_dict(Sequential(conv))
    np.testing.assert_array_equal(state["0.weight"], conv.params["weight"][:, :, ::-1, ::-1])
    other = Sequential(Conv2D(1, 2, 3, flip_kernel=True, rng=1))
    load_torch_state_dict(other, state)
    np.testing.assert_array_equal(other[0].params["weight"], conv.params["weight"])


def test_strict_key_checking_and_atomic_failure():
    model = mixed_net()
    before = to_torch_state_dict(model)
    state = to_torch_state_dict(randomize(mixed_net(), seed=4))
    del state["1.running_var"]
    state["extra.weight"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['1.running_var'\], unexpected "
                                         r"\['extra.weight'\]"):
        load_torch_state_dict(model, state)
    load_torch_state_dict(model, state, strict=False)
    after = to_torch_state_dict(model)
    np.testing.assert_array_equal(after["1.running_var"], before["1.running_var"])
    np.testing.assert_array_equal(after["0.weight"], state["0.weight"])

    model = mixed_net()
    bad = to_torch_state_dict(randomize(mixed_net(), seed=5))
    bad["10.weight"] = np.zeros((4, 5))  # the last entry with a wrong shape
    with pytest.raises(ValueError, match=r"'10.weight' expects shape \(5, 4\), got \(4, 5\)"):
        load_torch_state_dict(model, bad)
    for key, value in to_torch_state_dict(model).items():  # nothing was copied
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    bad = to_torch_state_dict(model)
    bad["1.num_batches_tracked"] = np.array(1.5)
    with pytest.raises(ValueError, match="cannot be cast"):
        load_torch_state_dict(model, bad)
    with pytest.raises(ValueError, match="expected a mapping"):
        load_torch_state_dict(model, [1, 2])


# -- against torch ------------------------------------------------------------------------


def torch_module(torch):
    nn = torch.nn

    class TorchParallel(nn.ModuleList):
        def forward(self, x):
            return torch.cat([branch(x) for branch in self], dim=1)

    class TorchResidual(nn.ModuleList):
        def forward(self, x):
            return self[0](x) + (self[1](x) if len(self) > 1 else x)

    return nn, TorchParallel, TorchResidual


def torch_mixed_net(torch):
    nn, TorchParallel, TorchResidual = torch_module(torch)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        TorchResidual([
            nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6),
                          nn.ELU(0.5)),
            nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False),
                          nn.BatchNorm2d(6, momentum=None)),
        ]),
        TorchParallel([nn.Conv2d(6, 2, 1),
                       nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     nn.Conv2d(6, 3, 3, padding=1, groups=3))]),
        nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(4, affine=False),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
        nn.BatchNorm1d(5),
    ).double()


def torch_convnet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 10),
    )


def assert_near(actual, desired, tol, what):
    """Element-wise within ``tol`` relative to the element or to the array's largest
    magnitude (sums of many terms cancel to small values in float32)."""
    desired = np.asarray(desired)
    assert actual.dtype == desired.dtype, what
    scale = max(1.0, float(np.abs(desired).max()))
    np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol * scale, err_msg=what)


def compare_step(torch, ours, theirs, x, tol):
    """One forward and backward in both; outputs, input and parameter gradients agree."""
    rng = np.random.default_rng(0)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    y = ours.forward(x)
    assert_near(y, yt.detach().numpy(), tol, "output")
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(dy))
    dx = ours.backward(dy)
    assert_near(dx, xt.grad.numpy(), tol, "dx")
    torch_grads = {name: p.grad.numpy() for name, p in theirs.named_parameters()}
    assert set(torch_grads) == set(ours.grads)
    for name, grad in ours.grads.items():
        assert_near(grad, torch_grads[name], tol, name)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_convnet_matches_torch(dtype, tol):
    torch = pytest.importorskip("torch")
    ours = build_model("convnet", rng=0, dtype=dtype)
    randomize(ours, seed=6)
    theirs = torch_convnet(torch).to(torch.float32 if dtype == np.float32 else torch.float64)
    assert list(theirs.state_dict()) == torch_state_keys(ours)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(ours).items()})
    x = np.random.default_rng(7).standard_normal((2, 1, 28, 28)).astype(dtype)
    compare_step(torch, ours, theirs, x, tol)


def test_batchnorm_residual_conv_transpose_net_matches_torch():
    torch = pytest.importorskip("torch")
    ours = randomize(mixed_net(rng=0), seed=8)
    theirs = torch_mixed_net(torch)
    assert list(theirs.state_dict()) == list(to_torch_state_dict(ours))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(ours).items()})
    rng = np.random.default_rng(9)
    for _ in range(3):  # training steps: batch statistics, running-stat momentum
        x = rng.standard_normal((4, 2, 6, 6)) * 2 + 1
        for p in theirs.parameters():
            p.grad = None
        compare_step(torch, ours, theirs, x, 1e-9)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(to_torch_state_dict(ours)[key], value.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=key)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 2, 6, 6))
    for p in theirs.parameters():
        p.grad = None
    compare_step(torch, ours, theirs, x, 1e-9)


def test_loading_a_torch_state_dict_of_tensors():
    torch = pytest.importorskip("torch")
    theirs = torch_mixed_net(torch)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    theirs(x)  # move the running statistics away from their initial values
    theirs.eval()
    ours = load_torch_state_dict(mixed_net(rng=3), theirs.state_dict())
    ours.eval()
    np.testing.assert_allclose(ours(x.numpy()), theirs(x).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    assert int(ours[1].buffers["num_batches_tracked"]) == 1
