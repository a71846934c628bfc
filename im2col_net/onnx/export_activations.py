"""ONNX export of the activation family (ReLU6, Hardsigmoid, Hardswish, SELU, SiLU, GELU,
Softplus, PReLU), Dropout2D and Identity.

Each layer becomes standard operators that exist from opset 13 on and that compute the
engine's formula in the model's dtype (constants are tensors of that dtype, so float64
models keep full precision): one operator where ONNX has an exact one, otherwise a
short composition. ONNX HardSigmoid/HardSwish (alpha = 1/6 as a float32 attribute, and
HardSwish only from opset 14) and Gelu (opset 20) are avoided for that reason.
"""

from __future__ import annotations

import math

import numpy as np

from ..functional.activations import SELU_ALPHA, SELU_SCALE
from ..layers.activations import (
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    PReLU,
    ReLU6,
    SiLU,
    Softplus,
)
from ..layers.dropout2d import Dropout2D, Identity
from .deps import OnnxError

__all__ = ["emit_activation", "ACTIVATION_LAYERS"]

ACTIVATION_LAYERS = (ReLU6, Hardsigmoid, Hardswish, SELU, SiLU, GELU, Softplus, PReLU,
                     Dropout2D, Identity)


def _scalar(b, prefix, name, value):
    return b.constant(prefix + name, np.array(value, dtype=b.dtype))


def _clip_0_6(b, x, path, prefix):
    return b.node("Clip", [x, _scalar(b, prefix, "zero", 0.0), _scalar(b, prefix, "six", 6.0)],
                  path)


def emit_activation(b, layer, x, path, prefix, desc):
    """The output name of ``layer(x)`` for a layer of :data:`ACTIVATION_LAYERS`, else None."""
    kind = type(layer)
    if kind not in ACTIVATION_LAYERS:
        return None
    if kind in (Identity, Dropout2D):
        # The graph describes evaluation mode, where channel dropout is the identity.
        return b.node("Identity", [x], path)
    if kind is ReLU6:
        return _clip_0_6(b, x, path, prefix)
    if kind in (Hardsigmoid, Hardswish):
        shifted = b.node("Add", [x, _scalar(b, prefix, "three", 3.0)], path)
        clipped = _clip_0_6(b, shifted, path, prefix)
        if kind is Hardswish:
            clipped = b.node("Mul", [x, clipped], path)
        return b.node("Div", [clipped, _scalar(b, prefix, "six_div", 6.0)], path)
    if kind is SiLU:
        return b.node("Mul", [x, b.node("Sigmoid", [x], path)], path)
    if kind is SELU:
        return _emit_selu(b, x, path, prefix)
    if kind is GELU:
        return _emit_gelu(b, layer, x, path, prefix)
    if kind is Softplus:
        z = b.node("Mul", [x, _scalar(b, prefix, "beta", layer.beta)], path)
        soft = b.node("Div", [b.node("Softplus", [z], path),
                              _scalar(b, prefix, "beta_div", layer.beta)], path)
        linear = b.node("Greater", [z, _scalar(b, prefix, "threshold", layer.threshold)], path)
        return b.node("Where", [linear, x, soft], path)
    return _emit_prelu(b, layer, x, path, prefix, desc)


def _emit_selu(b, x, path, prefix):
    if b.dtype == np.float32:
        return b.node("Selu", [x], path, alpha=float(np.float32(SELU_ALPHA)),
                      gamma=float(np.float32(SELU_SCALE)))
    # Selu's attributes are float32; a float64 model gets the formula at full precision.
    zero = _scalar(b, prefix, "zero", 0.0)
    positive = b.node("Mul", [x, _scalar(b, prefix, "scale", SELU_SCALE)], path)
    expm1 = b.node("Sub", [b.node("Exp", [b.node("Min", [x, zero], path)], path),
                           _scalar(b, prefix, "one", 1.0)], path)
    negative = b.node("Mul", [expm1, _scalar(b, prefix, "scale_alpha",
                                             SELU_SCALE * SELU_ALPHA)], path)
    return b.node("Where", [b.node("Greater", [x, zero], path), positive, negative], path)


def _emit_gelu(b, layer, x, path, prefix):
    half, one = _scalar(b, prefix, "half", 0.5), _scalar(b, prefix, "one", 1.0)
    if layer.approximate == "none":
        scaled = b.node("Mul", [x, _scalar(b, prefix, "inv_sqrt2", 1 / math.sqrt(2.0))], path)
        cdf = b.node("Mul", [half, b.node("Add", [one, b.node("Erf", [scaled], path)], path)],
                     path)
        return b.node("Mul", [x, cdf], path)
    cube = b.node("Mul", [b.node("Mul", [x, x], path), x], path)
    inner = b.node("Add", [x, b.node("Mul", [_scalar(b, prefix, "c", 0.044715), cube], path)],
                   path)
    t = b.node("Tanh", [b.node("Mul", [_scalar(b, prefix, "k", math.sqrt(2 / math.pi)),
                                       inner], path)], path)
    return b.node("Mul", [b.node("Mul", [half, x], path), b.node("Add", [one, t], path)], path)


def _emit_prelu(b, layer, x, path, prefix, desc):
    weight = layer.params["weight"]
    if layer.num_parameters == 1:
        return b.node("PRelu", [x, b.constant(prefix + "weight", weight)], path)
    # The exporter runs the model on a probe batch first, so the cache holds the input
    # this layer saw; its rank decides how the per-channel slope must broadcast.
    cache = layer._cache
    if cache is None:
        raise OnnxError(f"export: {desc}: the input rank of a per-channel PReLU is unknown "
                        f"(the layer was not run on the probe batch)")
    ndim = np.ndim(cache[0])
    slope = weight.reshape((layer.num_parameters,) + (1,) * (ndim - 2))
    return b.node("PRelu", [x, b.constant(prefix + "weight", slope)], path)
