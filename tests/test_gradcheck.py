"""The gradient checker: passes correct layers, pins down wrong gradients, handles kinks,
Dropout, float32 targets and plain functions."""

import copy
import pickle
import warnings

import numpy as np
import pytest

from im2col_net import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from im2col_net.functional.basic import (
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from im2col_net.gradcheck import (
    GradcheckError,
    GradcheckReport,
    GradcheckWarning,
    gradcheck,
)


def normal(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def tie_free(shape, seed=0):
    """Distinct values 0.05 apart in random order: no max-pool window has a near-tie."""
    size = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(size) - size / 2) * 0.05).reshape(shape)


def away_from_zero(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.0, shape)


@pytest.fixture(autouse=True)
def no_unexpected_warnings():
    # A GradcheckWarning on clean data would mean a spurious kink report.
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradcheckWarning)
        yield


class WrongInputGrad(Linear):
    """Linear whose dx has one wrong element."""

    def backward(self, dy):
        dx = super().backward(dy).copy()
        dx[1, 2] += 0.5
        return dx


class WrongBiasGrad(Linear):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["bias"] = self.grads["bias"].copy()
        self.grads["bias"][3] -= 0.25
        return dx


class WrongWeightGrad(Conv2D):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["weight"] = self.grads["weight"].copy()
        self.grads["weight"][2, 1, 0, 2] += 1.0
        return dx


# -- correct layers pass ----------------------------------------------------------------


@pytest.mark.parametrize("layer, x", [
    (Conv2D(3, 4, 3, padding=1, rng=0, dtype=np.float64), normal((2, 3, 5, 5))),
    (Conv2D(4, 4, (3, 2), stride=2, padding="valid", dilation=(1, 2), groups=2, rng=1,
            padding_mode="reflect", dtype=np.float64), normal((1, 4, 7, 8))),
    (MaxPool2D(3, stride=2, padding=1), tie_free((2, 2, 6, 5))),
    (AvgPool2D(2, stride=1, padding=1, count_include_pad=False), normal((1, 2, 4, 4))),
    (Linear(5, 3, rng=2, dtype=np.float64), normal((4, 5))),
    (ReLU(), away_from_zero((3, 4))),
    (LeakyReLU(0.1), away_from_zero((3, 4))),
    (Sigmoid(), normal((3, 4))),
    (Tanh(), normal((3, 4))),
])
def test_correct_layers_pass(layer, x):
    report = gradcheck(layer, x)
    assert report.ok, str(report)
    expected = ["input 0", *(name for name, _ in layer.named_parameters())]
    assert report.names == expected
    for row in report.rows:
        assert row.checked == int(np.prod(row.shape))
        assert row.max_abs_error < 1e-6
        assert row.kinks == 0


def test_sequential_passes_with_dotted_parameter_names():
    model = Sequential(
        Conv2D(2, 3, 3, padding=1, rng=0, dtype=np.float64), Tanh(), AvgPool2D(2), Flatten(),
        Linear(12, 2, rng=1, dtype=np.float64),
    )
    report = gradcheck(model, normal((2, 2, 4, 4)))
    assert report.ok, str(report)
    assert report.names == ["input 0", "0.weight", "0.bias", "4.weight", "4.bias"]


# -- wrong gradients are pinned down ----------------------------------------------------------


def test_wrong_input_gradient_reports_name_and_worst_index():
    layer = WrongInputGrad(4, 3, rng=0, dtype=np.float64)
    report = gradcheck(layer, normal((3, 4)))
    assert not report.ok
    assert [row.name for row in report.failed] == ["input 0"]
    row = report.row("input 0")
    assert row.worst_index == (1, 2)
    assert row.analytic - row.numeric == pytest.approx(0.5, abs=1e-6)
    assert row.max_abs_error == pytest.approx(0.5, abs=1e-6)
    assert report.row("weight").passed and report.row("bias").passed
    assert "FAIL" in str(report) and "FAILED" in str(report)


def test_wrong_parameter_gradient_reported_under_its_name():
    report = gradcheck(WrongBiasGrad(4, 5, rng=0, dtype=np.float64), normal((3, 4)))
    assert [row.name for row in report.failed] == ["bias"]
    assert report.row("bias").worst_index == (3,)
    assert report.row("bias").numeric - report.row("bias").analytic == pytest.approx(0.25)


def test_wrong_gradient_inside_sequential_gets_its_dotted_name():
    model = Sequential(
        Linear(4, 6, rng=0, dtype=np.float64), Tanh(),
        WrongBiasGrad(6, 5, rng=1, dtype=np.float64),
    )
    report = gradcheck(model, normal((2, 4)))
    assert [row.name for row in report.failed] == ["2.bias"]
    assert report.row("2.bias").worst_index == (3,)


