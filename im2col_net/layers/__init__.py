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
from .base import Layer
from .batchnorm import BatchNorm1D, BatchNorm2D
from .blocks import Parallel, Residual
from .containers import Sequential
from .conv import Conv2D
from .conv_transpose import ConvTranspose2D
from .dense import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .dropout2d import Dropout2D, Identity
from .graph import Graph
from .loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    NLLLoss,
    SoftmaxCrossEntropy,
)
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .softmax import LogSoftmax, Softmax

__all__ = [
    "Layer", "Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Linear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout", "SoftmaxCrossEntropy",
]
__all__ += ["Parallel", "Residual", "BatchNorm1D", "BatchNorm2D", "ConvTranspose2D", "ELU"]
__all__ += ["Graph", "Softmax", "LogSoftmax"]
__all__ += ["ReLU6", "PReLU", "SELU", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "Softplus",
            "Dropout2D", "Identity", "CrossEntropyLoss", "NLLLoss", "MSELoss",
            "BCEWithLogitsLoss"]
