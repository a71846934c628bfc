"""Losses with torch.nn's options (SoftmaxCrossEntropy = CrossEntropyLoss, NLLLoss, MSELoss,
BCEWithLogitsLoss): against the reference loops, finite differences and PyTorch; the
default SoftmaxCrossEntropy keeps its original fast path; stability; errors."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from im2col_net import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    NLLLoss,
    SoftmaxCrossEntropy,
)
from im2col_net import functional as F
from im2col_net.testing import arrays, assert_close, assert_passes_gradcheck

DTYPES = st.sampled_from([np.float32, np.float64])
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def loss_tolerance(dtype):
    return 1e-10 if dtype == np.float64 else 2e-5


def assert_loss_close(actual, expected, dtype, what="loss"):
    if isinstance(expected, float):
        assert isinstance(actual, float), what
        tol = loss_tolerance(dtype)
        assert actual == pytest.approx(expected, rel=tol, abs=tol, nan_ok=True), what
    else:
        assert isinstance(actual, np.ndarray) and actual.dtype == np.dtype(dtype), what
        assert_close(actual, expected, what=what)


@st.composite
def class_problems(draw, soft_ok=True):
    """``(input, target, dims)``: logits (N, C, d...) and class indices or probabilities."""
    dtype = draw(DTYPES)
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape = (n, c) + spatial
    x = draw(arrays(shape, dtype, scale=draw(st.sampled_from([1.0, 10.0])),
                    noncontiguous=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if soft_ok and draw(st.booleans()):
        p = rng.random(shape)
        target = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, c, (n,) + spatial)
    return x, target


@st.composite
def class_options(draw, c, smoothing=True):
    opts = dict(reduction=draw(REDUCTIONS))
    if draw(st.booleans()):
        opts["weight"] = draw(st.lists(st.floats(0.1, 3.0), min_size=c, max_size=c))
    if draw(st.booleans()):
        opts["ignore_index"] = draw(st.sampled_from([-100, 0, c - 1, 7]))
    if smoothing and draw(st.booleans()):
        opts["label_smoothing"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
    return opts


def ignore_some(target, opts, data):
    """Set some class-index targets to ignore_index (when it is given)."""
    if target.dtype.kind == "f" or "ignore_index" not in opts:
        return target
    target = target.copy()
    mask = data.draw(arrays(target.shape, np.float64, kinds=("uniform",))) > 0.3
    target[mask] = opts["ignore_index"]
    return target


def dloss_for(loss_fn, loss, dtype, data):
    if loss_fn.reduction == "none":
        return data.draw(arrays(np.shape(loss), dtype))
    return data.draw(st.sampled_from([1.0, -0.5, 3.0]))


# ---- against the reference loops ------------------------------------------------------


@given(problem=class_problems(), data=st.data())
def test_cross_entropy_matches_reference(problem, data):
    x, target = problem
    opts = data.draw(class_options(x.shape[1]))
    target = ignore_some(target, opts, data)
    for cls in (SoftmaxCrossEntropy, CrossEntropyLoss):
        loss_fn = cls(**opts)
        ref_forward, ref_backward = loss_fn.reference()
        loss = loss_fn.forward(x, target)
        assert_loss_close(loss, ref_forward(x, target), x.dtype)
        dloss = dloss_for(loss_fn, loss, x.dtype, data)
        grad = loss_fn.backward(dloss)
        assert grad.dtype == x.dtype and grad.shape == x.shape
        assert_close(grad, ref_backward(x, target, dloss), what="dlogits")


@given(problem=class_problems(soft_ok=False), data=st.data())
def test_nll_matches_reference(problem, data):
    x, target = problem
    opts = data.draw(class_options(x.shape[1], smoothing=False))
    target = ignore_some(target, opts, data)
    loss_fn = NLLLoss(**opts)
    ref_forward, ref_backward = loss_fn.reference()
    loss = loss_fn.forward(x, target)
    assert_loss_close(loss, ref_forward(x, target), x.dtype)
    dloss = dloss_for(loss_fn, loss, x.dtype, data)
    grad = loss_fn.backward(dloss)
    assert grad.dtype == x.dtype
    assert_close(grad, ref_backward(x, target, dloss), what="dlogp")


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, dtype=DTYPES, reduction=REDUCTIONS, data=st.data())
def test_mse_matches_reference(shape, dtype, reduction, data):
    x = data.draw(arrays(shape, dtype, noncontiguous=True))
    t = data.draw(arrays(shape, dtype))
    loss_fn = MSELoss(reduction)
    ref_forward, ref_backward = loss_fn.reference()
    loss = loss_fn.forward(x, t)
    assert_loss_close(loss, ref_forward(x, t), dtype)
    dloss = dloss_for(loss_fn, loss, dtype, data)
    assert_close(loss_fn.backward(dloss), ref_backward(x, t, dloss), what="dx")


@given(shape=shapes, dtype=DTYPES, reduction=REDUCTIONS, weighted=st.booleans(),
       pos=st.booleans(), data=st.data())
def test_bce_with_logits_matches_reference(shape, dtype, reduction, weighted, pos, data):
    x = data.draw(arrays(shape, dtype, scale=data.draw(st.sampled_from([1.0, 30.0])),
                         noncontiguous=True))
    t = data.draw(arrays(shape, dtype, kinds=("uniform",))) * 0.5 + 0.5
    weight = data.draw(arrays(shape[-1:], np.float64)) + 1.5 if weighted else None
    pos_weight = data.draw(arrays(shape[-1:], np.float64)) + 2.0 if pos else None
    loss_fn = BCEWithLogitsLoss(weight=weight, reduction=reduction, pos_weight=pos_weight)
    ref_forward, ref_backward = loss_fn.reference()
    loss = loss_fn.forward(x, t)
    assert_loss_close(loss, ref_forward(x, t), dtype)
    dloss = dloss_for(loss_fn, loss, dtype, data)
    grad = loss_fn.backward(dloss)
    assert grad.dtype == np.dtype(dtype)
    assert_close(grad, ref_backward(x, t, dloss), what="dx")


# ---- finite differences -----------------------------------------------------------------


def check_loss(make, x, target, **kwargs):
    """Finite-difference check of ``make()``'s forward/backward with respect to ``x``."""

    def forward(z, t):
        return np.asarray(make().forward(z, t))

    def backward(dloss, z, t):
        fn = make()
        fn.forward(z, t)
        return fn.backward(dloss if fn.reduction == "none" else float(dloss)), None

    return assert_passes_gradcheck(forward, x, target, backward=backward, **kwargs)