def test_nan_gradient_fails_at_its_index():
    class NanGrad(Tanh):
        def backward(self, dy):
            dx = super().backward(dy).copy()
            dx[0, 1] = np.nan
            return dx

    report = gradcheck(NanGrad(), normal((2, 3)))
    assert not report.ok
    row = report.row("input 0")
    assert row.worst_index == (0, 1) and np.isnan(row.analytic)


def test_layer_without_input_gradient_checks_its_parameters():
    layer = Conv2D(2, 3, 2, rng=0, dtype=np.float64)
    layer.compute_input_grad = False
    report = gradcheck(layer, normal((1, 2, 3, 3)))
    assert report.ok and report.names == ["weight", "bias"]


def test_raise_on_failure_raises_with_the_report():
    layer = WrongWeightGrad(2, 3, 3, rng=0, dtype=np.float64)
    with pytest.raises(GradcheckError) as info:
        gradcheck(layer, normal((1, 2, 4, 4)), raise_on_failure=True)
    error = info.value
    assert isinstance(error, AssertionError)
    assert isinstance(error.report, GradcheckReport)
    assert not error.report.ok
    assert error.report.row("weight").worst_index == (2, 1, 0, 2)
    assert "weight" in str(error) and "FAIL" in str(error)
    assert pickle.loads(pickle.dumps(error)).report.rows == error.report.rows


def test_raise_on_failure_is_silent_when_correct():
    report = gradcheck(Linear(3, 2, rng=0), normal((2, 3)), raise_on_failure=True)
    assert report.ok


def test_fast_mode_passes_correct_and_catches_wrong_gradients():
    x = normal((1, 2, 5, 5))
    good = gradcheck(Conv2D(2, 3, 3, rng=0, dtype=np.float64), x, mode="fast", directions=3)
    assert good.ok, str(good)
    assert all(row.checked == 3 and len(row.worst_index) == 1 for row in good.rows)
    bad = gradcheck(WrongWeightGrad(2, 3, 3, rng=0, dtype=np.float64), x, mode="fast",
                    directions=3)
    assert [row.name for row in bad.failed] == ["weight"]
    assert "direction" in str(bad)


def test_table_is_aligned():
    report = gradcheck(Sequential(Linear(3, 2, rng=0), Tanh()), normal((2, 3)))
    lines = str(report).splitlines()
    header = next(line for line in lines if line.startswith("tensor"))
    body = [line for line in lines if line.startswith(("input 0", "0.weight", "0.bias"))]
    assert len(body) == 3
    for column in ("shape", "result"):
        start = header.index(column)
        for line in body:
            assert line[start - 2:start] == "  " and line[start] != " "


# -- float32 targets and the caller's objects ----------------------------------------------


def test_float32_layer_checked_in_float64_and_left_unchanged():
    layer = Conv2D(2, 3, 3, padding=1, rng=0)            # float32
    x = normal((2, 2, 4, 4), dtype=np.float32)
    y_before = layer.forward(x)                          # leaves a cache behind
    state = layer.state_dict()
    cache, x_before = layer._cache, x.copy()
    report = gradcheck(layer, x)
    # In float32 an eps of 1e-6 is below the rounding step: passing needs float64.
    assert report.ok, str(report)
    assert report.source_dtype == "float32" and "float64" in str(report)
    assert layer.params["weight"].dtype == np.float32
    for name, value in layer.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, state[name])
    assert layer._cache is cache
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(layer.forward(x), y_before)


# -- kinks -----------------------------------------------------------------------------


def test_relu_at_zero_warns_instead_of_failing():
    x = np.array([[0.0, 0.7, -0.4], [-0.9, 0.0, 0.3]])
    with pytest.warns(GradcheckWarning, match="kink") as record:
        report = gradcheck(ReLU(), x)
    assert report.ok, str(report)
    assert report.row("input 0").kinks == 2
    assert any("ReLU" in str(w.message) for w in record)
    assert report.notes and "excused" in report.notes[0]


def test_wrong_gradient_at_a_kink_still_fails():
    class BadReLU(ReLU):
        """Returns 3 * dy where the input is exactly 0 (the valid range is [0, dy])."""

        def forward(self, x):
            self._at_zero = x == 0
            return super().forward(x)

        def backward(self, dy):
            return super().backward(dy) + 3.0 * dy * self._at_zero

    x = np.array([[0.0, 0.7, -0.4]])
    report = gradcheck(BadReLU(), x)      # analytic 3*dy lies outside the one-sided slopes
    assert not report.ok
    assert report.row("input 0").worst_index == (0, 0)


