"""im2col_net: a NumPy convolutional-network engine built on im2col and BLAS GEMM."""

from . import gradcheck  # noqa: F401  (the module: im2col_net.gradcheck.gradcheck)
from .gradcheck import GradcheckError
from .layers import (
    ELU,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    GroupNorm,
    InstanceNorm2D,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    MaxUnpool2D,
    Parallel,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from .serialization import ModelFileError, load_model, save_model

# The version, read by pyproject.toml (setuptools' attr:) and by ``im2col-net --version``.
__version__ = "0.1.0"

__all__ = [
    "Layer", "Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Linear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout", "SoftmaxCrossEntropy",
]
__all__ += ["Parallel", "Residual", "BatchNorm1D", "BatchNorm2D", "ConvTranspose2D", "ELU"]
__all__ += ["GroupNorm", "LayerNorm", "InstanceNorm2D", "LocalResponseNorm"]
__all__ += ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "MaxUnpool2D"]
__all__ += ["GradcheckError"]
__all__ += ["save_model", "load_model", "ModelFileError"]
