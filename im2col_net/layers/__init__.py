"""Layers: thin stateful wrappers over the functional core. They know nothing of training."""

from .activations import ELU
from .base import Layer
from .batchnorm import BatchNorm1D, BatchNorm2D
from .blocks import Parallel, Residual
from .containers import Sequential
from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .dense import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .graph import Graph
from .loss import SoftmaxCrossEntropy
from .norms import GroupNorm, InstanceNorm2D, LayerNorm, LocalResponseNorm
from .pool import (
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxUnpool2D,
)
from .softmax import LogSoftmax, Softmax

__all__ = [
    "Layer", "Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Linear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout", "SoftmaxCrossEntropy",
]
__all__ += ["Parallel", "Residual", "BatchNorm1D", "BatchNorm2D", "ConvTranspose2D", "ELU"]
__all__ += ["Graph", "Softmax", "LogSoftmax"]
__all__ += ["GroupNorm", "LayerNorm", "InstanceNorm2D", "LocalResponseNorm"]
__all__ += ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "MaxUnpool2D"]
