"""Model builders made of branching blocks: ``inception-mini`` and ``resnet-mini``.

Both take ``(N, in_channels, 28, 28)`` images (MNIST / Fashion-MNIST) and return logits
``(N, num_classes)``; both end in global average pooling, so they have few parameters
and are cheap enough to train on two CPU cores. Registered in
:data:`im2col_net.models.MODEL_BUILDERS`.
"""

from __future__ import annotations

import numpy as np

from .layers import (
    BatchNorm2D,
    Conv2D,
    Flatten,
    GlobalAvgPool2D,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
)
from .layers.base import make_rng
from .layers.blocks import basic_residual_block, inception_block

__all__ = ["inception_mini", "resnet_mini"]


def inception_mini(*, rng=None, dtype=np.float32, in_channels=1, num_classes=10) -> Sequential:
    """A small GoogLeNet: stem, two Inception blocks, global average pooling.

    conv 3x3x32 pad 1 -> BatchNorm -> ReLU -> max-pool 2 (14x14) -> Inception(32 ->
    16+32+16+16 = 80) -> max-pool 2 (7x7) -> Inception(80 -> 32+48+16+16 = 112) ->
    global avg-pool -> Flatten -> Linear 112->num_classes. Every convolution is followed
    by BatchNorm (Inception v2 style). About 3.3 M multiply-adds per image.
    """
    rng = make_rng(rng)
    return Sequential(
        Conv2D(in_channels, 32, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        BatchNorm2D(32, dtype=dtype),
        ReLU(),
        MaxPool2D(2),
        inception_block(32, 16, 16, 32, 8, 16, 16, batch_norm=True, rng=rng, dtype=dtype),
        MaxPool2D(2),
        inception_block(80, 32, 32, 48, 8, 16, 16, batch_norm=True, rng=rng, dtype=dtype),
        GlobalAvgPool2D(),
        Flatten(),
        Linear(112, num_classes, rng=rng, dtype=dtype),
    )


def resnet_mini(*, rng=None, dtype=np.float32, in_channels=1, num_classes=10) -> Sequential:
    """A small ResNet: stem, three basic residual blocks, global average pooling.

    conv 3x3x16 pad 1 (no bias) -> BatchNorm -> ReLU -> max-pool 2 (14x14) ->
    block(16 -> 16) -> block(16 -> 32, stride 2, projection; 7x7) -> block(32 -> 64,
    stride 2, projection; 4x4) -> global avg-pool -> Flatten -> Linear 64->num_classes.
    About 2.6 M multiply-adds per image.
    """
    rng = make_rng(rng)
    return Sequential(
        Conv2D(in_channels, 16, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        BatchNorm2D(16, dtype=dtype),
        ReLU(),
        MaxPool2D(2),
        basic_residual_block(16, 16, rng=rng, dtype=dtype),
        basic_residual_block(16, 32, stride=2, rng=rng, dtype=dtype),
        basic_residual_block(32, 64, stride=2, rng=rng, dtype=dtype),
        GlobalAvgPool2D(),
        Flatten(),
        Linear(64, num_classes, rng=rng, dtype=dtype),
    )
