"""Layers: thin stateful wrappers over the functional core. They know nothing of training."""

from .activations import (
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    PReLU,
    ReLU6,
    SiLU,
    Softplus,
)
from .base import Layer, grad_enabled, no_grad
from .batchnorm import BatchNorm1D, BatchNorm2D
from .blocks import Parallel, Residual
from .containers import Sequential
from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .dense import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh, Unflatten
from .dropout2d import Dropout2D, Identity
from .graph import Graph
from .loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    NLLLoss,
    SoftmaxCrossEntropy,
)
from .norms import GroupNorm, InstanceNorm2D, LayerNorm, LocalResponseNorm
from .padding import (
    CircularPad2D,
    ConstantPad2D,
    ReflectionPad2D,
    ReplicationPad2D,
    ZeroPad2D,
)
from .pool import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxUnpool2D,
)
from .resample import (
    PixelShuffle,
    PixelUnshuffle,
    Upsample,
    UpsamplingBilinear2D,
    UpsamplingNearest2D,
)
from .softmax import LogSoftmax, Softmax

__all__ = [
    "Layer", "Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Linear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout", "SoftmaxCrossEntropy",
]
__all__ += ["Parallel", "Residual", "BatchNorm1D", "BatchNorm2D", "ConvTranspose2D", "ELU"]
__all__ += ["Graph", "Softmax", "LogSoftmax", "no_grad", "grad_enabled"]
__all__ += ["GroupNorm", "LayerNorm", "InstanceNorm2D", "LocalResponseNorm"]
__all__ += ["ZeroPad2D", "ConstantPad2D", "ReflectionPad2D", "ReplicationPad2D",
            "CircularPad2D", "Upsample", "UpsamplingNearest2D", "UpsamplingBilinear2D",
            "PixelShuffle", "PixelUnshuffle", "Unflatten"]
__all__ += ["ReLU6", "PReLU", "SELU", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "Softplus",
            "Dropout2D", "Identity", "CrossEntropyLoss", "NLLLoss", "MSELoss",
            "BCEWithLogitsLoss"]
__all__ += ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "MaxUnpool2D"]
