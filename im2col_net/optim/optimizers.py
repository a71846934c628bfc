"""First-order optimizers whose update rules and defaults follow ``torch.optim``.

An optimizer holds a dict ``name -> ndarray`` of parameters (usually ``model.params``,
dotted names for containers) and updates those very arrays in place on each
:meth:`Optimizer.step`, so the model's dicts stay valid. Gradients are passed to
``step(grads)`` as a dict with the same names, shapes and dtypes (usually
``model.grads``); they are read, never modified.

dtype: every state buffer has its parameter's dtype and all hyper-parameters are
Python floats (numpy treats them as "weak" scalars), so float32 parameters are updated
entirely in float32. The hot path uses in-place ufuncs; temporaries go to a few
per-thread work buffers (one per "slot", reused across steps) rather than fresh arrays.

Every update rule is element-wise, so large parameters are updated in chunks of about
:data:`CHUNK_BYTES`, spread over the engine's threads (NumPy releases the GIL in its
loops) together with the small parameters: the result is bit-for-bit the same as one
pass per parameter, for any thread count.

Each optimizer's update for a parameter ``p`` with gradient ``g`` at step ``t``
(counted from 1) is documented on its class; ``wd`` is ``weight_decay``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import numpy as np

from ..runtime import block_bounds, block_count, run_blocks, scratch
from ._checks import flag as _flag
from ._checks import real_number as _number

__all__ = [
    "Optimizer",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "OPTIMIZERS",
    "make_optimizer",
    "optimizer_from_config",
]

_STEP_KEY = "step"
# Parameters larger than this are updated in chunks of about this size, which threads
# take one at a time (the 3136 x 512 weight of the default model is 6.4 MB). Fewer,
# larger chunks win: each costs a dozen ufunc calls whose GIL hand-overs add up.
CHUNK_BYTES = 2 << 20


# -- the protocol -------------------------------------------------------------------------
class Optimizer:
    """Base class: parameter bookkeeping, gradient checks, state save/restore.

    Parameters
    ----------
    params : dict[str, ndarray] (or iterable of ``(name, array)`` pairs)
        Floating-point, writeable arrays updated in place. Each array object may appear
        only once. Create the optimizer after any ``model.astype(...)``, which replaces
        the arrays.
    lr : float >= 0
        Learning rate; the :attr:`lr` attribute may be reassigned between steps.

    Subclasses set ``name`` (registry key), ``buffer_names`` (per-parameter state
    buffers, each an array of the parameter's shape and dtype, named
    ``"<buffer>.<param name>"`` in :meth:`state_dict`) and implement
    ``_update(param, grad, state)``: the element-wise rule applied in place to ``param``
    and the ``state`` buffers (a dict by buffer name), all of one shape -- a whole
    parameter or a flat chunk of one, so the rule must not depend on positions.
    """

    name = "optimizer"
    buffer_names: tuple[str, ...] = ()

    def __init__(self, params, lr: float):
        owner = type(self).__name__
        items = list(params.items()) if isinstance(params, Mapping) else list(params)
        if not items:
            raise ValueError(f"{owner}: got an empty parameter dict")
        self._params: dict[str, np.ndarray] = {}
        seen: dict[int, str] = {}
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(
                    f"{owner}: params must be a dict name -> ndarray or (name, ndarray) pairs,"
                    f" got item {item!r}"
                )
            pname, array = item
            if not isinstance(pname, str):
                raise ValueError(f"{owner}: parameter names must be str, got {pname!r}")
            if pname in self._params:
                raise ValueError(f"{owner}: parameter name {pname!r} given twice")
            if not isinstance(array, np.ndarray):
                raise ValueError(
                    f"{owner}: parameter {pname!r} must be a numpy ndarray (it is updated in"
                    f" place), got {type(array).__name__}"
                )
            if array.dtype.kind != "f":
                raise ValueError(
                    f"{owner}: parameter {pname!r} must have a floating dtype, got {array.dtype}"
                )
            if not array.flags.writeable:
                raise ValueError(f"{owner}: parameter {pname!r} is a read-only array")
            if id(array) in seen:
                raise ValueError(
                    f"{owner}: parameters {seen[id(array)]!r} and {pname!r} are the same array"
                )
            seen[id(array)] = pname
            self._params[pname] = array
        self.lr = lr
        self.step_count = 0
        self._buffers: dict[str, dict[str, np.ndarray]] = {
            kind: {pname: self._init_buffer(kind, p) for pname, p in self._params.items()}
            for kind in self.buffer_names
        }
        self._chunks = {
            pname: self._chunk_bounds(p, [self._buffers[k][pname] for k in self.buffer_names])
            for pname, p in self._params.items()
        }

    # -- hyper-parameters -----------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate (Python float); schedules assign it between steps."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _number(type(self).__name__, "lr", value, low=0.0)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameter arrays being optimised (a new dict of the same objects)."""
        return dict(self._params)

    def _hyperparameters(self) -> dict:
        """JSON-able constructor arguments other than ``params`` (subclasses extend)."""
        return {"lr": self.lr}

    def get_config(self) -> dict:
        """``{"class": ..., "name": ..., <constructor arguments>}``, JSON-serialisable."""
        return {"class": type(self).__name__, "name": self.name, **self._hyperparameters()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({args})"

    # -- stepping -------------------------------------------------------------------------
    def _init_buffer(self, kind: str, param: np.ndarray) -> np.ndarray:
        return np.zeros_like(param)

    def _check_grads(self, grads) -> None:
        owner = type(self).__name__
        if not isinstance(grads, Mapping):
            raise ValueError(
                f"{owner}.step: grads must be a dict name -> ndarray, got {type(grads).__name__}"
            )
        missing = sorted(set(self._params) - set(grads))
        unexpected = sorted(set(grads) - set(self._params))
        if missing or unexpected:
            raise ValueError(
                f"{owner}.step: gradient names do not match the parameters: missing {missing},"
                f" unexpected {unexpected}"
            )
        for pname, param in self._params.items():
            grad = grads[pname]
            if not isinstance(grad, np.ndarray):
                raise ValueError(
                    f"{owner}.step: gradient {pname!r} must be a numpy ndarray,"
                    f" got {type(grad).__name__}"
                )
            if grad.shape != param.shape:
                raise ValueError(
                    f"{owner}.step: gradient {pname!r} has shape {grad.shape},"
                    f" parameter has shape {param.shape}"
                )
            if grad.dtype != param.dtype:
                raise ValueError(
                    f"{owner}.step: gradient {pname!r} has dtype {grad.dtype},"
                    f" parameter has dtype {param.dtype}"
                )

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update to every parameter, in place.

        ``grads`` maps every parameter name to an array of that parameter's shape and
        dtype (extra or missing names -> ValueError). The gradients are not modified.
        """
        self._check_grads(grads)
        self.step_count += 1
        pieces = [(pname, bounds) for pname, chunks in self._chunks.items()
                  for bounds in chunks]
        # A chunked parameter's gradient is read through a flat view: copy it once if it
        # is not C-contiguous (instead of once per chunk).
        flat_grads = {pname: np.ascontiguousarray(grads[pname]).reshape(-1)
                      for pname, chunks in self._chunks.items() if chunks != [None]}

        def update(index, _worker):
            pname, bounds = pieces[index]
            param, grad = self._params[pname], grads[pname]
            state = {kind: self._buffers[kind][pname] for kind in self.buffer_names}
            if bounds is not None:
                start, stop = bounds
                param = param.reshape(-1)[start:stop]
                grad = flat_grads[pname][start:stop]
                state = {kind: buf.reshape(-1)[start:stop] for kind, buf in state.items()}
            self._update(param, grad, state)

        run_blocks(update, len(pieces))

    @staticmethod
    def _chunk_bounds(param: np.ndarray, buffers) -> list:
        """``[None]`` (the whole parameter in one piece) or flat ``(start, stop)`` chunks
        of a large one whose state buffers, like itself, are C-contiguous (so that
        ``reshape(-1)`` is a view, and updating a chunk updates the array)."""
        size = param.size
        if size * param.itemsize <= CHUNK_BYTES or not all(
                a.flags.c_contiguous for a in [param, *buffers]):
            return [None]
        count = block_count(size, param.itemsize, CHUNK_BYTES, minimum=1)
        return [block_bounds(i, size, count) for i in range(count)]

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    @staticmethod
    def _work(param: np.ndarray, slot: int) -> np.ndarray:
        """Scratch array shaped like ``param`` (contents undefined): this thread's buffer
        for ``slot``, reused by every piece the thread updates."""
        return scratch(f"optim.work{slot}", param.shape, param.dtype)

    def _decayed_grad(self, param, grad, weight_decay: float) -> np.ndarray:
        """``grad + weight_decay * param`` (L2 penalty folded into the gradient).

        Returns ``grad`` itself when ``weight_decay == 0``, else work slot 0.
        """
        if weight_decay == 0.0:
            return grad
        out = np.multiply(param, weight_decay, out=self._work(param, 0))
        out += grad
        return out

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the mutable state: ``"step"`` (0-d int64) and every buffer.

        Buffer keys are ``"<buffer>.<param name>"`` (e.g. ``"exp_avg.0.weight"``); all
        values are plain ndarrays, so the dict can be written with ``np.savez`` and read
        back with ``allow_pickle=False``. Hyper-parameters (incl. ``lr``) are not state;
        they live in :meth:`get_config`.
        """
        out = {_STEP_KEY: np.array(self.step_count, dtype=np.int64)}
        for kind, arrays in self._buffers.items():
            for pname, buf in arrays.items():
                out[f"{kind}.{pname}"] = buf.copy()
        return out

    def load_state_dict(self, state: Mapping) -> Optimizer:
        """Copy a :meth:`state_dict` into this optimizer; everything is checked first.

        Keys must match exactly, buffers must have the parameter's shape and a floating
        dtype (values are cast to the parameter's dtype), ``"step"`` must be a
        non-negative integer scalar. On error nothing is changed.
        """
        owner = type(self).__name__
        expected = {_STEP_KEY} | {
            f"{kind}.{pname}" for kind in self._buffers for pname in self._params
        }
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{owner}.load_state_dict: keys do not match: missing {missing},"
                f" unexpected {unexpected}"
            )
        step = np.asarray(state[_STEP_KEY])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(
                f"{owner}.load_state_dict: 'step' must be a non-negative integer scalar,"
                f" got shape {step.shape} dtype {step.dtype}"
            )
        values = {}
        for kind, arrays in self._buffers.items():
            for pname, buf in arrays.items():
                key = f"{kind}.{pname}"
                value = np.asarray(state[key])
                if value.shape != buf.shape:
                    raise ValueError(
                        f"{owner}.load_state_dict: {key!r} expects shape {buf.shape},"
                        f" got {value.shape}"
                    )
                if value.dtype.kind != "f":
                    raise ValueError(
                        f"{owner}.load_state_dict: {key!r} must be floating point,"
                        f" got dtype {value.dtype}"
                    )
                values[(kind, pname)] = value
        for (kind, pname), value in values.items():
            np.copyto(self._buffers[kind][pname], value, casting="same_kind")
        self.step_count = int(step)
        return self


