"""im2col_net: a NumPy convolutional-network engine built on im2col and BLAS GEMM."""

# summary registers the summarizer behind Layer.summary; gradcheck is the module
# (im2col_net.gradcheck.gradcheck is the function).
from . import gradcheck, summary  # noqa: F401
from .gradcheck import GradcheckError
from .layers import (
    ELU,
    GELU,
    SELU,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool2D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    BCEWithLogitsLoss,
    CircularPad2D,
    ConstantPad2D,
    Conv2D,
    ConvTranspose2D,
    CrossEntropyLoss,
    Dropout,
    Dropout2D,
    Flatten,
    GlobalAvgPool2D,
    GroupNorm,
    Hardsigmoid,
    Hardswish,
    Identity,
    InstanceNorm2D,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2D,
    MaxUnpool2D,
    MSELoss,
    NLLLoss,
    Parallel,
    PixelShuffle,
    PixelUnshuffle,
    PReLU,
    ReflectionPad2D,
    ReLU,
    ReLU6,
    ReplicationPad2D,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    SoftmaxCrossEntropy,
    Softplus,
    Tanh,
    Unflatten,
    Upsample,
    UpsamplingBilinear2D,
    UpsamplingNearest2D,
    ZeroPad2D,
    no_grad,
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
__all__ += ["GradcheckError", "no_grad"]
__all__ += ["ZeroPad2D", "ConstantPad2D", "ReflectionPad2D", "ReplicationPad2D",
            "CircularPad2D", "Upsample", "UpsamplingNearest2D", "UpsamplingBilinear2D",
            "PixelShuffle", "PixelUnshuffle", "Unflatten"]
__all__ += ["save_model", "load_model", "ModelFileError"]
__all__ += ["ReLU6", "PReLU", "SELU", "GELU", "SiLU", "Hardswish", "Hardsigmoid", "Softplus",
            "Dropout2D", "Identity", "CrossEntropyLoss", "NLLLoss", "MSELoss",
            "BCEWithLogitsLoss"]
