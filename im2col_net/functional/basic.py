"""Dense, element-wise and loss operations: forward ``(y, cache)``, backward gradients.

Shapes are in the docstrings; every result keeps the input's dtype.
"""

from __future__ import annotations

import time

import numpy as np

from ..runtime import for_row_blocks, matmul, zeros
from . import planner

__all__ = [
    "LINEAR_STRATEGIES",
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "dropout_forward",
    "dropout_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "log_softmax",
]


LINEAR_STRATEGIES = planner.LINEAR_ALGORITHMS + ("auto",) + planner.MODES


def linear_forward(x, weight, bias=None, *, strategy="auto"):
    """``x (N, in) @ weight.T (in, out) + bias (out,)`` -> ``y (N, out)``.

    ``strategy``: the GEMM orientation, ``"xw"`` (``y`` C-ordered) or ``"wx"`` (``yᵀ =
    W xᵀ``; ``y`` is returned as a transposed, Fortran-ordered view), or ``"auto"`` /
    a planner mode to let the planner choose per shape (:mod:`.planner`). Both give the
    same values up to rounding.
    """
    x, weight = np.asarray(x), np.asarray(weight)
    if x.ndim != 2 or weight.ndim != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"linear: expected x (N, in) and weight (out, in), got shapes {x.shape} and "
            f"{weight.shape}"
        )
    if bias is not None and np.shape(bias) != (weight.shape[0],):
        raise ValueError(
            f"linear: expected bias of shape ({weight.shape[0]},), got {np.shape(bias)}"
        )
    y = _linear_product(x, weight, linear_plan(x.shape[0], weight, bias, strategy).algorithm)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_plan(n, weight, bias=None, strategy="auto") -> planner.Plan:
    """The plan a :func:`linear_forward` of ``n`` rows with this weight and bias runs."""
    if strategy not in LINEAR_STRATEGIES:
        raise ValueError(f"linear: strategy must be one of {LINEAR_STRATEGIES}, got "
                         f"{strategy!r}")
    if n == 0 or strategy in planner.LINEAR_ALGORITHMS:
        return planner.Plan(planner.LINEAR_ALGORITHMS[0] if n == 0 else strategy, 0, "fixed")
    out_features, in_features = weight.shape
    args = (n, in_features, out_features, weight.dtype, bias is not None, None,
            _linear_timer(n, weight, bias))
    if strategy in planner.MODES:
        with planner.planning(strategy):
            return planner.choose_linear(*args)
    return planner.choose_linear(*args)


def _linear_product(x, weight, algorithm):
    if algorithm == "wx":
        return matmul(weight, x.T).T
    return matmul(x, weight.T)


def _linear_timer(n, weight, bias):
    """The planner's runner: seconds of one forward in a given orientation, on random
    arrays of the real shape from a private generator (made once, on the first call)."""
    data = []

    def run(algorithm):
        if not data:
            rng = np.random.default_rng(0x11E)
            data.extend([rng.standard_normal((n, weight.shape[1])).astype(weight.dtype),
                         rng.standard_normal(weight.shape).astype(weight.dtype),
                         None if bias is None else np.zeros(weight.shape[0], weight.dtype)])
        x, w, b = data
        start = time.perf_counter()
        y = _linear_product(x, w, algorithm)
        if b is not None:
            y += b
        return time.perf_counter() - start

    return run


def linear_backward(dy, cache):
    """``dy (N, out)`` -> ``dx (N, in)``, ``dw (out, in)``, ``db (out,)`` or None."""
    x, weight, has_bias = cache
    dx = matmul(dy, weight)
    dw = matmul(dy.T, x)
    db = dy.sum(axis=0) if has_bias else None
    return dx, dw, db