CE_OPTIONS = [
    {}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": [0.5, 2.0, 1.0, 0.3]},
    {"weight": [0.5, 2.0, 1.0, 0.3], "label_smoothing": 0.2, "ignore_index": 1},
    {"label_smoothing": 0.4, "reduction": "none"},
]


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 3), (2, 4, 2, 3)])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=str)
def test_cross_entropy_passes_gradcheck(opts, shape, soft):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2
    if soft:
        p = rng.random(shape)
        target = p / p.sum(axis=1, keepdims=True)
        # The target is an input of the function too; hold it fixed for the check.
        make = lambda: CrossEntropyLoss(**opts)  # noqa: E731

        def forward(z):
            return np.asarray(make().forward(z, target))

        def backward(dloss, z):
            fn = make()
            fn.forward(z, target)
            return fn.backward(dloss if fn.reduction == "none" else float(dloss))

        assert_passes_gradcheck(forward, x, backward=backward)
    else:
        target = rng.integers(0, 4, (shape[0],) + shape[2:])
        target.flat[0] = opts.get("ignore_index", -100)
        check_loss(lambda: CrossEntropyLoss(**opts), x, target)


@pytest.mark.parametrize("opts", [{}, {"reduction": "none"}, {"weight": [1.0, 0.2, 3.0],
                                                              "ignore_index": 0}])
def test_nll_mse_bce_pass_gradcheck(opts):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4))
    target = rng.integers(0, 3, (2, 4))
    check_loss(lambda: NLLLoss(**opts), x, target)
    reduction = opts.get("reduction", "mean")
    y = rng.standard_normal(x.shape)
    check_loss(lambda: MSELoss(reduction), x, y)
    t = rng.random(x.shape)
    extra = {} if opts.get("weight") is None else dict(weight=rng.random(4) + 0.5,
                                                       pos_weight=rng.random(4) * 3)
    check_loss(lambda: BCEWithLogitsLoss(reduction=reduction, **extra), x * 4, t)


# ---- PyTorch ---------------------------------------------------------------------------


def torch_loss(torch, cls, opts):
    kw = dict(opts)
    for key in ("weight", "pos_weight"):
        if kw.get(key) is not None:
            kw[key] = torch.tensor(np.asarray(kw[key]), dtype=torch.float64)
    return getattr(torch.nn, cls)(**kw)