def test_max_pool_tie_warns_instead_of_failing():
    x = tie_free((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 0, 0] = x[0, 0, :2, :2].max() + 1.0
    with pytest.warns(GradcheckWarning, match="MaxPool2D"):
        report = gradcheck(MaxPool2D(2), x)
    assert report.ok and report.row("input 0").kinks == 2


def test_kink_inside_sequential_is_located():
    model = Sequential(Linear(2, 2, rng=0, dtype=np.float64), ReLU())
    x = normal((1, 2))
    # Choose the bias so that the first ReLU input is exactly 0.
    model[0].params["bias"][0] = -(x @ model[0].params["weight"].T)[0, 0]
    with pytest.warns(GradcheckWarning, match="ReLU at '1'"):
        report = gradcheck(model, x)
    assert report.ok


# -- Dropout and randomness ------------------------------------------------------------------


def test_dropout_in_training_mode_passes_and_its_rng_is_untouched():
    layer = Dropout(0.5, rng=3)
    state = copy.deepcopy(layer.rng.bit_generator.state)
    report = gradcheck(layer, normal((4, 6), dtype=np.float32))
    assert report.ok, str(report)
    assert layer.rng.bit_generator.state == state
    assert layer.training


def test_dropout_inside_sequential_and_fast_mode():
    model = Sequential(Linear(5, 8, rng=0), Dropout(0.3, rng=1), Tanh(), Linear(8, 2, rng=2))
    assert gradcheck(model, normal((3, 5), dtype=np.float32)).ok
    assert gradcheck(model, normal((3, 5), dtype=np.float32), mode="fast").ok


def test_function_drawing_from_a_closure_generator_is_reseeded():
    rng = np.random.default_rng(0)
    state = copy.deepcopy(rng.bit_generator.state)

    def noisy(x):
        return x * rng.uniform(0.5, 1.5, x.shape)

    def noisy_backward(dy, x):
        # Replays the draw of the forward call just made.
        rng.bit_generator.state = state
        return (dy * rng.uniform(0.5, 1.5, x.shape),)

    assert gradcheck(noisy, normal((3, 3)), backward=noisy_backward).ok
    assert rng.bit_generator.state == state


# -- plain functions ------------------------------------------------------------------------


def test_function_with_backward():
    def f(x, w):
        return np.tanh(x @ w)

    def f_backward(dy, x, w):
        g = dy * (1 - np.tanh(x @ w) ** 2)
        return g @ w.T, x.T @ g

    x, w = normal((3, 4), seed=1, dtype=np.float32), normal((4, 2), seed=2, dtype=np.float32)
    report = gradcheck(f, x, w, backward=f_backward)
    assert report.ok, str(report)
    assert report.names == ["input 0", "input 1"]
    assert report.source_dtype == "float32" and x.dtype == np.float32

    def wrong_backward(dy, x, w):
        gx, gw = f_backward(dy, x, w)
        gw = gw.copy()
        gw[3, 1] *= -1
        return gx, gw

    report = gradcheck(f, x, w, backward=wrong_backward)
    assert [row.name for row in report.failed] == ["input 1"]
    assert report.row("input 1").worst_index == (3, 1)


def test_function_with_integer_argument_and_scalar_output():
    labels = np.array([2, 0, 1])

    def loss(logits, labels):
        return softmax_cross_entropy_forward(logits, labels)[0]

    def loss_backward(dy, logits, labels):
        _, cache = softmax_cross_entropy_forward(logits, labels)
        return softmax_cross_entropy_backward(cache, float(dy)), None

    report = gradcheck(loss, normal((3, 4)), labels, backward=loss_backward)
    assert report.ok, str(report)
    assert report.names == ["input 0"]


def test_explicit_dy_is_used():
    calls = []

    def backward(dy, x):
        calls.append(dy.copy())
        return (dy * np.cos(x),)

    dy = np.arange(6.0).reshape(2, 3)
    assert gradcheck(np.sin, normal((2, 3)), backward=backward, dy=dy).ok
    np.testing.assert_array_equal(calls[0], dy)


# -- bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="medium"), "mode"),
    (dict(eps=0.0), "eps"),
    (dict(atol=-1.0), "atol"),
    (dict(directions=0), "directions"),
    (dict(seed=-1), "seed"),
    (dict(dy=np.zeros((2, 2))), "dy"),
])
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gradcheck(Tanh(), normal((3, 2)), **kwargs)


def test_bad_targets_and_inputs_raise_value_error():
    with pytest.raises(ValueError, match="backward="):
        gradcheck(np.sin, normal(3))
    with pytest.raises(ValueError, match="exactly one input"):
        gradcheck(Tanh(), normal(3), normal(3))
    with pytest.raises(ValueError, match="floating-point"):
        gradcheck(Tanh(), np.arange(3))
    with pytest.raises(ValueError, match="layer"):
        gradcheck(Tanh(), normal(3), backward=lambda dy, x: dy)
    with pytest.raises(ValueError, match="shape"):
        gradcheck(np.sin, normal(3), backward=lambda dy, x: (dy[:2],))
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(np.sin, np.arange(3), backward=lambda dy, x: (dy,))
