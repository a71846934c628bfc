"""Errors of distributed training."""

from __future__ import annotations

__all__ = ["DistributedError", "StartupMismatchError", "ReplicaMismatchError",
           "CollectiveTimeout"]


class DistributedError(RuntimeError):
    """A distributed run cannot continue (a peer failed, hung, or disagrees)."""


class StartupMismatchError(DistributedError, ValueError):
    """The ranks were started with different settings, data or model files."""


class ReplicaMismatchError(DistributedError):
    """The ranks' weights drifted apart (they must stay bit-for-bit identical)."""


class CollectiveTimeout(DistributedError):
    """A collective did not complete within the timeout (a rank hung or died)."""
