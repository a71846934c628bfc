"""Learning-rate schedules: functions of the (fractional) epoch.

A schedule maps ``epoch`` (a float counted from 0: ``2.5`` is halfway through the third
epoch) to a learning rate (Python float). The trainer typically calls it before every
step with ``epoch = completed_steps / steps_per_epoch`` and assigns the result to
``optimizer.lr``. Schedules are stateless, so resuming needs only the epoch.

``get_config()`` gives JSON-serialisable ``{"class": ..., <arguments>}`` and
:func:`schedule_from_config` rebuilds the schedule. :func:`make_schedule` builds one by
name: ``"constant"``, ``"table"``, ``"step"``, ``"exponential"``, ``"cosine"``,
``"onecycle"``, and ``"warmup-<name>"`` for any of the first five wrapped in
:class:`WarmupLR` (e.g. ``"warmup-cosine"``; one-cycle has its own warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ._checks import integer as _integer
from ._checks import real_number as _number

__all__ = [
    "Schedule",
    "ConstantLR",
    "TableLR",
    "StepLR",
    "ExponentialLR",
    "CosineLR",
    "WarmupLR",
    "OneCycleLR",
    "SCHEDULES",
    "make_schedule",
    "schedule_from_config",
]


class Schedule:
    """Base class: ``schedule(epoch) -> lr``; subclasses implement ``_value(epoch)``."""

    def __call__(self, epoch: float) -> float:
        epoch = _number(f"{type(self).__name__}(epoch)", "epoch", epoch, low=0.0)
        return float(self._value(epoch))

    def _value(self, epoch: float) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """``{"class": <class name>, <constructor arguments>}``, JSON-serialisable."""
        return {"class": type(self).__name__, **self._arguments()}

    def _arguments(self) -> dict:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class ConstantLR(Schedule):
    """The same rate at every epoch."""

    def __init__(self, lr: float):
        self.lr = _number("ConstantLR", "lr", lr, low=0.0)

    def _value(self, epoch):
        return self.lr

    def _arguments(self):
        return {"lr": self.lr}


class TableLR(Schedule):
    """Rates from a per-epoch table: the entry with the largest epoch ``<= epoch`` wins.

    ``table`` is a dict ``{start_epoch: lr}`` (int epochs ``>= 0``, one of them 0) or a
    list/tuple ``[lr_0, lr_1, ...]`` (entry ``i`` starts at epoch ``i``), or a list of
    ``[start_epoch, lr]`` pairs (the form :meth:`get_config` writes, since JSON object
    keys are strings). The last entry applies to all later epochs.
    """

    def __init__(self, table):
        owner = "TableLR"
        if isinstance(table, Mapping):
            pairs = list(table.items())
        elif isinstance(table, (list, tuple)):
            if table and all(isinstance(e, (list, tuple)) for e in table):
                pairs = [tuple(e) for e in table]
                if any(len(e) != 2 for e in pairs):
                    raise ValueError(f"{owner}: table pairs must be [epoch, lr], got {table!r}")
            else:
                pairs = list(enumerate(table))
        else:
            raise ValueError(
                f"{owner}: table must be a dict {{epoch: lr}} or a list, got {type(table).__name__}"
            )
        if not pairs:
            raise ValueError(f"{owner}: table is empty")
        entries = {}
        for start, lr in pairs:
            if isinstance(start, str) and start.strip().lstrip("-").isdigit():
                start = int(start)  # JSON turns dict keys into strings
            start = _integer(owner, "table epoch", start, low=0)
            if start in entries:
                raise ValueError(f"{owner}: epoch {start} appears twice in the table")
            entries[start] = _number(owner, f"table[{start}]", lr, low=0.0)
        if 0 not in entries:
            raise ValueError(
                f"{owner}: table must give a rate for epoch 0, got epochs {sorted(entries)}"
            )
        self.starts = sorted(entries)
        self.rates = [entries[s] for s in self.starts]

    def _value(self, epoch):
        index = int(np.searchsorted(self.starts, epoch, side="right")) - 1
        return self.rates[index]

    def _arguments(self):
        return {"table": [[s, r] for s, r in zip(self.starts, self.rates, strict=True)]}


class StepLR(Schedule):
    """``lr * gamma ** floor(epoch / step_size)``: decay by ``gamma`` every ``step_size``."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        owner = "StepLR"
        self.lr = _number(owner, "lr", lr, low=0.0)
        self.step_size = _integer(owner, "step_size", step_size, low=1)
        self.gamma = _number(owner, "gamma", gamma, low=0.0, low_open=True)

    def _value(self, epoch):
        return self.lr * self.gamma ** math.floor(epoch / self.step_size)

    def _arguments(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(Schedule):
    """``lr * gamma ** epoch``, continuous in the fractional epoch.

    Equals torch's per-epoch ExponentialLR at whole epochs and interpolates
    geometrically between them.
    """

    def __init__(self, lr: float, gamma: float):
        owner = "ExponentialLR"
        self.lr = _number(owner, "lr", lr, low=0.0)
        self.gamma = _number(owner, "gamma", gamma, low=0.0, low_open=True)

    def _value(self, epoch):
        return self.lr * self.gamma**epoch

    def _arguments(self):
        return {"lr": self.lr, "gamma": self.gamma}


class CosineLR(Schedule):
    """Half-cosine from ``lr`` at epoch 0 to ``min_lr`` at ``total_epochs``, then ``min_lr``.

    ``min_lr + (lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2``.
    """

    def __init__(self, lr: float, total_epochs: float, min_lr: float = 0.0):
        owner = "CosineLR"
        self.lr = _number(owner, "lr", lr, low=0.0)
        self.total_epochs = _number(owner, "total_epochs", total_epochs, low=0.0, low_open=True)
        self.min_lr = _number(owner, "min_lr", min_lr, low=0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"{owner}: min_lr ({self.min_lr}) must not exceed lr ({self.lr})")

    def _value(self, epoch):
        progress = min(epoch / self.total_epochs, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _arguments(self):
        return {"lr": self.lr, "total_epochs": self.total_epochs, "min_lr": self.min_lr}


class WarmupLR(Schedule):
    """Linear warm-up in front of another schedule.

    For ``epoch < warmup_epochs`` the rate is ``inner(epoch) * f`` with ``f`` rising
    linearly from ``start_factor`` at epoch 0 to 1 at ``warmup_epochs``; afterwards it is
    ``inner(epoch)`` (the inner schedule is not shifted in time).
    """

    def __init__(self, inner: Schedule, warmup_epochs: float, start_factor: float = 0.01):
        owner = "WarmupLR"
        if not isinstance(inner, Schedule):
            raise ValueError(f"{owner}: inner must be a Schedule, got {type(inner).__name__}")
        self.inner = inner
        self.warmup_epochs = _number(owner, "warmup_epochs", warmup_epochs, low=0.0,
                                     low_open=True)
        self.start_factor = _number(owner, "start_factor", start_factor, low=0.0, low_open=True,
                                    high=1.0)

    def _value(self, epoch):
        rate = self.inner(epoch)
        if epoch >= self.warmup_epochs:
            return rate
        fraction = epoch / self.warmup_epochs
        return rate * (self.start_factor + (1.0 - self.start_factor) * fraction)

    def __repr__(self):
        return (f"WarmupLR({self.inner!r}, warmup_epochs={self.warmup_epochs!r},"
                f" start_factor={self.start_factor!r})")

    def _arguments(self):
        return {"inner": self.inner.get_config(), "warmup_epochs": self.warmup_epochs,
                "start_factor": self.start_factor}


class OneCycleLR(Schedule):
    """One-cycle policy (Smith & Topin, 2018) with cosine annealing, as torch's
    ``OneCycleLR(optimizer, max_lr, total_steps, pct_start, anneal_strategy="cos",
    div_factor, final_div_factor, three_phase=False)``.

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of training, then falls to ``max_lr / (div_factor * final_div_factor)``
    at the end, both along half-cosines; it stays there afterwards.

    ``steps_per_epoch`` given: the epoch is turned into the update index
    ``round(epoch * steps_per_epoch)`` and the rates equal torch's update by update for
    ``total_steps = total_epochs * steps_per_epoch`` (the peak is at update
    ``pct_start * total_steps - 1``, the last update gets the final rate). None: the same
    curve in continuous epochs (peak at ``pct_start * total_epochs``, final rate at
    ``total_epochs``).

    A run too short to rise (``pct_start * total_steps <= 1``) starts at ``max_lr``.
    Momentum is not cycled (torch's ``cycle_momentum=False``): a schedule gives only the
    learning rate.
    """

    def __init__(self, max_lr: float, total_epochs: float, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 steps_per_epoch: int | None = None):
        owner = "OneCycleLR"
        self.max_lr = _number(owner, "max_lr", max_lr, low=0.0)
        self.total_epochs = _number(owner, "total_epochs", total_epochs, low=0.0, low_open=True)
        self.pct_start = _number(owner, "pct_start", pct_start, low=0.0, low_open=True,
                                 high=1.0, high_open=True)
        self.div_factor = _number(owner, "div_factor", div_factor, low=0.0, low_open=True)
        self.final_div_factor = _number(owner, "final_div_factor", final_div_factor, low=0.0,
                                        low_open=True)
        self.steps_per_epoch = (None if steps_per_epoch is None else
                                _integer(owner, "steps_per_epoch", steps_per_epoch, low=1))

    @staticmethod
    def _anneal(start, end, fraction):
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def _value(self, epoch):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        if self.steps_per_epoch is None:
            position, peak, end = epoch, self.pct_start * self.total_epochs, self.total_epochs
        else:
            # torch counts updates from 0 and ends its phases one update early
            total = self.total_epochs * self.steps_per_epoch
            position = round(epoch * self.steps_per_epoch)
            # (a run too short to rise peaks at its first update, where torch would
            # divide by zero or skip the peak)
            peak, end = max(self.pct_start * total - 1.0, 0.0), total - 1.0
        if position <= peak:
            return self._anneal(initial, self.max_lr, position / peak if peak > 0 else 1.0)
        span = end - peak
        return self._anneal(self.max_lr, final,
                            min((position - peak) / span, 1.0) if span > 0 else 1.0)

    def _arguments(self):
        return {"max_lr": self.max_lr, "total_epochs": self.total_epochs,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor,
                "steps_per_epoch": self.steps_per_epoch}


_CLASSES = {cls.__name__: cls for cls in
            (ConstantLR, TableLR, StepLR, ExponentialLR, CosineLR, WarmupLR, OneCycleLR)}


def schedule_from_config(config: Mapping) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.get_config` output (nested for WarmupLR)."""
    if not isinstance(config, Mapping) or "class" not in config:
        raise ValueError(
            f"schedule_from_config: expected a dict with a 'class' key, got {config!r}"
        )
    name = config["class"]
    if name not in _CLASSES:
        raise ValueError(
            f"schedule_from_config: unknown schedule class {name!r}; expected one of"
            f" {sorted(_CLASSES)}"
        )
    kwargs = {k: v for k, v in config.items() if k != "class"}
    if name == "WarmupLR" and "inner" in kwargs:
        kwargs["inner"] = schedule_from_config(kwargs["inner"])
    try:
        return _CLASSES[name](**kwargs)
    except TypeError as exc:  # missing / unexpected keyword arguments
        raise ValueError(f"schedule_from_config: bad arguments for {name}: {exc}") from None


def _constant(lr, epochs):
    return ConstantLR(lr)


def _table(lr, epochs, table):
    return TableLR(table)


def _step(lr, epochs, step_size, gamma=0.1):
    return StepLR(lr, step_size, gamma)


def _exponential(lr, epochs, gamma):
    return ExponentialLR(lr, gamma)


def _cosine(lr, epochs, min_lr=0.0):
    return CosineLR(lr, epochs, min_lr)


def _onecycle(lr, epochs, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
              steps_per_epoch=None):
    return OneCycleLR(lr, epochs, pct_start, div_factor, final_div_factor, steps_per_epoch)


# name -> (builder(lr, epochs, **kwargs), required kwargs, optional kwargs)
_BUILDERS = {
    "constant": (_constant, (), ()),
    "table": (_table, ("table",), ()),
    "step": (_step, ("step_size",), ("gamma",)),
    "exponential": (_exponential, ("gamma",), ()),
    "cosine": (_cosine, (), ("min_lr",)),
    "onecycle": (_onecycle, (), ("pct_start", "div_factor", "final_div_factor",
                                 "steps_per_epoch")),
}
_NEEDS_LR = {"constant", "step", "exponential", "cosine", "onecycle"}
_NEEDS_EPOCHS = {"cosine", "onecycle"}
_NO_WARMUP = {"onecycle"}  # it warms up by itself

SCHEDULES: tuple[str, ...] = tuple(_BUILDERS) + tuple(
    f"warmup-{n}" for n in _BUILDERS if n not in _NO_WARMUP)
_WARMUP_KWARGS = ("warmup_epochs", "start_factor")


def make_schedule(name: str, lr: float | None = None, epochs: float | None = None,
                  **kwargs) -> Schedule:
    """Build a schedule by name (see :data:`SCHEDULES`).

    - ``"constant"``: ``ConstantLR(lr)``.
    - ``"table"``: ``TableLR(table)``; requires ``table=``; the rates come from the table,
      so ``lr`` must be None.
    - ``"step"``: ``StepLR(lr, step_size, gamma=0.1)``; requires ``step_size=``.
    - ``"exponential"``: ``ExponentialLR(lr, gamma)``; requires ``gamma=``.
    - ``"cosine"``: ``CosineLR(lr, total_epochs=epochs, min_lr=0.0)``.
    - ``"onecycle"``: ``OneCycleLR(max_lr=lr, total_epochs=epochs, pct_start=0.3,
      div_factor=25, final_div_factor=1e4, steps_per_epoch=None)``.
    - ``"warmup-<name>"``: ``WarmupLR(<name schedule>, warmup_epochs=1.0,
      start_factor=0.01)``; ``warmup_epochs`` must be smaller than ``epochs`` when
      ``epochs`` is given.

    ``epochs`` is the length of training (needed by ``"cosine"``, otherwise only used to
    check ``warmup_epochs``). Unknown names, missing or unexpected arguments ->
    ValueError.
    """
    if not isinstance(name, str) or name.strip().lower() not in SCHEDULES:
        raise ValueError(f"make_schedule: unknown schedule {name!r}; expected one of {SCHEDULES}")
    name = name.strip().lower()
    warmup = name.startswith("warmup-")
    base = name[len("warmup-"):] if warmup else name
    builder, required, optional = _BUILDERS[base]
    allowed = set(required) | set(optional) | (set(_WARMUP_KWARGS) if warmup else set())
    unexpected = sorted(set(kwargs) - allowed)
    missing = sorted(set(required) - set(kwargs))
    if unexpected or missing:
        raise ValueError(
            f"make_schedule({name!r}): missing arguments {missing}, unexpected {unexpected};"
            f" it takes {sorted(allowed)}"
        )
    if base in _NEEDS_LR and lr is None:
        raise ValueError(f"make_schedule({name!r}): lr is required")
    if base == "table" and lr is not None:
        raise ValueError(
            f"make_schedule({name!r}): the table gives the rates; pass lr=None, got lr={lr!r}"
        )
    if base in _NEEDS_EPOCHS and epochs is None:
        raise ValueError(f"make_schedule({name!r}): epochs (training length) is required")
    if epochs is not None:
        epochs = _number(f"make_schedule({name!r})", "epochs", epochs, low=0.0, low_open=True)
    warmup_kwargs = {k: kwargs.pop(k) for k in _WARMUP_KWARGS if k in kwargs}
    schedule = builder(lr, epochs, **kwargs)
    if not warmup:
        return schedule
    warmup_kwargs.setdefault("warmup_epochs", 1.0)
    wrapped = WarmupLR(schedule, **warmup_kwargs)
    if epochs is not None and wrapped.warmup_epochs >= epochs:
        raise ValueError(
            f"make_schedule({name!r}): warmup_epochs ({wrapped.warmup_epochs}) must be smaller"
            f" than epochs ({epochs})"
        )
    return wrapped
