"""Optimizers (update rules and defaults as torch.optim) and learning-rate schedules.

Typical use::

    from im2col_net.optim import make_optimizer, make_schedule

    opt = make_optimizer("adam", model.params, lr=1e-3)
    schedule = make_schedule("warmup-cosine", opt.lr, epochs=10, warmup_epochs=1)
    for step in range(total_steps):
        ...  # forward, backward
        opt.lr = schedule(step / steps_per_epoch)
        opt.step(model.grads)
"""

from .optimizers import (
    OPTIMIZERS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    make_optimizer,
    optimizer_from_config,
)
from .schedules import (
    SCHEDULES,
    ConstantLR,
    CosineLR,
    ExponentialLR,
    OneCycleLR,
    Schedule,
    StepLR,
    TableLR,
    WarmupLR,
    make_schedule,
    schedule_from_config,
)

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "OPTIMIZERS",
    "make_optimizer", "optimizer_from_config",
    "Schedule", "ConstantLR", "TableLR", "StepLR", "ExponentialLR", "CosineLR", "WarmupLR",
    "OneCycleLR",
    "SCHEDULES", "make_schedule", "schedule_from_config",
]