def compare_with_torch(torch, ours, theirs, x, target, dtype, seed=0):
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(target)
    lt = theirs(xt, tt)
    rng = np.random.default_rng(seed)
    if ours.reduction == "none":
        dloss = rng.standard_normal(tuple(lt.shape)).astype(dtype)
        lt.backward(torch.tensor(dloss))
    else:
        dloss = 1.75
        lt.backward(torch.tensor(dloss, dtype=lt.dtype))
    loss = ours.forward(x, target)
    grad = ours.backward(dloss)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(loss, lt.detach().numpy(), **tol)
    np.testing.assert_allclose(grad, xt.grad.numpy(), **tol)
    assert grad.dtype == np.dtype(dtype)
    if ours.reduction == "none":
        assert loss.shape == tuple(lt.shape) and loss.dtype == np.dtype(dtype)
    else:
        assert isinstance(loss, float)


CE_TORCH = [
    {}, {"reduction": "sum"}, {"reduction": "none"},
    {"weight": [0.2, 1.0, 2.5, 0.7, 1.3]},
    {"weight": [0.2, 1.0, 2.5, 0.7, 1.3], "reduction": "sum"},
    {"ignore_index": 3}, {"ignore_index": 3, "reduction": "none"},
    {"label_smoothing": 0.1}, {"label_smoothing": 0.25, "reduction": "sum"},
    {"label_smoothing": 1.0},
    {"weight": [0.2, 1.0, 2.5, 0.7, 1.3], "ignore_index": 0, "label_smoothing": 0.3},
    {"weight": [0.2, 1.0, 2.5, 0.7, 1.3], "ignore_index": 0, "label_smoothing": 0.3,
     "reduction": "none"},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4), (2, 5, 3), (1, 5, 2, 2, 2)])
@pytest.mark.parametrize("opts", CE_TORCH, ids=str)
def test_cross_entropy_class_indices_match_torch(opts, shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    target = rng.integers(0, 5, (shape[0],) + shape[2:])
    target.flat[::3] = opts.get("ignore_index", -100)
    ours = CrossEntropyLoss(**opts)
    theirs = torch_loss(torch, "CrossEntropyLoss", opts)
    if dtype == np.float32 and "weight" in opts:
        theirs.weight = theirs.weight.float()
    compare_with_torch(torch, ours, theirs, x, target, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4)])
@pytest.mark.parametrize("opts", [{}, {"reduction": "sum"}, {"reduction": "none"},
                                  {"weight": [0.2, 1.0, 2.5, 0.7, 1.3]},
                                  {"label_smoothing": 0.2},
                                  {"weight": [0.2, 1.0, 2.5, 0.7, 1.3], "label_smoothing": 0.4,
                                   "reduction": "none"}], ids=str)
def test_cross_entropy_probabilities_match_torch(opts, shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    p = rng.random(shape)
    target = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    theirs = torch_loss(torch, "CrossEntropyLoss", opts)
    if dtype == np.float32 and "weight" in opts:
        theirs.weight = theirs.weight.float()
    compare_with_torch(torch, CrossEntropyLoss(**opts), theirs, x, target, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3, 2)])
@pytest.mark.parametrize("opts", [{}, {"reduction": "sum"}, {"reduction": "none"},
                                  {"weight": [0.5, 2.0, 1.0, 0.1]}, {"ignore_index": 2},
                                  {"weight": [0.5, 2.0, 1.0, 0.1], "ignore_index": 1,
                                   "reduction": "none"}], ids=str)
def test_nll_matches_torch(opts, shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = np.log(rng.dirichlet(np.ones(shape[1]), (shape[0],) + shape[2:]))
    x = np.ascontiguousarray(np.moveaxis(x, -1, 1), dtype=dtype)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    theirs = torch_loss(torch, "NLLLoss", opts)
    if dtype == np.float32 and "weight" in opts:
        theirs.weight = theirs.weight.float()
    compare_with_torch(torch, NLLLoss(**opts), theirs, x, target, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4, 5)])
