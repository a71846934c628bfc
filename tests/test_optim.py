"""Optimizers: closed-form updates, agreement with torch.optim, convergence, dtype, state."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from im2col_net import Linear, Sequential, SoftmaxCrossEntropy, runtime
from im2col_net.optim import (
    OPTIMIZERS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    make_optimizer,
    optimizer_from_config,
    optimizers,
)

# (registry name, constructor kwargs) covering every option of every optimizer.
CONFIGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("sgd", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("adagrad", dict()),
    ("adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("rmsprop", dict()),
    ("rmsprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.7)),
    ("rmsprop", dict(lr=0.01, centered=True)),
    ("rmsprop", dict(lr=0.01, alpha=0.95, centered=True, momentum=0.5, weight_decay=0.02)),
    ("adadelta", dict()),
    ("adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("adam", dict()),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    ("adamw", dict()),
    ("adamw", dict(lr=0.01, weight_decay=0.3, amsgrad=True, betas=(0.5, 0.9))),
]
CONFIG_IDS = [f"{name}-{'-'.join(sorted(kw)) or 'defaults'}" for name, kw in CONFIGS]


def make_problem(dtype=np.float64, seed=0, steps=5):
    """Two named parameters and a fixed sequence of gradients."""
    rng = np.random.default_rng(seed)
    params = {
        "0.weight": rng.standard_normal((3, 4)).astype(dtype),
        "0.bias": rng.standard_normal(5).astype(dtype),
    }
    grads = [
        {name: rng.standard_normal(p.shape).astype(dtype) for name, p in params.items()}
        for _ in range(steps)
    ]
    return params, grads


def run(name, kwargs, params, grads):
    opt = make_optimizer(name, params, **kwargs)
    for g in grads:
        opt.step(g)
    return opt


# -- closed-form updates, first two steps worked out by hand --------------------------
def test_sgd_plain_two_steps():
    p = np.array([1.0, -2.0])
    opt = SGD({"w": p}, lr=0.1)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.95, -1.9], rtol=1e-15)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(p, [0.925, -2.1], rtol=1e-15)


def test_sgd_momentum_two_steps():
    # b1 = g1; b2 = 0.9 * g1 + g2 = [0.7, 1.1].
    p = np.array([1.0, -2.0])
    opt = SGD({"w": p}, lr=0.1, momentum=0.9)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.95, -1.9], rtol=1e-15)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(p, [0.88, -2.01], rtol=1e-14)


def test_sgd_dampening_and_weight_decay_two_steps():
    # d1 = g1 + 0.1 * p0 = [0.6, -1.2]; b1 = d1; p1 = p0 - 0.1 * b1 = [0.94, -1.88].
    # d2 = g2 + 0.1 * p1 = [0.344, 1.812]; b2 = 0.9 * b1 + 0.5 * d2 = [0.712, -0.174].
    p = np.array([1.0, -2.0])
    opt = SGD({"w": p}, lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.94, -1.88], rtol=1e-14)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(p, [0.94 - 0.0712, -1.88 + 0.0174], rtol=1e-14)


def test_sgd_nesterov_two_steps():
    # step 1: b = g1, update g1 + 0.9 * g1 = 1.9 * g1.
    # step 2: b = 0.9 * g1 + g2 = [0.7, 1.1]; update g2 + 0.9 * b = [0.88, 2.99].
    p = np.array([1.0, -2.0])
    opt = SGD({"w": p}, lr=0.1, momentum=0.9, nesterov=True)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.905, -1.81], rtol=1e-14)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(p, [0.817, -2.109], rtol=1e-14)


def test_adagrad_two_steps():
    # s1 = g1^2 -> update lr * sign(g1); s2 = g1^2 + g2^2 = [0.3125, 5].
    p = np.array([1.0, -2.0])
    opt = Adagrad({"w": p}, lr=0.1, eps=0.0)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-15)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(
        p, [0.9 - 0.1 * 0.25 / math.sqrt(0.3125), -1.9 - 0.1 * 2.0 / math.sqrt(5.0)], rtol=1e-14
    )


def test_adagrad_lr_decay_and_initial_accumulator():
    # s0 = 1; step 1: s = 1 + 0.25, clr = 0.1; step 2: s = 1.25 + 0.0625, clr = 0.1 / 1.5.
    p = np.array([1.0])
    opt = Adagrad({"w": p}, lr=0.1, lr_decay=0.5, initial_accumulator_value=1.0, eps=0.0)
    opt.step({"w": np.array([0.5])})
    expected = 1.0 - 0.1 * 0.5 / math.sqrt(1.25)
    np.testing.assert_allclose(p, [expected], rtol=1e-15)
    opt.step({"w": np.array([0.25])})
    expected -= (0.1 / 1.5) * 0.25 / math.sqrt(1.3125)
    np.testing.assert_allclose(p, [expected], rtol=1e-14)


def test_rmsprop_two_steps():
    # v1 = 0.5 g1^2; v2 = 0.5 v1 + 0.5 g2^2.
    p = np.array([1.0, -2.0])
    opt = RMSprop({"w": p}, lr=0.1, alpha=0.5, eps=0.0)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [1.0 - 0.1 * math.sqrt(2.0), -2.0 + 0.1 * math.sqrt(2.0)],
                               rtol=1e-14)
    v2 = np.array([0.25 * 0.25 + 0.5 * 0.0625, 0.25 * 1.0 + 0.5 * 4.0])
    expected = np.array([1.0 - 0.1 * math.sqrt(2.0), -2.0 + 0.1 * math.sqrt(2.0)])
    expected -= 0.1 * np.array([0.25, 2.0]) / np.sqrt(v2)
    opt.step({"w": np.array([0.25, 2.0])})
    np.testing.assert_allclose(p, expected, rtol=1e-14)


def test_rmsprop_centered_momentum_two_steps():
    # alpha 0.5: v1 = 0.125, m1 = 0.25, d1 = sqrt(0.125 - 0.0625) = 0.25; b1 = 2;
    # v2 = 0.0625 + 0.5 * 0.0625 = 0.09375, m2 = 0.125 + 0.125 = 0.25,
    # d2 = sqrt(0.09375 - 0.0625) = sqrt(0.03125); b2 = 0.5 * 2 + 0.25 / d2.
    p = np.array([1.0])
    opt = RMSprop({"w": p}, lr=0.1, alpha=0.5, eps=0.0, centered=True, momentum=0.5)
    opt.step({"w": np.array([0.5])})
    np.testing.assert_allclose(p, [0.8], rtol=1e-14)
    opt.step({"w": np.array([0.25])})
    b2 = 1.0 + 0.25 / math.sqrt(0.03125)
    np.testing.assert_allclose(p, [0.8 - 0.1 * b2], rtol=1e-14)


def test_adadelta_two_steps():
    # rho 0.5, eps 1e-2: v1 = 0.5 g^2 = 0.125; d1 = sqrt(0.01) / sqrt(0.135) * 0.5;
    # u1 = 0.5 d1^2; v2 = 0.0625 + 0.5 * 0.0625; d2 = sqrt(u1 + .01) / sqrt(v2 + .01) * .25.
    p = np.array([1.0])
    opt = Adadelta({"w": p}, lr=0.5, rho=0.5, eps=1e-2)
    opt.step({"w": np.array([0.5])})
    d1 = 0.1 / math.sqrt(0.135) * 0.5
    np.testing.assert_allclose(p, [1.0 - 0.5 * d1], rtol=1e-14)
    opt.step({"w": np.array([0.25])})
    u1 = 0.5 * d1 * d1
    d2 = math.sqrt(u1 + 0.01) / math.sqrt(0.09375 + 0.01) * 0.25
    np.testing.assert_allclose(p, [1.0 - 0.5 * d1 - 0.5 * d2], rtol=1e-14)


def test_adam_two_steps():
    # With eps = 0 the bias-corrected first step is exactly lr * sign(g).
    p = np.array([1.0, -2.0])
    opt = Adam({"w": p}, lr=0.1, betas=(0.5, 0.75), eps=0.0)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-15)
    opt.step({"w": np.array([0.25, 2.0])})
    m = 0.5 * 0.5 * np.array([0.5, -1.0]) + 0.5 * np.array([0.25, 2.0])
    v = 0.75 * 0.25 * np.array([0.25, 1.0]) + 0.25 * np.array([0.0625, 4.0])
    m_hat, v_hat = m / (1 - 0.25), v / (1 - 0.5625)
    np.testing.assert_allclose(p, np.array([0.9, -1.9]) - 0.1 * m_hat / np.sqrt(v_hat),
                               rtol=1e-14)


def test_adam_amsgrad_uses_running_max():
    # Large then small gradient: v shrinks, AMSGrad keeps the maximum.
    p = np.array([0.0])
    opt = Adam({"w": p}, lr=0.1, betas=(0.0, 0.5), eps=0.0, amsgrad=True)
    opt.step({"w": np.array([2.0])})
    np.testing.assert_allclose(p, [-0.1], rtol=1e-15)
    opt.step({"w": np.array([0.1])})
    # v1 = 0.5 * 4 = 2, v2 = 0.5 * 2 + 0.5 * 0.01 = 1.005, so the max is still v1; m2 = g2.
    v_max = 2.0
    np.testing.assert_allclose(p, [-0.1 - 0.1 * 0.1 / (math.sqrt(v_max) / math.sqrt(0.75))],
                               rtol=1e-14)


def test_adamw_decays_weights_before_the_adam_step():
    p = np.array([1.0, -2.0])
    opt = AdamW({"w": p}, lr=0.1, weight_decay=0.5, eps=0.0)
    opt.step({"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(p, [0.95 - 0.1, -1.9 + 0.1], rtol=1e-15)


def test_adam_l2_differs_from_adamw_decoupled():
    params_a, grads = make_problem()
    params_b = {k: v.copy() for k, v in params_a.items()}
    run("adam", dict(weight_decay=0.1), params_a, grads)
    run("adamw", dict(weight_decay=0.1), params_b, grads)
    assert not np.allclose(params_a["0.weight"], params_b["0.weight"], rtol=1e-9, atol=0)


# -- agreement with torch.optim -------------------------------------------------------
TORCH_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop",
                 "adadelta": "Adadelta", "adam": "Adam", "adamw": "AdamW"}


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    params, grads = make_problem(np.float64, seed=1, steps=6)
    tensors = {k: torch.tensor(v.copy(), dtype=torch.float64) for k, v in params.items()}
    torch_opt = getattr(torch.optim, TORCH_CLASSES[name])(list(tensors.values()), **kwargs)
    opt = make_optimizer(name, params, **kwargs)
    for i, g in enumerate(grads):
        if i == 3:  # a schedule changing lr between steps
            opt.lr = opt.lr * 0.5
            torch_opt.param_groups[0]["lr"] *= 0.5
        opt.step(g)
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        torch_opt.step()
        for k, t in tensors.items():
            np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-6, atol=1e-12,
                                       err_msg=f"{name} {kwargs} step {i + 1} param {k}")
    # Buffers use torch's state names.
    state = opt.state_dict()
    assert int(state["step"]) == len(grads)
    for k, t in tensors.items():
        for buffer, value in torch_opt.state[t].items():
            if buffer == "step":
                continue
            np.testing.assert_allclose(state[f"{buffer}.{k}"], value.numpy(), rtol=1e-6,
                                       atol=1e-12, err_msg=f"{name} {buffer}.{k}")


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")
    import inspect

    for name, cls in OPTIMIZERS.items():
        ours = inspect.signature(cls.__init__).parameters
        theirs = inspect.signature(getattr(torch.optim, TORCH_CLASSES[name]).__init__).parameters
        for arg, param in ours.items():
            if arg in ("self", "params"):
                continue
            default = theirs[arg].default
            if isinstance(default, tuple):
                default = tuple(float(x) for x in default)
            assert param.default == default, (name, arg, param.default, default)


# -- convergence on a convex problem --------------------------------------------------
@pytest.mark.parametrize("name,kwargs,steps,tol", [
    ("sgd", dict(lr=0.1), 400, 1e-6),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True), 300, 1e-6),
    ("adagrad", dict(lr=0.5), 500, 1e-6),
    ("rmsprop", dict(lr=0.01), 500, 5e-3),
    ("rmsprop", dict(lr=0.01, centered=True, momentum=0.5), 500, 1e-3),
    ("adadelta", dict(), 3000, 1e-4),
    ("adam", dict(lr=0.05), 1000, 1e-6),
    ("adam", dict(lr=0.05, amsgrad=True), 1000, 1e-6),
    ("adamw", dict(lr=0.05, weight_decay=0.0), 1000, 1e-6),
])
def test_converges_on_least_squares(name, kwargs, steps, tol):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 6))
    x_true = rng.standard_normal(6)
    b = a @ x_true
    x = np.zeros(6)
    opt = make_optimizer(name, {"x": x}, **kwargs)
    for _ in range(steps):
        opt.step({"x": a.T @ (a @ x - b) / len(b)})
    assert np.abs(x - x_true).max() < tol


def test_trains_a_sequential_model_in_place():
    rng = np.random.default_rng(0)
    model = Sequential(Linear(4, 3, rng=0))
    x = rng.standard_normal((32, 4)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    loss_fn = SoftmaxCrossEntropy()
    weight = model[0].params["weight"]
    opt = make_optimizer("adam", model.params, lr=0.05)
    losses = []
    for _ in range(60):
        losses.append(loss_fn(model(x), labels))
        model.backward(loss_fn.backward())
        opt.step(model.grads)
    assert model[0].params["weight"] is weight
    assert weight.dtype == np.float32
    assert losses[-1] < 0.5 * losses[0]


# -- dtype and memory -----------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_float32_stays_float32(name, kwargs):
    params32, grads32 = make_problem(np.float32, seed=2)
    params64 = {k: v.astype(np.float64) for k, v in params32.items()}
    grads64 = [{k: v.astype(np.float64) for k, v in g.items()} for g in grads32]
    originals = dict(params32)
    opt = run(name, kwargs, params32, grads32)
    run(name, kwargs, params64, grads64)
    for k, p in params32.items():
        assert p is originals[k] and p.dtype == np.float32
        np.testing.assert_allclose(p, params64[k], rtol=2e-4, atol=1e-5)
    for key, value in opt.state_dict().items():
        assert value.dtype == (np.int64 if key == "step" else np.float32), key
    for buffers in opt._buffers.values():
        assert all(b.dtype == np.float32 for b in buffers.values())


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_step_allocates_no_parameter_sized_temporaries(name, kwargs):
    size = 50_000
    params = {"w": np.linspace(-1, 1, size, dtype=np.float32), "b": np.ones(7, np.float32)}
    grads = {"w": np.linspace(1, -1, size, dtype=np.float32), "b": np.ones(7, np.float32)}
    opt = make_optimizer(name, params, **kwargs)
    opt.step(grads)  # the first step may allocate the shared work buffers
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        opt.step(grads)
        opt.step(grads)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert peak < params["w"].nbytes // 4, f"{name} allocated {peak} bytes during step"


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_chunked_threaded_updates_equal_whole_parameter_updates(name, kwargs):
    """Large parameters are updated in chunks on the engine's threads; every rule is
    element-wise, so the result is bit-for-bit that of one pass per parameter. Covers a
    non-contiguous gradient of a chunked parameter and a non-contiguous parameter (never
    chunked: its flat view would be a copy)."""
    rng = np.random.default_rng(5)
    base = {"w": rng.standard_normal((40, 125)).astype(np.float32),
            "t": rng.standard_normal((30, 20)).astype(np.float32).T,   # F-ordered
            "b": rng.standard_normal(9).astype(np.float32)}
    grads = [{"w": rng.standard_normal((125, 40)).astype(np.float32).T,  # not contiguous
              "t": rng.standard_normal((20, 30)).astype(np.float32),
              "b": rng.standard_normal(9).astype(np.float32)} for _ in range(4)]
    results = []
    for chunk_bytes, workers in ((1 << 30, 1), (1024, 1), (1024, 2)):
        params = {k: v.copy(order="K") for k, v in base.items()}
        with pytest.MonkeyPatch.context() as patch, runtime.forced_workers(workers):
            patch.setattr(optimizers, "CHUNK_BYTES", chunk_bytes)
            opt = make_optimizer(name, params, **kwargs)
            chunks = {k: len(v) for k, v in opt._chunks.items()}
            assert chunks == ({"w": 1, "t": 1, "b": 1} if chunk_bytes > 1 << 20
                              else {"w": 20, "t": 1, "b": 1})
            for g in grads:
                opt.step(g)
        results.append((params, opt.state_dict()))
    for params, state in results[1:]:
        for key in base:
            np.testing.assert_array_equal(params[key], results[0][0][key])
        assert state.keys() == results[0][1].keys()
        for key in state:
            np.testing.assert_array_equal(state[key], results[0][1][key])


# -- state save / restore -------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_through_npz(tmp_path, name, kwargs):
    params, grads = make_problem(np.float32, seed=3, steps=6)
    reference = {k: v.copy() for k, v in params.items()}
    run(name, kwargs, reference, grads)

    opt = run(name, kwargs, params, grads[:3])
    path = tmp_path / "opt.npz"
    np.savez(path, **opt.state_dict(), **{f"param/{k}": v for k, v in params.items()})
    config = json.loads(json.dumps(opt.get_config()))

    with np.load(path, allow_pickle=False) as data:
        restored_params = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
        state = {k: data[k] for k in data.files if not k.startswith("param/")}
    fresh = optimizer_from_config(config, restored_params)
    assert type(fresh) is type(opt) and fresh.get_config() == opt.get_config()
    fresh.load_state_dict(state)
    assert fresh.step_count == 3
    for g in grads[3:]:
        fresh.step(g)
    for k in params:
        np.testing.assert_array_equal(restored_params[k], reference[k])


def test_state_dict_is_a_copy():
    params, grads = make_problem()
    opt = run("adam", {}, params, grads[:2])
    state = opt.state_dict()
    state["exp_avg.0.bias"][:] = 123.0
    assert not np.any(opt.state_dict()["exp_avg.0.bias"] == 123.0)


def test_load_state_dict_rejects_mismatches_without_changing_anything():
    params, grads = make_problem()
    opt = run("adam", dict(amsgrad=True), params, grads[:2])
    good = opt.state_dict()
    with pytest.raises(ValueError, match=r"missing \['max_exp_avg_sq.0.bias'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "max_exp_avg_sq.0.bias"})
    with pytest.raises(ValueError, match="unexpected.*momentum_buffer.0.bias"):
        opt.load_state_dict({**good, "momentum_buffer.0.bias": good["exp_avg.0.bias"]})
    bad_shape = {**good, "exp_avg.0.weight": np.zeros((4, 3))}
    bad_shape["exp_avg.0.bias"] = np.full(5, 7.0)
    with pytest.raises(ValueError, match=r"'exp_avg.0.weight' expects shape \(3, 4\)"):
        opt.load_state_dict(bad_shape)
    assert not np.any(opt.state_dict()["exp_avg.0.bias"] == 7.0)
    with pytest.raises(ValueError, match="'step' must be a non-negative integer"):
        opt.load_state_dict({**good, "step": np.array(-1)})
    with pytest.raises(ValueError, match="'step' must be a non-negative integer"):
        opt.load_state_dict({**good, "step": np.array(2.5)})
    with pytest.raises(ValueError, match="must be floating point"):
        opt.load_state_dict({**good, "exp_avg.0.bias": np.zeros(5, dtype=np.int64)})
    sgd = SGD(make_problem()[0], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="missing"):
        sgd.load_state_dict({"step": np.array(1)})


def test_config_is_json_and_names_the_class():
    for name, kwargs in CONFIGS:
        opt = make_optimizer(name, make_problem()[0], **kwargs)
        config = json.loads(json.dumps(opt.get_config()))
        assert config["class"] == type(opt).__name__ and config["name"] == name
        for key, value in kwargs.items():
            assert config[key] == (list(value) if isinstance(value, tuple) else value)
        rebuilt = optimizer_from_config(config, make_problem()[0])
        assert rebuilt.get_config() == opt.get_config()


def test_lr_is_settable_and_used():
    p = np.array([1.0])
    opt = SGD({"w": p}, lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and isinstance(opt.lr, float)
    opt.step({"w": np.array([1.0])})
    np.testing.assert_allclose(p, [0.5])
    assert opt.get_config()["lr"] == 0.5


def test_make_optimizer_defaults_and_lr_override():
    params = make_problem()[0]
    assert make_optimizer("sgd", params).lr == 1e-3
    assert make_optimizer("Adadelta", params).lr == 1.0
    assert make_optimizer("adamw", params).weight_decay == 0.01
    assert make_optimizer("adam", params, lr=0.3).lr == 0.3
    assert set(OPTIMIZERS) == {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw"}
    assert all(issubclass(c, Optimizer) for c in OPTIMIZERS.values())


def test_grads_are_not_modified():
    for name, kwargs in CONFIGS:
        params, grads = make_problem()
        copies = [{k: v.copy() for k, v in g.items()} for g in grads]
        run(name, kwargs, params, grads)
        for g, c in zip(grads, copies, strict=True):
            for k in g:
                np.testing.assert_array_equal(g[k], c[k])


# -- bad inputs -----------------------------------------------------------------------
def test_step_rejects_bad_gradients():
    params, grads = make_problem()
    opt = Adam(params)
    with pytest.raises(ValueError, match=r"Adam.step.*missing \['0.bias'\]"):
        opt.step({"0.weight": grads[0]["0.weight"]})
    with pytest.raises(ValueError, match=r"unexpected \['1.weight'\]"):
        opt.step({**grads[0], "1.weight": grads[0]["0.weight"]})
    with pytest.raises(ValueError, match=r"gradient '0.weight' has shape \(4, 3\)"):
        opt.step({**grads[0], "0.weight": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="gradient '0.bias' has dtype float32"):
        opt.step({**grads[0], "0.bias": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="must be a numpy ndarray"):
        opt.step({**grads[0], "0.bias": [0.0] * 5})
    with pytest.raises(ValueError, match="grads must be a dict"):
        opt.step([grads[0]["0.weight"]])
    assert opt.step_count == 0


def test_constructor_rejects_bad_params():
    w = np.zeros(3)
    with pytest.raises(ValueError, match="empty parameter dict"):
        SGD({})
    with pytest.raises(ValueError, match="'w' must be a numpy ndarray"):
        SGD({"w": [0.0, 1.0]})
    with pytest.raises(ValueError, match="'w' must have a floating dtype"):
        SGD({"w": np.zeros(3, dtype=np.int64)})
    with pytest.raises(ValueError, match="are the same array"):
        SGD({"a": w, "b": w})
    read_only = np.zeros(3)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD({"w": read_only})
    opt = SGD([("a", w)])  # (name, array) pairs are accepted too
    assert opt.params["a"] is w


@pytest.mark.parametrize("name,kwargs,match", [
    ("sgd", dict(lr=-0.1), "SGD: lr must be >= 0"),
    ("sgd", dict(lr=float("nan")), "lr must be finite"),
    ("sgd", dict(lr="0.1"), "lr must be a real number"),
    ("sgd", dict(momentum=-0.5), "momentum must be >= 0"),
    ("sgd", dict(nesterov=True), "nesterov=True requires momentum > 0"),
    ("sgd", dict(nesterov=True, momentum=0.9, dampening=0.1), "and dampening == 0"),
    ("sgd", dict(nesterov="yes", momentum=0.9), "nesterov must be True or False"),
    ("adagrad", dict(lr_decay=-1.0), "lr_decay must be >= 0"),
    ("adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("rmsprop", dict(alpha=1.5), "alpha must be <= 1"),
    ("rmsprop", dict(eps=-1e-8), "eps must be >= 0"),
    ("adadelta", dict(rho=-0.1), "rho must be >= 0"),
    ("adam", dict(betas=(0.9, 1.0)), r"betas\[1\] must be < 1"),
    ("adam", dict(betas=0.9), "betas must be a pair"),
    ("adamw", dict(weight_decay=-0.01), "AdamW: weight_decay must be >= 0"),
    ("adam", dict(amsgrad=1), "amsgrad must be True or False"),
    ("adam", dict(momentum=0.9), r"Adam got unexpected arguments \['momentum'\]"),
    ("lbfgs", dict(), "unknown optimizer 'lbfgs'"),
])
def test_bad_hyperparameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(name, make_problem()[0], **kwargs)


def test_lr_setter_validates():
    opt = Adam(make_problem()[0])
    with pytest.raises(ValueError, match="Adam: lr must be >= 0"):
        opt.lr = -1.0
    with pytest.raises(ValueError, match="lr must be finite"):
        opt.lr = float("inf")
    assert opt.lr == 1e-3


def test_optimizer_from_config_rejects_bad_configs():
    params = make_problem()[0]
    with pytest.raises(ValueError, match="'name' key"):
        optimizer_from_config({"lr": 0.1}, params)
    with pytest.raises(ValueError, match="does not match"):
        optimizer_from_config({"name": "adam", "class": "SGD"}, params)
    with pytest.raises(ValueError, match="unexpected arguments"):
        optimizer_from_config({"name": "sgd", "betas": [0.9, 0.99]}, params)
