"""Argument types shared by the sub-commands: each turns a command-line word into a
value or raises ``argparse.ArgumentTypeError`` saying what was expected and given."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "non_negative_int", "positive_float", "fraction",
           "unit_interval"]


def _parser(convert, accept, expected):
    """An argument type: ``convert(text)`` and keep the value when ``accept(value)``,
    else ``ArgumentTypeError("expected <expected>, got <text>")``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _parser(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _parser(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _parser(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
fraction = _parser(float, lambda v: 0 < v < 1, "a fraction between 0 and 1")
unit_interval = _parser(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
