"""Named model builders. Each returns a plain :class:`~im2col_net.Sequential` that a user
could also write by hand."""

from __future__ import annotations

import numpy as np

from .layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential
from .layers.base import make_rng


def convnet(*, rng=None, dtype=np.float32, in_channels=1, num_classes=10) -> Sequential:
    """The default MNIST network: conv 5x5x32 pad 2 -> ReLU -> max-pool 2 -> conv 5x5x64
    pad 2 -> ReLU -> max-pool 2 -> Linear 3136->512 -> ReLU -> Linear 512->10.

    Input ``(N, in_channels, 28, 28)``, output logits ``(N, num_classes)``.
    """
    rng = make_rng(rng)
    return Sequential(
        Conv2D(in_channels, 32, 5, padding=2, rng=rng, dtype=dtype),
        ReLU(),
        MaxPool2D(2),
        Conv2D(32, 64, 5, padding=2, rng=rng, dtype=dtype),
        ReLU(),
        MaxPool2D(2),
        Flatten(),
        Linear(64 * 7 * 7, 512, rng=rng, dtype=dtype),
        ReLU(),
        Linear(512, num_classes, rng=rng, dtype=dtype),
    )


# name -> builder(*, rng, dtype, in_channels, num_classes); add new models here.
MODEL_BUILDERS = {
    "convnet": convnet,
}


def build_model(name: str, *, rng=None, dtype=np.float32, **kwargs) -> Sequential:
    """Build a named model (see :data:`MODEL_BUILDERS`)."""
    if name not in MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name](rng=rng, dtype=dtype, **kwargs)
