"""Weights to and from a PyTorch ``state_dict``, as NumPy arrays (torch is not needed).

Every layer here uses PyTorch's weight shapes, and containers name their children
``"0"``, ``"1"``, ... like ``torch.nn.Sequential``, so the keys are exactly those of the
equivalent torch module (Sequential for :class:`~im2col_net.Sequential`; for
:class:`~im2col_net.Parallel` / :class:`~im2col_net.Residual` a module registering its
branches / body and shortcut as sub-modules ``"0"``, ``"1"``):

============================  ==============================================================
im2col_net                    torch keys (in ``state_dict`` order)
============================  ==============================================================
Conv2D, ConvTranspose2D,      ``<path>.weight``, ``<path>.bias``
Linear
BatchNorm1D/2D,               ``<path>.weight``, ``<path>.bias``, ``<path>.running_mean``,
InstanceNorm2D                ``<path>.running_var``, ``<path>.num_batches_tracked`` (0-d
                              int64); each group only when the layer has it
GroupNorm, LayerNorm          ``<path>.weight``, ``<path>.bias`` (when affine / bias)
LocalResponseNorm             none
============================  ==============================================================

A Conv2D built with ``flip_kernel=True`` (true convolution) corresponds to a torch
``Conv2d`` holding the rotated kernel, so its weight is rotated by 180 degrees on the
way out and back on the way in.

``load_torch_state_dict`` accepts NumPy arrays or torch tensors (converted with
``.detach().cpu().numpy()`` without importing torch), checks every key and shape before
copying anything, and copies into the existing arrays (casting to the model's dtype).
"""

from __future__ import annotations

import numpy as np

from .layers.base import Layer
from .layers.conv import Conv2D

__all__ = ["to_torch_state_dict", "load_torch_state_dict", "torch_state_keys"]


def _leaf_entries(layer: Layer, prefix: str = ""):
    """``(key, layer, kind, name)`` in torch ``state_dict`` order: a module's own
    parameters, then its own buffers, then its children (sub-modules ``"0"``, ``"1"``...)."""
    children = layer.children()
    if not children:
        for name, _ in layer.named_parameters():
            yield f"{prefix}{name}", layer, "param", name
        for name, _ in layer.named_buffers():
            yield f"{prefix}{name}", layer, "buffer", name
        return
    for i, child in enumerate(children):
        yield from _leaf_entries(child, f"{prefix}{i}.")


def _flipped(layer: Layer, name: str) -> bool:
    return isinstance(layer, Conv2D) and layer.flip_kernel and name == "weight"


def _get(layer, kind, name):
    return (layer.params if kind == "param" else layer.buffers)[name]


def torch_state_keys(model: Layer) -> list[str]:
    """The ``state_dict`` keys of the equivalent torch module, in torch's order."""
    return [key for key, *_ in _leaf_entries(model)]


def to_torch_state_dict(model: Layer) -> dict[str, np.ndarray]:
    """Copies of every parameter and buffer of ``model`` under torch ``state_dict`` keys.

    Arrays keep the model's dtype (``num_batches_tracked`` is 0-d int64, as in torch);
    ``torch.from_numpy`` turns each into a tensor for ``module.load_state_dict``.
    """
    if not isinstance(model, Layer):
        raise ValueError(f"to_torch_state_dict: expected a Layer, got {type(model).__name__}")
    out = {}
    for key, layer, kind, name in _leaf_entries(model):
        value = _get(layer, kind, name)
        if _flipped(layer, name):
            value = value[:, :, ::-1, ::-1]
        out[key] = np.array(value, copy=True)
    return out


def _as_array(value, key):
    """A NumPy array from an array-like or a torch tensor (no torch import needed)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"load_torch_state_dict: {key!r} is not an array: {exc}") from exc


def load_torch_state_dict(model: Layer, state, *, strict: bool = True) -> Layer:
    """Copy a torch-style ``state_dict`` (key -> array or tensor) into ``model``.

    With ``strict`` (the default) the keys must equal :func:`torch_state_keys`; without
    it, missing keys keep their current values and unexpected keys are ignored. Shapes
    must match exactly; values are cast to the target dtype (``same_kind``: a float64
    tensor may fill a float32 model, a float may not fill ``num_batches_tracked``).
    Everything is validated before anything is copied, so a failed load changes
    nothing. Returns ``model``.
    """
    if not isinstance(model, Layer):
        raise ValueError(f"load_torch_state_dict: expected a Layer, got {type(model).__name__}")
    if not hasattr(state, "keys"):
        raise ValueError(f"load_torch_state_dict: expected a mapping of arrays, got "
                         f"{type(state).__name__}")
    entries = {key: (layer, kind, name) for key, layer, kind, name in _leaf_entries(model)}
    missing = [k for k in entries if k not in state]
    unexpected = [k for k in state if k not in entries]
    if strict and (missing or unexpected):
        raise ValueError(
            f"load_torch_state_dict: keys do not match the model: missing {missing}, "
            f"unexpected {unexpected}"
        )
    planned = []
    for key, (layer, kind, name) in entries.items():
        if key not in state:
            continue
        target = _get(layer, kind, name)
        value = _as_array(state[key], key)
        if value.shape != target.shape:
            raise ValueError(
                f"load_torch_state_dict: {key!r} expects shape {target.shape}, got {value.shape}"
            )
        if not np.can_cast(value.dtype, target.dtype, casting="same_kind"):
            raise ValueError(
                f"load_torch_state_dict: {key!r} has dtype {value.dtype}, which cannot be "
                f"cast to the model's {target.dtype}"
            )
        if _flipped(layer, name):
            value = value[:, :, ::-1, ::-1]
        planned.append((target, value))
    for target, value in planned:
        np.copyto(target, value, casting="same_kind")
    return model
