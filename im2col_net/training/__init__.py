"""Training: :func:`fit` with checkpoints and exact resume, evaluation helpers, metrics log.

See :mod:`.trainer` (run directory, resume, stop-signal and non-finite rules),
:mod:`.checkpoint` (file format), :mod:`.rundir` (locking), :mod:`.signals` (SIGINT/SIGTERM)
and :mod:`.metrics` (the JSON-lines log format read by plotting tools).
"""

from .checkpoint import CheckpointError, Progress, load_checkpoint, save_checkpoint
from .evaluation import confusion_matrix, evaluate, per_class_accuracy, predict_proba
from .metrics import MetricsLog, read_metrics
from .numerics import NonFiniteError
from .rundir import RunDirLocked, lock_run_dir
from .trainer import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    MODEL_NAME,
    FitResult,
    TrainingInterrupted,
    fit,
    split_validation,
)

__all__ = [
    "fit", "FitResult", "TrainingInterrupted", "evaluate", "predict_proba",
    "confusion_matrix", "per_class_accuracy", "CheckpointError", "Progress",
    "save_checkpoint", "load_checkpoint", "MetricsLog", "read_metrics",
    "CHECKPOINT_NAME", "METRICS_NAME", "MODEL_NAME", "NonFiniteError", "RunDirLocked",
    "lock_run_dir", "split_validation",
]
