"""The single-process communicator: what :func:`~im2col_net.training.fit` uses when no
communicator is given. Every method is the identity, so ``fit`` has one code path."""

from __future__ import annotations

__all__ = ["LocalCommunicator"]


class LocalCommunicator:
    """One process, rank 0 of 1. See :class:`~.mpi.MPICommunicator` for the meaning of
    each method in a distributed run."""

    rank = 0
    size = 1
    is_writer = True

    def start(self, model, optimizer, run, train_images):
        """Checks made once before training (nothing to compare with here)."""

    def shard(self, images, labels):
        """This rank's slice of the global batch: all of it."""
        return images, labels

    def reduce(self, grads, loss, correct, n):
        """``(grads, mean loss, correct, n)`` over the global batch: the local ones."""
        return grads, loss, correct, n

    def any(self, flag) -> bool:
        """True if ``flag`` is true on any rank."""
        return bool(flag)

    def check_replicas(self, model):
        """Fail if the ranks' weights differ (one rank: nothing to compare)."""

    def evaluate(self, evaluate, model, images, labels, batch_size):
        """``evaluate(model, images, labels, batch_size=...)`` over the whole set."""
        return evaluate(model, images, labels, batch_size=batch_size)