def test_mse_matches_torch(shape, reduction, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, t = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    compare_with_torch(torch, MSELoss(reduction), torch.nn.MSELoss(reduction=reduction), x, t,
                       dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extras", ["none", "weight", "pos_weight", "both", "full-weight"])
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4)])
def test_bce_with_logits_matches_torch(shape, extras, reduction, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape) * 6).astype(dtype)
    x.flat[:4] = [0.0, 60.0, -60.0, 1e3]
    t = rng.random(shape).astype(dtype)
    t.flat[:3] = [0.0, 1.0, 0.0]
    opts = dict(reduction=reduction)
    if extras in ("weight", "both"):
        opts["weight"] = rng.random(shape[-1]) + 0.5
    if extras == "full-weight":
        opts["weight"] = rng.random(shape) + 0.5
    if extras in ("pos_weight", "both"):
        opts["pos_weight"] = rng.random(shape[-1]) * 4
    theirs = torch_loss(torch, "BCEWithLogitsLoss", opts)
    if dtype == np.float32:
        theirs = theirs.float()
    compare_with_torch(torch, BCEWithLogitsLoss(**opts), theirs, x, t, dtype)


def test_all_ignored_mean_is_nan_with_zero_gradient_as_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(7).standard_normal((2, 3))
    t = np.array([-100, -100])
    for smoothing in (0.0, 0.2):
        ours = CrossEntropyLoss(label_smoothing=smoothing)
        xt = torch.tensor(x, requires_grad=True)
        lt = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(xt, torch.tensor(t))
        lt.backward()
        assert np.isnan(ours.forward(x, t)) and np.isnan(lt.item())
        np.testing.assert_array_equal(ours.backward(), xt.grad.numpy())
    nll = NLLLoss(ignore_index=1)
    assert np.isnan(nll.forward(x, np.array([1, 1])))
    assert not nll.backward().any()


# ---- the trainer's default path, stability, errors ---------------------------------------


@given(n=st.integers(1, 6), k=st.integers(1, 6), dtype=DTYPES, data=st.data())
def test_default_is_the_original_fast_path(n, k, dtype, data):
    logits = data.draw(arrays((n, k), dtype, scale=10.0))
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, labels)
    expected, cache = F.softmax_cross_entropy_forward(logits, labels)
    assert loss == expected  # bit for bit: the same function
    np.testing.assert_array_equal(loss_fn.backward(0.5),
                                  F.softmax_cross_entropy_backward(cache, 0.5))
    # The general path agrees (to rounding) with the fast one.
    general = SoftmaxCrossEntropy(reduction="sum")
    tol = loss_tolerance(dtype) * 10
    assert general.forward(logits, labels) / n == pytest.approx(loss, rel=tol, abs=tol)