# -- the optimizers -----------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, L2.

    ``g <- g + wd * p``; with momentum ``mu != 0``: ``b <- g`` at t = 1, else
    ``b <- mu * b + (1 - dampening) * g``; then ``g <- g + mu * b`` (nesterov) or
    ``g <- b``; finally ``p <- p - lr * g``. As torch.optim.SGD (whose lr default is
    1e-3 since torch 2.2). Nesterov needs ``momentum > 0`` and ``dampening == 0``.
    State: ``momentum_buffer`` (only when ``momentum != 0``).
    """

    name = "sgd"

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        owner = type(self).__name__
        self.momentum = _number(owner, "momentum", momentum, low=0.0)
        self.dampening = _number(owner, "dampening", dampening)
        self.weight_decay = _number(owner, "weight_decay", weight_decay, low=0.0)
        self.nesterov = _flag(owner, "nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError(
                f"{owner}: nesterov=True requires momentum > 0 and dampening == 0,"
                f" got momentum={self.momentum}, dampening={self.dampening}"
            )
        self.buffer_names = ("momentum_buffer",) if self.momentum != 0.0 else ()
        super().__init__(params, lr)

    def _hyperparameters(self):
        return {**super()._hyperparameters(), "momentum": self.momentum,
                "dampening": self.dampening, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov}

    def _update(self, param, grad, state):
        g = self._decayed_grad(param, grad, self.weight_decay)
        g_is_work = g is not grad
        if self.momentum == 0.0:
            direction, step = g, (g if g_is_work else self._work(param, 0))
        else:
            buf = state["momentum_buffer"]
            if self.step_count == 1:
                np.copyto(buf, g)
            else:
                buf *= self.momentum
                if self.dampening == 0.0:
                    buf += g
                else:
                    scaled = np.multiply(g, 1.0 - self.dampening, out=self._work(param, 1))
                    buf += scaled
            if self.nesterov:
                direction = np.multiply(buf, self.momentum, out=self._work(param, 1))
                direction += g
                step = direction
            else:
                direction, step = buf, self._work(param, 1)
        np.multiply(direction, self.lr, out=step)
        param -= step


class Adagrad(Optimizer):
    """Adagrad: per-coordinate rates shrinking with the accumulated squared gradient.

    ``g <- g + wd * p``; ``clr = lr / (1 + (t - 1) * lr_decay)``; ``s <- s + g**2``;
    ``p <- p - clr * g / (sqrt(s) + eps)``; ``s`` starts at
    ``initial_accumulator_value``. As torch.optim.Adagrad. State: ``sum``.
    """

    name = "adagrad"
    buffer_names = ("sum",)

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        owner = type(self).__name__
        self.lr_decay = _number(owner, "lr_decay", lr_decay, low=0.0)
        self.weight_decay = _number(owner, "weight_decay", weight_decay, low=0.0)
        self.initial_accumulator_value = _number(
            owner, "initial_accumulator_value", initial_accumulator_value, low=0.0
        )
        self.eps = _number(owner, "eps", eps, low=0.0)
        super().__init__(params, lr)

    def _init_buffer(self, kind, param):
        return np.full_like(param, self.initial_accumulator_value)

    def _hyperparameters(self):
        return {**super()._hyperparameters(), "lr_decay": self.lr_decay,
                "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _update(self, param, grad, state):
        g = self._decayed_grad(param, grad, self.weight_decay)
        clr = self.lr / (1.0 + (self.step_count - 1) * self.lr_decay)
        acc = state["sum"]
        tmp = np.multiply(g, g, out=self._work(param, 1))
        acc += tmp
        np.sqrt(acc, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= clr
        param -= tmp


class RMSprop(Optimizer):
    """RMSprop, optionally centred and with momentum.

    ``g <- g + wd * p``; ``v <- alpha * v + (1 - alpha) * g**2``; centred:
    ``m <- alpha * m + (1 - alpha) * g`` and ``d = sqrt(v - m**2) + eps`` (the difference
    is clipped at 0 against rounding), else ``d = sqrt(v) + eps``; with momentum ``mu > 0``:
    ``b <- mu * b + g / d``, ``p <- p - lr * b``; else ``p <- p - lr * g / d``.
    As torch.optim.RMSprop. State: ``square_avg`` (+ ``grad_avg``, ``momentum_buffer``).
    """

    name = "rmsprop"

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        owner = type(self).__name__
        self.alpha = _number(owner, "alpha", alpha, low=0.0, high=1.0)
        self.eps = _number(owner, "eps", eps, low=0.0)
        self.weight_decay = _number(owner, "weight_decay", weight_decay, low=0.0)
        self.momentum = _number(owner, "momentum", momentum, low=0.0)
        self.centered = _flag(owner, "centered", centered)
        self.buffer_names = (
            ("square_avg",)
            + (("grad_avg",) if self.centered else ())
            + (("momentum_buffer",) if self.momentum > 0.0 else ())
        )
        super().__init__(params, lr)

    def _hyperparameters(self):
        return {**super()._hyperparameters(), "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def _update(self, param, grad, state):
        g = self._decayed_grad(param, grad, self.weight_decay)
        decay = 1.0 - self.alpha
        square_avg = state["square_avg"]
        tmp = np.multiply(g, g, out=self._work(param, 1))
        tmp *= decay
        square_avg *= self.alpha
        square_avg += tmp
        if self.centered:
            grad_avg = state["grad_avg"]
            np.subtract(g, grad_avg, out=tmp)
            tmp *= decay
            grad_avg += tmp
            np.multiply(grad_avg, grad_avg, out=tmp)
            np.subtract(square_avg, tmp, out=tmp)
            np.maximum(tmp, 0.0, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(square_avg, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        if self.momentum > 0.0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += tmp
            np.multiply(buf, self.lr, out=tmp)
        else:
            tmp *= self.lr
        param -= tmp


class Adadelta(Optimizer):
    """Adadelta: step sizes from running averages of squared gradients and updates.

    ``g <- g + wd * p``; ``v <- rho * v + (1 - rho) * g**2``;
    ``d = sqrt(u + eps) / sqrt(v + eps) * g``; ``u <- rho * u + (1 - rho) * d**2``;
    ``p <- p - lr * d``. As torch.optim.Adadelta. State: ``square_avg``, ``acc_delta``.
    """

    name = "adadelta"
    buffer_names = ("square_avg", "acc_delta")

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0):
        owner = type(self).__name__
        self.rho = _number(owner, "rho", rho, low=0.0, high=1.0)
        self.eps = _number(owner, "eps", eps, low=0.0)
        self.weight_decay = _number(owner, "weight_decay", weight_decay, low=0.0)
        super().__init__(params, lr)

    def _hyperparameters(self):
        return {**super()._hyperparameters(), "rho": self.rho, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, param, grad, state):
        g = self._decayed_grad(param, grad, self.weight_decay)
        decay = 1.0 - self.rho
        square_avg = state["square_avg"]
        acc_delta = state["acc_delta"]
        tmp = np.multiply(g, g, out=self._work(param, 1))
        tmp *= decay
        square_avg *= self.rho
        square_avg += tmp
        std = np.add(square_avg, self.eps, out=tmp)
        np.sqrt(std, out=std)
        delta = np.add(acc_delta, self.eps, out=self._work(param, 2))
        np.sqrt(delta, out=delta)
        delta /= std
        delta *= g
        np.multiply(delta, delta, out=tmp)
        tmp *= decay
        acc_delta *= self.rho
        acc_delta += tmp
        delta *= self.lr
        param -= delta


class Adam(Optimizer):
    """Adam with L2 weight decay folded into the gradient; optional AMSGrad.

    ``g <- g + wd * p``; ``m <- b1 * m + (1 - b1) * g``; ``v <- b2 * v + (1 - b2) * g**2``;
    AMSGrad: ``vmax <- max(vmax, v)`` and use ``vmax`` for ``v`` below;
    ``p <- p - (lr / (1 - b1**t)) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)``.
    As torch.optim.Adam. State: ``exp_avg``, ``exp_avg_sq`` (+ ``max_exp_avg_sq``).
    """

    name = "adam"
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        owner = type(self).__name__
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            _number(owner, "betas[0]", betas[0], low=0.0, high=1.0, high_open=True),
            _number(owner, "betas[1]", betas[1], low=0.0, high=1.0, high_open=True),
        )
        self.eps = _number(owner, "eps", eps, low=0.0)
        self.weight_decay = _number(owner, "weight_decay", weight_decay, low=0.0)
        self.amsgrad = _flag(owner, "amsgrad", amsgrad)
        self.buffer_names = ("exp_avg", "exp_avg_sq") + (
            ("max_exp_avg_sq",) if self.amsgrad else ()
        )
        super().__init__(params, lr)

    def _hyperparameters(self):
        return {**super()._hyperparameters(), "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _update(self, param, grad, state):
        beta1, beta2 = self.betas
        if self._decoupled:
            if self.weight_decay != 0.0:
                param *= 1.0 - self.lr * self.weight_decay
            g = grad
        else:
            g = self._decayed_grad(param, grad, self.weight_decay)
        exp_avg = state["exp_avg"]
        exp_avg_sq = state["exp_avg_sq"]
        tmp = np.multiply(g, 1.0 - beta1, out=self._work(param, 1))
        exp_avg *= beta1
        exp_avg += tmp
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        exp_avg_sq *= beta2
        exp_avg_sq += tmp
        # Bias corrections as Python floats: no float64 arrays for float32 parameters.
        # step * m / (sqrt(v) / c2 + eps) is computed as (step * c2) * m / (sqrt(v) + eps
        # * c2): the same value up to rounding, one pass fewer over the parameter.
        step_size = self.lr / (1.0 - beta1**self.step_count)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.step_count)
        second = exp_avg_sq
        if self.amsgrad:
            second = state["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        denom = np.sqrt(second, out=tmp)
        denom += self.eps * bias_correction2_sqrt
        np.divide(exp_avg, denom, out=denom)
        denom *= step_size * bias_correction2_sqrt
        param -= denom


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p <- p * (1 - lr * wd)`` before the Adam step.

    The gradient is not modified by ``wd``. As torch.optim.AdamW (wd default 1e-2).
    """

    name = "adamw"
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


