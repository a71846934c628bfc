"""Layers: thin stateful wrappers over the functional core. They know nothing of training."""

from .base import Layer
from .containers import Sequential
from .conv import Conv2D
from .dense import Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .loss import SoftmaxCrossEntropy
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D

__all__ = [
    "Layer", "Sequential", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Linear",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Dropout", "SoftmaxCrossEntropy",
]