def test_stable_in_float32_with_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [1e30, -1e30, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for opts in ({"label_smoothing": 0.1}, {"reduction": "none"},
                     {"weight": [1.0, 2.0, 3.0]}):
            fn = CrossEntropyLoss(**opts)
            loss = fn.forward(logits, np.array([0, 0]))
            assert np.all(np.isfinite(loss)) and np.isfinite(fn.backward(
                np.ones(2, np.float32) if opts.get("reduction") == "none" else 1.0)).all()
        bce = BCEWithLogitsLoss(reduction="none")
        x = np.array([-1e30, -100.0, 0.0, 100.0, 1e30], np.float32)
        t = np.array([1.0, 1.0, 0.5, 0.0, 0.0], np.float32)
        loss = bce.forward(x, t)
        np.testing.assert_allclose(loss, [1e30, 100.0, np.log(2.0), 100.0, 1e30], rtol=1e-6)
        np.testing.assert_allclose(bce.backward(np.ones(5, np.float32)),
                                   [-1.0, -1.0, 0.0, 1.0, 1.0], atol=1e-6)


def test_repr_names_the_options():
    assert repr(SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()"
    assert repr(CrossEntropyLoss(label_smoothing=0.1, ignore_index=3)) == \
        "CrossEntropyLoss(ignore_index=3, label_smoothing=0.1)"
    assert repr(NLLLoss(weight=[1, 2], reduction="sum")) == \
        "NLLLoss(weight=[1.0, 2.0], reduction='sum')"
    assert repr(BCEWithLogitsLoss(pos_weight=[2.0])) == "BCEWithLogitsLoss(pos_weight=[2.0])"
    assert isinstance(CrossEntropyLoss(), SoftmaxCrossEntropy)


def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("call,message", [
    (lambda: CrossEntropyLoss(reduction="avg"), "reduction must be one of 'mean', 'sum', "
                                                "'none', got 'avg'"),
    (lambda: CrossEntropyLoss(label_smoothing=1.5), r"label_smoothing must be a number in "
                                                    r"\[0, 1\], got 1.5"),
    (lambda: CrossEntropyLoss(weight=[[1.0]]), "weight must be a 1-D array"),
    (lambda: NLLLoss(weight=[1.0, np.nan]), "weight must be a 1-D array of finite"),
    (lambda: NLLLoss(ignore_index=1.5), "ignore_index must be an int, got 1.5"),
    (lambda: BCEWithLogitsLoss(pos_weight=[np.inf]), "pos_weight must be finite"),
    (lambda: MSELoss("mean ").forward(z(2), z(2)), "reduction must be one of"),
    (lambda: CrossEntropyLoss().forward(z(3), np.array(0)), r"\(N, K\) or \(N, C, d1, "
                                                            r"\.\.\.\).*unbatched"),
    (lambda: CrossEntropyLoss(weight=[1, 2]).forward(z(2, 3), np.array([0, 1])),
     "weight has 2 entries but the logits have 3 classes"),
    (lambda: CrossEntropyLoss().forward(z(2, 3, 4), np.array([0, 1])),
     r"integer labels of shape \(2, 4\) \(or float class probabilities of the logits' shape "
     r"\(2, 3, 4\)\), got shape \(2,\)"),
    (lambda: CrossEntropyLoss().forward(z(2, 3), np.array([0, -100, -2])),
     r"shape \(2,\)"),
    (lambda: CrossEntropyLoss(ignore_index=5).forward(z(2, 3), np.array([0, -100])),
     r"labels must be in \[0, 3\) \(or ignore_index=5\), got label -100"),
    (lambda: NLLLoss().forward(z(2, 3), np.array([0.0, 1.0])),
     r"NLLLoss\(\): expected integer labels of shape \(2,\), got shape \(2,\) dtype float64"),
    (lambda: MSELoss().forward(z(2, 3), z(3)), r"target of the input's shape \(2, 3\).*no "
                                               r"broadcasting"),
    (lambda: MSELoss().forward(np.zeros(3, int), z(3)), "non-empty float input"),
    (lambda: BCEWithLogitsLoss(weight=[1.0, 2.0]).forward(z(2, 3), z(2, 3)),
     r"weight of shape \(2,\) does not broadcast to the input's shape \(2, 3\)"),
    (lambda: BCEWithLogitsLoss(pos_weight=np.ones((4, 3))).forward(z(2, 3), z(2, 3)),
     r"pos_weight of shape \(4, 3\) does not broadcast"),
])
def test_bad_options_and_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_dloss_rules():
    fn = CrossEntropyLoss(reduction="none")
    fn.forward(z(2, 3), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"reduction='none' dloss must be a real array of the "
                                         r"loss's shape \(2,\), got shape \(\)"):
        fn.backward(1.0)
    assert fn.backward(np.ones(2)).shape == (2, 3)
    for loss in (MSELoss(), NLLLoss(), BCEWithLogitsLoss()):
        with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
            loss.backward()
    mse = MSELoss()
    mse.forward(z(2), z(2))
    with pytest.raises(ValueError, match="dloss must be a real number, got array"):
        mse.backward(np.ones(2))


def test_losses_are_not_in_the_model_registry():
    # Losses are not layers: saving a model never meets one, and the registry skips them.
    from im2col_net.serialization import layer_registry

    assume(True)
    assert not {"CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss"} & set(
        layer_registry())


def test_gradcheck_cli_checks_the_losses(capsys):
    from im2col_net.app.cli import main

    cases = [["crossentropy"], ["crossentropy", "--reduction", "none", "--label-smoothing", "0.3"],
             ["crossentropy", "--soft-targets", "--reduction", "sum"], ["nll"],
             ["mse", "--reduction", "none"], ["bcewithlogits", "--reduction", "sum"]]
    for case in cases:
        assert main(["gradcheck", *case, "--dtype", "float64", "--size", "3"]) == 0, case
    out = capsys.readouterr().out
    assert "CrossEntropyLoss(reduction='none', label_smoothing=0.3)" in out
    assert "BCEWithLogitsLoss(reduction='sum')" in out
    with pytest.raises(SystemExit) as info:
        main(["gradcheck", "crossentropy", "--label-smoothing", "2"])
    assert info.value.code == 2
    assert "im2col-net: error: CrossEntropyLoss: label_smoothing must be a number in [0, 1]" \
        in capsys.readouterr().err
