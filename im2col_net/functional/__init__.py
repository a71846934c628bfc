"""Pure functional operations: every forward returns ``(y, cache)``, every backward takes
``(dy, cache)`` and returns the gradients. They know nothing of layers."""

from .adaptive_pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
    max_unpool2d_backward,
    max_unpool2d_forward,
)
from .basic import *  # noqa: F401,F403
from .basic import __all__ as _basic_all
from .batchnorm import batch_norm, batch_norm_backward, batch_norm_forward
from .conv import STRATEGIES, conv2d_backward, conv2d_forward, conv2d_forward_geom, conv_problem
from .conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from .elu import elu_backward, elu_forward
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_indices,
    pool_geometry,
)

__all__ = list(_basic_all) + [
    "STRATEGIES",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_geom",
    "conv_problem",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "pool_geometry",
]
__all__ += ["batch_norm", "batch_norm_forward", "batch_norm_backward", "conv_transpose2d_forward",
            "conv_transpose2d_backward", "elu_forward", "elu_backward"]
__all__ += ["max_pool2d_indices", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
            "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward",
            "max_unpool2d_forward", "max_unpool2d_backward"]

from . import activations, losses  # noqa: E402,F401  (the torch.nn parity ops, by module)
