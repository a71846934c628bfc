"""im2col_net: a NumPy convolutional-network engine built on im2col and BLAS GEMM."""

from . import gradcheck  # noqa: F401  (the module: im2col_net.gradcheck.gradcheck)
from .gradcheck import GradcheckError
from .layers import (  # the torch.nn parity activations, dropout and losses
    ELU,
    GELU,
    SELU,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    BCEWithLogitsLoss,
    Conv2D,
    ConvTranspose2D,
    CrossEntropyLoss,
    Dropout,
    Dropout2D,
    Flatten,
    GlobalAvgPool2D,
    Hardsigmoid,
    Hardswish,
    Identity,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2D,
    MSELoss,
    NLLLoss,
    Parallel,
    PReLU,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    SoftmaxCrossEntropy,
    Softplus,
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
__all__ += ["GradcheckError"]
__all__ += ["save_model", "load_model", "ModelFileError"]
__all__ += ["ReLU6", "PReLU", "SELU", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "Softplus",
            "Dropout2D", "Identity", "CrossEntropyLoss", "NLLLoss", "MSELoss",
            "BCEWithLogitsLoss"]
