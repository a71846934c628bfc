"""Argument checks shared by the optimizers and the schedules."""

from __future__ import annotations

import math

import numpy as np


def real_number(owner: str, name: str, value, *, low=None, high=None, low_open=False,
                high_open=False) -> float:
    """``value`` as a finite Python float inside the given bounds, else ValueError.

    Returning a Python float (never an ``np.float64``) matters: numpy treats it as a
    weak scalar, so arithmetic with float32 arrays stays float32.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{owner}: {name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{owner}: {name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(
            f"{owner}: {name} must be {'<' if high_open else '<='} {high}, got {value}"
        )
    return value


def flag(owner: str, name: str, value) -> bool:
    """``value`` as a bool; only True/False are accepted (a string like "false" is a bug)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def integer(owner: str, name: str, value, *, low=None) -> int:
    """``value`` as a Python int ``>= low``, else ValueError (bools are rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value}")
    return int(value)
