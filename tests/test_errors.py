"""Every bad input raises ValueError (RuntimeError for call order) with a message that
names the layer or function, what it expected and what it was given."""

import numpy as np
import pytest

from im2col_net import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from im2col_net import functional as F

F32 = np.float32


def zeros(*shape, dtype=F32):
    return np.zeros(shape, dtype=dtype)


def forwarded(layer, x):
    layer.forward(x)
    return layer


def check(exc, fn, *fragments):
    """``fn()`` raises ``exc`` and the message contains every fragment."""
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message {message!r}"
    return message


# (id, callable, exception, fragments: layer name, expected, given)
CASES = [
    # wrong rank
    ("conv-rank", lambda: Conv2D(3, 4, 3).forward(zeros(8, 8)), ValueError,
     ["Conv2D(3, 4", "3-D or 4-D", "(8, 8)"]),
    # Pooling takes (C, H, W) unbatched images too, as torch: 2-D and 5-D are refused.
    ("maxpool-rank", lambda: MaxPool2D(2).forward(zeros(1, 1, 3, 8, 8)), ValueError,
     ["MaxPool2D", "3-D or 4-D", "(1, 1, 3, 8, 8)"]),
    ("avgpool-rank", lambda: AvgPool2D(2).forward(zeros(8, 8)), ValueError,
     ["AvgPool2D", "3-D or 4-D", "(8, 8)"]),
    ("gap-rank", lambda: GlobalAvgPool2D().forward(zeros(8, 8)), ValueError,
     ["GlobalAvgPool2D", "3-D or 4-D", "(8, 8)"]),
    ("linear-rank", lambda: Linear(4, 3).forward(zeros(2, 2, 2)), ValueError,
     ["Linear(4, 3", "(*, 4)", "(2, 2, 2)"]),
    ("flatten-rank", lambda: Flatten().forward(zeros(3)), ValueError,
     ["Flatten", "batch axis", "(3,)"]),
    ("functional-conv-rank", lambda: F.conv2d_forward(zeros(3, 8, 8), zeros(4, 3, 3, 3)),
     ValueError, ["conv2d", "4-D", "(3, 8, 8)"]),
    ("functional-conv-weight-rank", lambda: F.conv2d_forward(zeros(1, 3, 8, 8), zeros(4, 3, 3)),
     ValueError, ["conv2d", "(out_channels, in_channels/groups, kh, kw)", "(4, 3, 3)"]),
    ("functional-maxpool-rank", lambda: F.max_pool2d_forward(zeros(1, 2, 2), 2), ValueError,
     ["max_pool2d", "4-D", "(1, 2, 2)"]),
    ("ce-logits-rank", lambda: SoftmaxCrossEntropy().forward(zeros(3), np.array([0])),
     ValueError, ["SoftmaxCrossEntropy", "(N, K)", "(3,)"]),
    # wrong channel / feature count
    ("conv-channels", lambda: Conv2D(3, 4, 3).forward(zeros(2, 2, 8, 8)), ValueError,
     ["Conv2D(3, 4", "(N, 3, H, W)", "(2, 2, 8, 8)"]),
    ("functional-conv-channels",
     lambda: F.conv2d_forward(zeros(1, 3, 8, 8), zeros(4, 3, 3, 3), groups=2), ValueError,
     ["conv2d", "6 channels", "(1, 3, 8, 8)"]),
    ("linear-features", lambda: Linear(4, 3).forward(zeros(2, 5)), ValueError,
     ["Linear(4, 3", "(N, 4)", "(2, 5)"]),
    ("functional-linear-shapes", lambda: F.linear_forward(zeros(2, 3), zeros(4, 2)),
     ValueError, ["linear", "(out, in)", "(2, 3)", "(4, 2)"]),
    ("functional-conv-bias", lambda: F.conv2d_forward(zeros(1, 3, 8, 8), zeros(4, 3, 3, 3),
                                                      zeros(3)),
     ValueError, ["conv2d", "(4,)", "(3,)"]),
    # kernel larger than the (padded) input
    ("conv-kernel-too-big", lambda: Conv2D(3, 4, 5).forward(zeros(1, 3, 3, 3)), ValueError,
     ["Conv2D(3, 4", "(5, 5)", "padded input 3x3"]),
    ("conv-dilated-too-big",
     lambda: Conv2D(1, 1, 2, dilation=4).forward(zeros(1, 1, 4, 4)), ValueError,
     ["Conv2D(1, 1", "spans (5, 5)", "padded input 4x4"]),
    ("maxpool-kernel-too-big", lambda: MaxPool2D(3).forward(zeros(1, 1, 2, 2)), ValueError,
     ["MaxPool2D", "(3, 3)", "padded input 2x2"]),
    ("functional-avgpool-too-big", lambda: F.avg_pool2d_forward(zeros(1, 1, 2, 2), 3),
     ValueError, ["avg_pool2d", "(3, 3)", "2x2"]),
    # non-positive stride / kernel / dilation / channels / groups
    ("conv-kernel-0", lambda: Conv2D(3, 4, 0), ValueError, ["Conv2D(3, 4", "kernel_size",
                                                            ">= 1", "got 0"]),
    ("conv-stride-0", lambda: Conv2D(3, 4, 3, stride=0), ValueError,
     ["Conv2D(3, 4", "stride", ">= 1", "got 0"]),
    ("conv-stride-negative", lambda: Conv2D(3, 4, 3, stride=(1, -1)), ValueError,
     ["Conv2D(3, 4", "stride", ">= 1", "(1, -1)"]),
    ("conv-dilation-0", lambda: Conv2D(3, 4, 3, dilation=0), ValueError,
     ["Conv2D(3, 4", "dilation", ">= 1", "got 0"]),
    ("conv-in-channels-0", lambda: Conv2D(0, 4, 3), ValueError,
     ["Conv2D(0, 4", "in_channels", "positive", "got 0"]),
    ("conv-groups-0", lambda: Conv2D(3, 4, 3, groups=0), ValueError,
     ["Conv2D(3, 4", "groups", "positive", "got 0"]),
    ("conv-groups-indivisible", lambda: Conv2D(3, 4, 3, groups=2), ValueError,
     ["Conv2D(3, 4", "divisible by groups (2)", "in_channels (3)"]),
    ("functional-conv-stride-0",
     lambda: F.conv2d_forward(zeros(1, 3, 8, 8), zeros(4, 3, 3, 3), stride=0), ValueError,
     ["conv2d", "stride", ">= 1", "got 0"]),
    ("maxpool-kernel-0", lambda: MaxPool2D(0), ValueError,
     ["MaxPool2D", "kernel_size", ">= 1", "got 0"]),
    ("maxpool-stride-negative", lambda: MaxPool2D(2, stride=-1), ValueError,
     ["MaxPool2D", "stride", ">= 1", "got -1"]),
    ("avgpool-stride-0", lambda: AvgPool2D(2, stride=0), ValueError,
     ["AvgPool2D", "stride", ">= 1", "got 0"]),
    ("linear-features-0", lambda: Linear(0, 3), ValueError,
     ["Linear(0, 3)", "in_features", "positive", "got 0"]),
    # malformed padding arguments
    ("conv-padding-negative", lambda: Conv2D(3, 4, 3, padding=-1), ValueError,
     ["Conv2D(3, 4", "padding", ">= 0", "-1"]),
    ("conv-padding-3-tuple", lambda: Conv2D(3, 4, 3, padding=(1, 2, 3)), ValueError,
     ["Conv2D(3, 4", "padding", "(1, 2, 3)"]),
    ("conv-padding-unknown-string", lambda: Conv2D(3, 4, 3, padding="full"), ValueError,
     ["Conv2D(3, 4", "'same' or 'valid'", "'full'"]),
    ("conv-same-with-stride", lambda: Conv2D(3, 4, 3, padding="same", stride=2), ValueError,
     ["Conv2D(3, 4", "stride 1", "(2, 2)"]),
    # unknown padding mode / strategy / init / dtype / rng
    ("conv-padding-mode", lambda: Conv2D(3, 4, 3, padding_mode="wrap"), ValueError,
     ["Conv2D(3, 4", "'zeros', 'reflect', 'replicate', 'circular'", "'edge'", "'wrap'"]),
    ("functional-conv-padding-mode",
     lambda: F.conv2d_forward(zeros(1, 1, 4, 4), zeros(1, 1, 2, 2), padding_mode="wrap"),
     ValueError, ["conv2d", "'zeros', 'reflect', 'replicate', 'circular'", "'wrap'"]),
    ("conv-strategy", lambda: Conv2D(3, 4, 3, strategy="winograd"), ValueError,
     ["Conv2D(3, 4", "'im2col', 'rows', 'strided'", "'winograd'"]),
    ("conv-init", lambda: Conv2D(3, 4, 3, init="zeros"), ValueError,
     ["Conv2D(3, 4", "'he' or 'xavier'", "'zeros'"]),
    ("conv-int-dtype", lambda: Conv2D(3, 4, 3, dtype=np.int32), ValueError,
     ["Conv2D(3, 4", "floating-point dtype", "int32"]),
    ("linear-int-dtype", lambda: Linear(3, 4, dtype="int64"), ValueError,
     ["Linear(3, 4)", "floating-point dtype", "int64"]),
    ("conv-bad-rng", lambda: Conv2D(3, 4, 3, rng="seed"), ValueError,
     ["Conv2D(3, 4", "Generator", "'seed'"]),
    ("dropout-negative-seed", lambda: Dropout(0.5, rng=-1), ValueError,
     ["Dropout", "non-negative int seed", "-1"]),
    # labels out of range
    ("ce-label-too-big", lambda: SoftmaxCrossEntropy().forward(zeros(2, 3), np.array([0, 3])),
     ValueError, ["SoftmaxCrossEntropy", "[0, 3)", "label 3"]),
    ("ce-label-negative",
     lambda: SoftmaxCrossEntropy().forward(zeros(2, 3), np.array([-1, 0])), ValueError,
     ["SoftmaxCrossEntropy", "[0, 3)", "label -1"]),
    ("ce-label-float", lambda: SoftmaxCrossEntropy().forward(zeros(2, 3), np.array([0., 1.])),
     ValueError, ["SoftmaxCrossEntropy", "integer labels of shape (2,)", "float64"]),
    ("ce-label-count", lambda: SoftmaxCrossEntropy().forward(zeros(2, 3), np.array([0, 1, 2])),
     ValueError, ["SoftmaxCrossEntropy", "shape (2,)", "(3,)"]),
    ("ce-empty-batch", lambda: SoftmaxCrossEntropy().forward(zeros(0, 3), np.zeros(0, int)),
     ValueError, ["SoftmaxCrossEntropy", "N, K >= 1", "(0, 3)"]),
    # dtype mismatch and non-float inputs
    ("conv-dtype-mismatch", lambda: Conv2D(3, 4, 3).forward(zeros(1, 3, 8, 8, dtype=float)),
     ValueError, ["Conv2D(3, 4", "float32", "float64"]),
    ("linear-dtype-mismatch", lambda: Linear(4, 3).forward(zeros(2, 4, dtype=float)),
     ValueError, ["Linear(4, 3", "float32", "float64"]),
    ("functional-conv-weight-dtype",
     lambda: F.conv2d_forward(zeros(1, 3, 8, 8), zeros(4, 3, 3, 3, dtype=float)), ValueError,
     ["conv2d", "float64", "float32"]),
    ("conv-int-input", lambda: Conv2D(3, 4, 3).forward(zeros(1, 3, 8, 8, dtype=int)),
     ValueError, ["Conv2D(3, 4", "floating-point", "int64"]),
    ("relu-str-input", lambda: ReLU().forward(np.array(["a"])), ValueError,
     ["ReLU", "floating-point", "<U1"]),
    ("maxpool-int-input", lambda: MaxPool2D(2).forward(zeros(1, 1, 2, 2, dtype=int)),
     ValueError, ["MaxPool2D", "floating-point", "int64"]),
    ("sequential-dtype-mismatch",
     lambda: Sequential(Linear(4, 3)).forward(zeros(2, 4, dtype=float)), ValueError,
     ["Linear(4, 3", "float32", "float64"]),
    # reflect padding too wide, edge padding of an empty image
    ("conv-reflect-too-wide",
     lambda: Conv2D(3, 4, 3, padding=3, padding_mode="reflect").forward(zeros(1, 3, 3, 3)),
     ValueError, ["Conv2D(3, 4", "reflect padding (3, 3, 3, 3)", "3x3"]),
    ("functional-reflect-too-wide",
     lambda: F.conv2d_forward(zeros(1, 1, 2, 5), zeros(1, 1, 1, 1), padding=(2, 0, 0, 0),
                              padding_mode="reflect"),
     ValueError, ["conv2d", "reflect padding (2, 0, 0, 0)", "2x5"]),
    ("conv-edge-empty",
     lambda: Conv2D(1, 1, 1, padding=1, padding_mode="edge").forward(zeros(1, 1, 0, 3)),
     ValueError, ["Conv2D(1, 1", "non-empty", "0x3"]),
    ("gap-empty", lambda: GlobalAvgPool2D().forward(zeros(1, 1, 0, 3)), ValueError,
     ["global_avg_pool2d", "non-empty", "(1, 1, 0, 3)"]),
    # pooling padding more than half the kernel
    ("maxpool-padding-too-big", lambda: MaxPool2D(2, padding=2), ValueError,
     ["MaxPool2D", "at most half the kernel", "(2, 2)"]),
    ("avgpool-padding-too-big", lambda: AvgPool2D((3, 2), padding=(1, 2)), ValueError,
     ["AvgPool2D", "at most half the kernel", "(1, 2)"]),
    ("functional-maxpool-padding",
     lambda: F.max_pool2d_forward(zeros(1, 1, 4, 4), 2, padding=2), ValueError,
     ["max_pool2d", "at most half the kernel", "(2, 2)"]),
    # wrong dy
    ("conv-dy-shape", lambda: forwarded(Conv2D(3, 4, 3), zeros(2, 3, 8, 8))
     .backward(zeros(2, 4, 5, 5)), ValueError, ["Conv2D(3, 4", "(2, 4, 6, 6)", "(2, 4, 5, 5)"]),
    ("maxpool-dy-shape", lambda: forwarded(MaxPool2D(2), zeros(2, 3, 8, 8))
     .backward(zeros(2, 3, 3, 3)), ValueError, ["MaxPool2D", "(2, 3, 4, 4)", "(2, 3, 3, 3)"]),
    ("gap-dy-shape", lambda: forwarded(GlobalAvgPool2D(), zeros(2, 3, 8, 8))
     .backward(zeros(2, 3)), ValueError, ["GlobalAvgPool2D", "(2, 3, 1, 1)", "(2, 3)"]),
    ("linear-dy-shape", lambda: forwarded(Linear(4, 3), zeros(2, 4)).backward(zeros(2, 4)),
     ValueError, ["Linear(4, 3", "(2, 3)", "(2, 4)"]),
    ("relu-dy-shape", lambda: forwarded(ReLU(), zeros(3)).backward(zeros(4)), ValueError,
     ["ReLU", "(3,)", "(4,)"]),
    ("flatten-dy-shape", lambda: forwarded(Flatten(), zeros(2, 3, 4)).backward(zeros(2, 11)),
     ValueError, ["Flatten", "(2, 12)", "(2, 11)"]),
    ("dropout-dy-shape", lambda: forwarded(Dropout(0.5, rng=0), zeros(2, 3))
     .backward(zeros(2, 4)), ValueError, ["Dropout", "(2, 3)", "(2, 4)"]),
    # other bad arguments
    ("dropout-p-1", lambda: Dropout(1.0), ValueError, ["Dropout", "[0, 1)", "1.0"]),
    ("dropout-p-str", lambda: Dropout("half"), ValueError, ["Dropout", "real number",
                                                            "'half'"]),
    ("leaky-slope-str", lambda: LeakyReLU("x"), ValueError,
     ["LeakyReLU", "real number", "'x'"]),
    ("ce-dloss-str", lambda: forwarded_loss().backward("one"), ValueError,
     ["SoftmaxCrossEntropy", "real number", "'one'"]),
    ("sequential-non-layer", lambda: Sequential(ReLU(), 3), ValueError,
     ["Sequential", "must be a Layer", "int"]),
    ("load-state-shape", lambda: Linear(4, 3).load_state_dict(
        {"weight": zeros(3, 3), "bias": zeros(3)}), ValueError,
     ["Linear(4, 3", "(3, 4)", "(3, 3)"]),
    ("load-state-keys", lambda: Linear(4, 3).load_state_dict({"weight": zeros(3, 4)}),
     ValueError, ["Linear(4, 3", "missing ['bias']"]),
]


