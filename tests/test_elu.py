"""ELU (functional and layer) against the reference loops and finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from im2col_net import ELU
from im2col_net import functional as F
from im2col_net import reference as ref
from im2col_net.testing import (
    arrays,
    assert_close,
    assert_layer_matches_reference,
    assert_passes_gradcheck,
    away_from_zero,
    reference_pair,
)

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)
alphas = st.sampled_from([1.0, 0.3, 2.5])


@given(shape=shapes, alpha=alphas, dtype=st.sampled_from([np.float32, np.float64]),
       data=st.data())
def test_layer_matches_reference(shape, alpha, dtype, data):
    layer = ELU(alpha)
    x = data.draw(arrays(shape, dtype, scale=4.0, noncontiguous=True))
    y, dx = assert_layer_matches_reference(layer, *reference_pair(layer), x)
    assert y.dtype == dx.dtype == np.dtype(dtype)


@given(shape=shapes, alpha=alphas, data=st.data())
def test_functional_matches_reference(shape, alpha, data):
    x = data.draw(arrays(shape, np.float32, scale=4.0))
    y, slope = F.elu_forward(x, alpha)
    assert_close(y, ref.elu_forward(x, alpha), what="y")
    dy = data.draw(arrays(shape, np.float32))
    assert_close(F.elu_backward(dy, slope), ref.elu_backward(x, dy, alpha), what="dx")


@given(shape=shapes, alpha=alphas, data=st.data())
def test_passes_gradcheck(shape, alpha, data):
    # ELU is C1 only for alpha == 1; keep the inputs off the kink at 0.
    x = data.draw(away_from_zero(shape, np.float64, margin=1e-3, scale=3.0))
    assert_passes_gradcheck(ELU(alpha), x)


def test_large_inputs_do_not_overflow():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32)
    with np.errstate(all="raise"):
        y, slope = F.elu_forward(x)
    np.testing.assert_allclose(y, [-1.0, -1.0, 0.0, 50.0, 1e4], rtol=1e-6)
    np.testing.assert_allclose(slope, [0.0, 0.0, 1.0, 1.0, 1.0], atol=1e-20)


def test_config_and_bad_alpha():
    assert ELU(0.5).get_config() == {"alpha": 0.5}
    assert ELU.from_config({"alpha": 0.5}).alpha == 0.5
    for bad in (float("nan"), "x", None, True):
        with pytest.raises(ValueError, match="ELU: alpha must be a finite number"):
            ELU(bad)
