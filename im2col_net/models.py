"""Named model builders. Each returns a plain :class:`~im2col_net.Sequential` that a user
could also write by hand."""

from __future__ import annotations

import numpy as np

from .layers import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    Tanh,
)
from .layers.base import make_rng
from .model_zoo_blocks import inception_mini, resnet_mini


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


def lenet5(*, rng=None, dtype=np.float32, in_channels=1, num_classes=10, activation="tanh",
           pooling="avg") -> Sequential:
    """LeNet-5 (LeCun et al., 1998) on 28x28 inputs.

    conv 5x5x6 pad 2 -> act -> pool 2 -> conv 5x5x16 -> act -> pool 2 -> Linear 400->120
    -> act -> Linear 120->84 -> act -> Linear 84->num_classes.

    Input ``(N, in_channels, 28, 28)``, output logits ``(N, num_classes)``. The paper fed
    32x32 images to an unpadded first convolution; padding 2 gives 28x28 MNIST the same
    28x28 first feature maps. Kept from the paper: the layer sizes and, by default,
    ``tanh`` activations with average pooling (its "subsampling"; the paper's trainable
    per-map scale and bias are folded into the next layer). Changed: C3 connects every
    input map (the paper used a sparse table), the RBF output layer is a plain linear
    layer trained with softmax cross-entropy, and weights use Xavier initialisation for
    ``tanh`` (He for ``relu``). ``activation="relu"`` and ``pooling="max"`` give the
    modern variant.
    """
    if activation not in ("tanh", "relu"):
        raise ValueError(f"lenet5: activation must be 'tanh' or 'relu', got {activation!r}")
    if pooling not in ("avg", "max"):
        raise ValueError(f"lenet5: pooling must be 'avg' or 'max', got {pooling!r}")
    rng = make_rng(rng)
    act = Tanh if activation == "tanh" else ReLU
    pool = AvgPool2D if pooling == "avg" else MaxPool2D
    init = "xavier" if activation == "tanh" else "he"
    return Sequential(
        Conv2D(in_channels, 6, 5, padding=2, init=init, rng=rng, dtype=dtype),
        act(),
        pool(2),
        Conv2D(6, 16, 5, init=init, rng=rng, dtype=dtype),
        act(),
        pool(2),
        Flatten(),
        Linear(16 * 5 * 5, 120, init=init, rng=rng, dtype=dtype),
        act(),
        Linear(120, 84, init=init, rng=rng, dtype=dtype),
        act(),
        Linear(84, num_classes, init="xavier", rng=rng, dtype=dtype),
    )


def deepnet(*, rng=None, dtype=np.float32, in_channels=1, num_classes=10,
            dropout=0.5) -> Sequential:
    """A deeper all-3x3 network for the best MNIST accuracy.

    Three blocks of two 3x3 "same" convolutions with ReLU, each block followed by a 2x2
    max-pool: 32-32-pool-64-64-pool-128-128-pool (28 -> 14 -> 7 -> 3), then Flatten ->
    Linear 1152->256 -> ReLU -> Dropout(``dropout``) -> Linear 256->num_classes.

    Input ``(N, in_channels, 28, 28)``, output logits ``(N, num_classes)``. Stacked 3x3
    kernels see a 5x5 / 7x7 field with fewer weights and more non-linearities than one
    large kernel; the last pool floors 7 to 3 (the dropped row/column is covered by the
    neighbouring windows' receptive fields). About 2.5x the convolution work of
    :func:`convnet`. The dropout layer draws its masks from its own generator spawned
    from ``rng``, so a seeded build is reproducible.
    """
    rng = make_rng(rng)
    widths = (32, 32, 64, 64, 128, 128)
    layers = []
    channels = in_channels
    for i, width in enumerate(widths):
        layers += [Conv2D(channels, width, 3, padding=1, rng=rng, dtype=dtype), ReLU()]
        if i % 2 == 1:
            layers.append(MaxPool2D(2))
        channels = width
    layers += [
        Flatten(),
        Linear(128 * 3 * 3, 256, rng=rng, dtype=dtype),
        ReLU(),
        Dropout(dropout, rng=rng.spawn(1)[0]),
        Linear(256, num_classes, rng=rng, dtype=dtype),
    ]
    return Sequential(layers)


# name -> builder(*, rng, dtype, in_channels, num_classes); add new models here.
MODEL_BUILDERS = {
    "convnet": convnet,
    "lenet5": lenet5,
    "deepnet": deepnet,
    "inception-mini": inception_mini,
    "resnet-mini": resnet_mini,
}


def build_model(name: str, *, rng=None, dtype=np.float32, **kwargs) -> Sequential:
    """Build a named model (see :data:`MODEL_BUILDERS`)."""
    if name not in MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name](rng=rng, dtype=dtype, **kwargs)