def forwarded_loss():
    loss = SoftmaxCrossEntropy()
    loss.forward(zeros(2, 3), np.array([0, 1]))
    return loss


@pytest.mark.parametrize("fn, exc, fragments", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_raises_with_a_useful_message(fn, exc, fragments):
    check(exc, fn, *fragments)


BACKWARD_FIRST = [
    (Conv2D(3, 4, 3), zeros(1, 4, 6, 6)),
    (MaxPool2D(2), zeros(1, 1, 1, 1)),
    (AvgPool2D(2), zeros(1, 1, 1, 1)),
    (GlobalAvgPool2D(), zeros(1, 1, 1, 1)),
    (Linear(4, 3), zeros(2, 3)),
    (ReLU(), zeros(3)),
    (LeakyReLU(), zeros(3)),
    (Sigmoid(), zeros(3)),
    (Tanh(), zeros(3)),
    (Flatten(), zeros(3, 1)),
    (Dropout(0.5), zeros(3)),
    (Sequential(Linear(4, 3), ReLU()), zeros(2, 3)),
]


@pytest.mark.parametrize("layer, dy", BACKWARD_FIRST, ids=[type(l).__name__ for l, _ in
                                                           BACKWARD_FIRST])
def test_backward_before_forward_is_a_runtime_error(layer, dy):
    message = check(RuntimeError, lambda: layer.backward(dy), "backward() called before forward()")
    # The message names the layer that had no cache (for Sequential: its last layer).
    name = type(layer[-1] if isinstance(layer, Sequential) else layer).__name__
    assert name in message


def test_loss_backward_before_forward_is_a_runtime_error():
    check(RuntimeError, SoftmaxCrossEntropy().backward, "SoftmaxCrossEntropy",
          "before forward()")


def test_astype_rejects_non_float():
    check(ValueError, lambda: Linear(4, 3).astype(np.int64), "Linear(4, 3", "floating",
          "int64")


def test_numpy_integer_arguments_are_accepted():
    # numpy integers are as good as Python ints, including inside a 4-tuple padding.
    k = np.int64(3)
    layer = Conv2D(np.int64(2), 2, k, stride=np.int32(1),
                   padding=tuple(np.array([1, 0, 1, 0])), rng=0)
    assert layer.geometry.padding == (1, 0, 1, 0)
    assert layer.forward(zeros(1, 2, 5, 5)).shape == (1, 2, 4, 4)