def relu_forward(x):
    """``max(x, 0)``, any shape and layout (the result has ``x``'s memory order).

    The cache is ``x`` itself: backward needs only its sign, and the caller keeps ``x``
    unchanged (as every layer here does with its input)."""
    x = np.asarray(x)
    y = np.empty_like(x)
    if x.ndim == 0:
        np.maximum(x, 0, out=y)
        return y, x
    # Against an array of zeros laid out like x (not the scalar 0), so that NumPy runs
    # its vector loop (runtime.zeros).
    order = sorted(range(x.ndim), key=lambda axis: -abs(x.strides[axis]))

    def block(start, stop, _):
        x_b, y_b = x[start:stop].transpose(order), y[start:stop].transpose(order)
        np.maximum(x_b, zeros(x_b.shape, x.dtype), out=y_b)

    for_row_blocks(x.shape[0], x[:1].nbytes, block)
    return y, x


def relu_backward(dy, cache):
    """``dy`` where the forward input was positive, 0 elsewhere (also at exactly 0).

    ``cache``: the forward input (or any array whose positive entries mark the same
    positions, such as a boolean mask). The result has ``dy``'s dtype and layout."""
    dy = np.asarray(dy)
    dx = np.empty_like(dy)
    if dy.ndim == 0:
        np.multiply(dy, cache > 0, out=dx)
        return dx

    def block(start, stop, _):
        # The mask takes the cache's memory order (often an NCHW view of NHWC data).
        np.multiply(dy[start:stop], np.greater(cache[start:stop], 0), out=dx[start:stop])

    for_row_blocks(dy.shape[0], dy[:1].nbytes, block)
    return dx


def leaky_relu_forward(x, negative_slope=0.01):
    """``x`` where positive, ``negative_slope * x`` elsewhere.

    ``x`` any shape -> ``y`` same shape and dtype, and the cache: the per-element slope
    (1 or ``negative_slope``), ``x``'s shape and dtype.
    """
    slope = np.where(x > 0, np.ones((), x.dtype), np.asarray(negative_slope, x.dtype))
    return x * slope, slope


def leaky_relu_backward(dy, slope):
    """``dy`` (the forward output's shape) times the cached slope -> ``dx``, same shape."""
    return dy * slope


def sigmoid_forward(x):
    """Logistic function, computed without overflow for large ``|x|``.

    ``x`` any shape -> ``y`` same shape and dtype; the cache is ``y`` itself.
    """
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy, y):
    """``dx = dy * y * (1 - y)``, all of the forward output's shape and dtype."""
    return dy * y * (1 - y)


def tanh_forward(x):
    """``tanh(x)``: any shape -> same shape and dtype; the cache is ``y`` itself."""
    y = np.tanh(x)
    return y, y


def tanh_backward(dy, y):
    """``dx = dy * (1 - y**2)``, all of the forward output's shape and dtype."""
    return dy * (1 - y * y)


def dropout_forward(x, p, rng: np.random.Generator, training=True):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    ``x`` any shape -> ``y`` same shape and dtype, and the cache: the mask of scales
    (``x``'s shape and dtype), or None when nothing was dropped. In evaluation mode
    (``training=False``) or with ``p == 0`` it is the identity.
    """
    if not training or p == 0:
        return x, None
    keep = rng.random(x.shape, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    mask = np.where(keep >= p, scale, np.zeros((), x.dtype))
    return x * mask, mask


def dropout_backward(dy, mask):
    """``dx = dy * mask`` (``dy`` itself when the forward pass dropped nothing)."""
    return dy if mask is None else dy * mask


def log_softmax(logits):
    """Row-wise ``log softmax`` of ``(N, K)`` logits via the log-sum-exp trick."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``.

    ``logits (N, K)`` float, ``labels (N,)`` ints in ``[0, K)``. Returns the loss as a
    Python float and a cache holding the probabilities.
    """
    logp = log_softmax(logits)
    n = logits.shape[0]
    loss = -logp[np.arange(n), labels].mean()
    return float(loss), (np.exp(logp), labels)


def softmax_cross_entropy_backward(cache, dloss=1.0):
    """``dlogits (N, K) = (softmax - onehot(labels)) / N * dloss``."""
    probs, labels = cache
    n = probs.shape[0]
    grad = probs.copy()
    grad[np.arange(n), labels] -= 1
    grad *= np.asarray(dloss / n, dtype=grad.dtype)
    return grad
