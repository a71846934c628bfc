"""Reference implementations: plain nested loops written straight from the definitions.

Slow and obviously correct; the property tests hold the fast path against them. This
package imports nothing from the fast path (``functional``, ``lowering``, ``layers``);
only :mod:`im2col_net.geometry` for the output-size arithmetic. Every function computes
in float64 and returns arrays in the input's dtype; arrays are NCHW.
"""

from .adaptive_pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
    max_unpool2d_backward,
    max_unpool2d_forward,
)
from .batchnorm import batch_norm_backward, batch_norm_forward
from .conv import conv2d_backward, conv2d_forward, pad2d, pad2d_backward
from .conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from .dense import (
    leaky_relu_backward,
    leaky_relu_forward,
    linear_backward,
    linear_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    tanh_backward,
    tanh_forward,
)
from .elu import elu_backward, elu_forward
from .norms import (
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
    local_response_norm_backward,
    local_response_norm_forward,
)
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "pad2d",
    "pad2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softmax",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
]
__all__ += ["batch_norm_forward", "batch_norm_backward", "conv_transpose2d_forward",
            "conv_transpose2d_backward", "elu_forward", "elu_backward"]
__all__ += ["group_norm_forward", "group_norm_backward", "layer_norm_forward",
            "layer_norm_backward", "instance_norm_forward", "instance_norm_backward",
            "local_response_norm_forward", "local_response_norm_backward"]
from .padding import pad2d_torch, pad2d_torch_backward  # noqa: E402
from .resample import (  # noqa: E402
    flatten,
    pixel_shuffle,
    pixel_unshuffle,
    unflatten,
    upsample_backward,
    upsample_forward,
)

__all__ += ["pad2d_torch", "pad2d_torch_backward", "upsample_forward", "upsample_backward",
            "pixel_shuffle", "pixel_unshuffle", "flatten", "unflatten"]

from .activations import (  # noqa: E402  (the torch.nn parity activations)
    activation_backward,
    activation_forward,
    dropout2d_backward,
    dropout2d_forward,
    prelu_backward,
    prelu_forward,
    softmax_axis_backward,
    softmax_axis_forward,
)
from .losses import (  # noqa: E402
    bce_with_logits_backward,
    bce_with_logits_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
    nll_backward,
    nll_forward,
)

__all__ += ["activation_forward", "activation_backward", "prelu_forward", "prelu_backward",
            "dropout2d_forward", "dropout2d_backward", "softmax_axis_forward",
            "softmax_axis_backward", "cross_entropy_forward", "cross_entropy_backward",
            "nll_forward", "nll_backward", "mse_forward", "mse_backward",
            "bce_with_logits_forward", "bce_with_logits_backward"]
__all__ += ["adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
            "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward",
            "max_unpool2d_forward", "max_unpool2d_backward"]
