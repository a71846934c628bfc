"""The argument checks that conv2d and conv_transpose2d share, in one place."""

from __future__ import annotations

import numpy as np

__all__ = ["native", "check_conv_args", "check_dy"]


def native(a):
    """``a`` as an array in native byte order, same dtype otherwise (a big-endian float32
    from a file computes as float32); None stays None."""
    if a is None:
        return None
    a = np.asarray(a)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def check_conv_args(x, weight, bias, groups, owner, *, transposed=False) -> None:
    """Check input, weight, bias and groups of a (transposed) convolution.

    ``weight`` is ``(Cout, Cin/G, kh, kw)`` for a convolution and ``(Cin, Cout/G, kh,
    kw)`` for a transposed one; every array must be floating point of ``x``'s dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point input, got dtype {x.dtype}")
    if weight.ndim != 4:
        raise ValueError(f"{owner}: expected a 4-D weight, got shape {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
    if transposed:
        split, split_name = weight.shape[0], "in_channels"
        in_channels, cout = weight.shape[0], weight.shape[1] * groups
    else:
        split, split_name = weight.shape[0], "out_channels"
        in_channels, cout = weight.shape[1] * groups, weight.shape[0]
    if split % groups:
        raise ValueError(f"{owner}: {split_name}={split} is not divisible by groups={groups}")
    if x.shape[1] != in_channels:
        where = "" if transposed else f", groups={groups}"
        raise ValueError(
            f"{owner}: expected input with {in_channels} channels (weight {weight.shape}"
            f"{where}), got input shape {x.shape}"
        )
    if weight.dtype != x.dtype:
        raise ValueError(
            f"{owner}: weight dtype {weight.dtype} does not match input dtype {x.dtype}"
        )
    if bias is not None and (bias.shape != (cout,) or bias.dtype != x.dtype):
        raise ValueError(
            f"{owner}: expected bias of shape ({cout},) and dtype {x.dtype}, "
            f"got shape {bias.shape} dtype {bias.dtype}"
        )


def check_dy(dy, expected_shape, dtype, owner):
    """``dy`` as an array of ``dtype``; ``ValueError`` for a wrong shape or a non-real
    dtype (a complex dy would lose its imaginary part in the cast)."""
    dy = np.asarray(dy)
    if dy.shape != tuple(expected_shape):
        raise ValueError(f"{owner} backward: expected dy of shape {tuple(expected_shape)}, "
                         f"got {dy.shape}")
    if dy.dtype.kind != "f":
        raise ValueError(f"{owner} backward: expected a real floating-point dy, got dtype "
                         f"{dy.dtype}")
    return np.asarray(dy, dtype=dtype)
