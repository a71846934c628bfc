"""GroupNorm, LayerNorm, InstanceNorm2D and LocalResponseNorm over
:mod:`im2col_net.functional.norms` (torch.nn's options and parameter names)."""

from __future__ import annotations

import numpy as np

from ..functional import norms as F
from .base import (
    Layer,
    check_count,
    check_float_dtype,
    check_float_input,
    check_input_shape,
    init_ones,
    init_zeros,
)


def _real(owner, name, value, *, positive=False) -> float:
    """``float(value)`` for a finite real (positive when asked); ``ValueError`` otherwise."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.number))
    number = float(value) if ok else float("nan")
    if not np.isfinite(number) or (positive and number <= 0):
        what = "a positive number" if positive else "a finite real number"
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}")
    return number


def _flag(owner, name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


class _Norm(Layer):
    """Shared bookkeeping: dtype, forward/backward wiring, parameter gradients."""

    _forward = None
    _backward = None

    def _setup_dtype(self, name, dtype):
        self._dtype = check_float_dtype(name, dtype)

    @property
    def dtype(self):
        return self._dtype

    def astype(self, dtype):
        super().astype(dtype)
        self._dtype = np.dtype(dtype)
        for key in ("running_mean", "running_var"):
            if key in getattr(self, "buffers", {}):
                self.buffers[key] = self.buffers[key].astype(dtype)
        return self

    def backward(self, dy):
        cache = self._require_cache()
        dy = self._check_dy(dy, cache.xhat.shape, cache.xhat.dtype)
        dx, dweight, dbias = type(self)._backward(dy, cache)
        if dweight is not None:
            self.grads["weight"] = dweight
        if dbias is not None:
            self.grads["bias"] = dbias
        return dx


class GroupNorm(_Norm):
    """Group normalisation (torch.nn.GroupNorm): ``(N, C, *) -> (N, C, *)``.

    The ``C`` channels form ``num_groups`` groups of consecutive channels; each sample's
    group is normalised with its own mean and biased variance, in training and
    evaluation alike. ``affine``: parameters ``weight`` (ones) and ``bias`` (zeros) of
    shape ``(C,)``.
    """

    _backward = staticmethod(F.group_norm_backward)

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, dtype=np.float32):
        super().__init__()
        name = f"GroupNorm({num_groups!r}, {num_channels!r})"
        check_count(name, "num_groups", num_groups)
        check_count(name, "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"{name}: num_channels must be divisible by num_groups, got "
                             f"{num_channels} channels and {num_groups} groups")
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps = _real(name, "eps", eps, positive=True)
        self.affine = _flag(name, "affine", affine)
        self._setup_dtype(name, dtype)
        if self.affine:
            self.params["weight"] = init_ones(self.num_channels, self._dtype)
            self.params["bias"] = init_zeros(self.num_channels, self._dtype)

    def get_config(self):
        return dict(num_groups=self.num_groups, num_channels=self.num_channels, eps=self.eps,
                    affine=self.affine)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.num_channels}, *), "
                             f"got shape {shape}")
        return shape

    def forward(self, x):
        x = check_float_input(self, x, None, self._dtype)
        self.output_shape(x.shape)
        y, self._cache = F.group_norm_forward(x, self.num_groups, self.params.get("weight"),
                                              self.params.get("bias"), self.eps,
                                              owner=repr(self))
        return y

    def reference_pair(self):
        from .. import reference as ref

        def forward(x):
            return ref.group_norm_forward(x, self.num_groups, self.params.get("weight"),
                                          self.params.get("bias"), self.eps)

        def backward(x, dy):
            dx, dw, db = ref.group_norm_backward(x, dy, self.num_groups,
                                                 self.params.get("weight"),
                                                 self.params.get("bias"), self.eps)
            return dx, {"weight": dw, "bias": db}

        return forward, backward


class LayerNorm(_Norm):
    """Layer normalisation (torch.nn.LayerNorm) over the last ``len(normalized_shape)``
    axes, which must equal ``normalized_shape`` (an int or a tuple).

    ``elementwise_affine``: parameter ``weight`` (ones) and, with ``bias=True`` (torch
    2.x's option), ``bias`` (zeros), both of ``normalized_shape``.
    """

    _backward = staticmethod(F.layer_norm_backward)

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *,
                 dtype=np.float32):
        super().__init__()
        name = f"LayerNorm({normalized_shape!r})"
        dims = ((normalized_shape,) if isinstance(normalized_shape, (int, np.integer))
                else normalized_shape)
        try:
            dims = tuple(dims)
        except TypeError:
            dims = None
        if not dims:
            raise ValueError(f"{name}: normalized_shape must be a positive int or a non-empty "
                             f"tuple of them, got {normalized_shape!r}")
        self.normalized_shape = tuple(check_count(name, "normalized_shape", d) for d in dims)
        self.eps = _real(name, "eps", eps, positive=True)
        self.elementwise_affine = _flag(name, "elementwise_affine", elementwise_affine)
        self.bias = _flag(name, "bias", bias)
        self._setup_dtype(name, dtype)
        if self.elementwise_affine:
            self.params["weight"] = init_ones(self.normalized_shape, self._dtype)
            if self.bias:
                self.params["bias"] = init_zeros(self.normalized_shape, self._dtype)

    def get_config(self):
        return dict(normalized_shape=list(self.normalized_shape), eps=self.eps,
                    elementwise_affine=self.elementwise_affine, bias=self.bias)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        k = len(self.normalized_shape)
        if len(shape) <= k or shape[len(shape) - k:] != self.normalized_shape:
            raise ValueError(f"{self!r}: expected input of shape (N, ..., "
                             f"{', '.join(map(str, self.normalized_shape))}), got shape {shape}")
        return shape

    def forward(self, x):
        x = check_float_input(self, x, None, self._dtype)
        self.output_shape(x.shape)
        y, self._cache = F.layer_norm_forward(x, self.normalized_shape,
                                              self.params.get("weight"),
                                              self.params.get("bias"), self.eps,
                                              owner=repr(self))
        return y

    def reference_pair(self):
        from .. import reference as ref

        def forward(x):
            return ref.layer_norm_forward(x, self.normalized_shape, self.params.get("weight"),
                                          self.params.get("bias"), self.eps)

        def backward(x, dy):
            dx, dw, db = ref.layer_norm_backward(x, dy, self.normalized_shape,
                                                 self.params.get("weight"),
                                                 self.params.get("bias"), self.eps)
            return dx, {"weight": dw, "bias": db}

        return forward, backward


class InstanceNorm2D(_Norm):
    """Instance normalisation of ``(N, C, H, W)`` (torch.nn.InstanceNorm2d): each
    ``(n, c)`` plane normalised with its own mean and biased variance.

    ``affine`` (default False): ``weight``/``bias`` of shape ``(C,)``.
    ``track_running_stats`` (default False): buffers ``running_mean``, ``running_var``
    and ``num_batches_tracked``; training updates the running statistics with the batch
    average of the plane statistics and evaluation normalises with them. As in torch,
    ``momentum=None`` leaves the running statistics unchanged and ``num_batches_tracked``
    is never incremented (torch's InstanceNorm passes momentum 0 and skips the count).
    Unbatched ``(C, H, W)`` input is refused.
    """

    _backward = staticmethod(F.instance_norm_backward)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, *, dtype=np.float32):
        super().__init__()
        name = f"InstanceNorm2D({num_features!r})"
        self.num_features = check_count(name, "num_features", num_features)
        self.eps = _real(name, "eps", eps, positive=True)
        if momentum is not None and not 0.0 <= _real(name, "momentum", momentum) <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.affine = _flag(name, "affine", affine)
        self.track_running_stats = _flag(name, "track_running_stats", track_running_stats)
        self._setup_dtype(name, dtype)
        if self.affine:
            self.params["weight"] = init_ones(self.num_features, self._dtype)
            self.params["bias"] = init_zeros(self.num_features, self._dtype)
        self.buffers: dict[str, np.ndarray] = {}
        if self.track_running_stats:
            self.buffers["running_mean"] = init_zeros(self.num_features, self._dtype)
            self.buffers["running_var"] = init_ones(self.num_features, self._dtype)
            self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)

    def get_config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum,
                    affine=self.affine, track_running_stats=self.track_running_stats)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        if len(shape) != 4 or shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.num_features}, H, W)"
                             f", got shape {shape}")
        return shape

    def _use_input_stats(self):
        return self.training or not self.track_running_stats

    def forward(self, x):
        x = check_float_input(self, x, None, self._dtype)
        self.output_shape(x.shape)
        running = ((self.buffers["running_mean"], self.buffers["running_var"])
                   if self.track_running_stats else (None, None))
        y, self._cache = F.instance_norm_forward(
            x, *running, self.params.get("weight"), self.params.get("bias"),
            self._use_input_stats(), 0.0 if self.momentum is None else self.momentum, self.eps,
            owner=repr(self))
        return y

    def reference_pair(self):
        """The reference at the running statistics current when it is called (take it
        before a training forward updates them)."""
        from .. import reference as ref

        running = ((self.buffers["running_mean"].copy(), self.buffers["running_var"].copy())
                   if self.track_running_stats else (None, None))
        use = self._use_input_stats()

        def forward(x):
            return ref.instance_norm_forward(x, *running, self.params.get("weight"),
                                             self.params.get("bias"), use, 0.0, self.eps)[0]

        def backward(x, dy):
            dx, dw, db = ref.instance_norm_backward(x, dy, *running, self.params.get("weight"),
                                                    self.params.get("bias"), use, self.eps)
            return dx, {"weight": dw, "bias": db}

        return forward, backward


class LocalResponseNorm(Layer):
    """Local response normalisation across channels (torch.nn.LocalResponseNorm) of
    ``(N, C, *)`` with at least 3 dimensions::

        y[:, c] = x[:, c] / (k + alpha / size * sum_{i=c-size//2}^{c+(size-1)//2} x[:, i]^2)^beta

    Channels beyond the edges count as zeros but the divisor stays ``size`` (torch pads
    the channel axis and average-pools it). No parameters.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        name = f"LocalResponseNorm({size!r})"
        self.size = check_count(name, "size", size)
        self.alpha = _real(name, "alpha", alpha)
        self.beta = _real(name, "beta", beta)
        self.k = _real(name, "k", k)

    def get_config(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape)
        if len(shape) < 3:
            raise ValueError(f"{self!r}: expected an input (N, C, *) of 3 or more dimensions, "
                             f"got shape {shape}")
        return shape

    def forward(self, x):
        x = check_float_input(self, x)
        self.output_shape(x.shape)
        y, self._cache = F.local_response_norm_forward(x, self.size, self.alpha, self.beta,
                                                       self.k, owner=repr(self))
        return y

    def backward(self, dy):
        cache = self._require_cache()
        dy = self._check_dy(dy, cache.x.shape, cache.x.dtype)
        return F.local_response_norm_backward(dy, cache)

    def reference_pair(self):
        from .. import reference as ref

        return (lambda x: ref.local_response_norm_forward(x, self.size, self.alpha, self.beta,
                                                          self.k),
                lambda x, dy: ref.local_response_norm_backward(x, dy, self.size, self.alpha,
                                                               self.beta, self.k))