# -- registry -----------------------------------------------------------------------------
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW)
}


def make_optimizer(name: str, params, lr: float | None = None, **kwargs) -> Optimizer:
    """Build the optimizer registered as ``name`` (case-insensitive, see :data:`OPTIMIZERS`).

    ``lr=None`` keeps the optimizer's default; ``kwargs`` are its other constructor
    arguments. Unknown names or arguments -> ValueError.
    """
    if not isinstance(name, str) or name.strip().lower() not in OPTIMIZERS:
        raise ValueError(
            f"make_optimizer: unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}"
        )
    cls = OPTIMIZERS[name.strip().lower()]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self",
                                                                                   "params")]
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise ValueError(
            f"make_optimizer: {cls.__name__} got unexpected arguments {unexpected};"
            f" it accepts {accepted}"
        )
    if lr is not None:
        kwargs["lr"] = lr
    return cls(params, **kwargs)


def optimizer_from_config(config: Mapping, params) -> Optimizer:
    """Rebuild an optimizer from :meth:`Optimizer.get_config` output and ``params``."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError(
            f"optimizer_from_config: expected a dict with a 'name' key, got {config!r}"
        )
    kwargs = {k: v for k, v in config.items() if k not in ("name", "class")}
    optimizer = make_optimizer(config["name"], params, **kwargs)
    if "class" in config and config["class"] != type(optimizer).__name__:
        raise ValueError(
            f"optimizer_from_config: 'class' {config['class']!r} does not match name"
            f" {config['name']!r} ({type(optimizer).__name__})"
        )
    return optimizer
