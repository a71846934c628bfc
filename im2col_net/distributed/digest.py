"""The start-up digest: one hash of everything that must be identical on every rank."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..serialization import architecture_to_json, named_buffers

__all__ = ["run_digest", "DIGEST_PARTS"]

DIGEST_PARTS = ("run settings", "architecture", "weights and buffers", "optimizer",
                "layer generators", "training data")


def _hash_arrays(h, arrays):
    for name, value in arrays:
        value = np.ascontiguousarray(value)
        h.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        h.update(memoryview(value).cast("B"))


def run_digest(model, optimizer, run: dict, train_images) -> dict:
    """``{part: hex digest}`` for each of :data:`DIGEST_PARTS`, so a mismatch can say
    which part differs. ``run``: the JSON-able run identity (batch size, seed, ...)."""
    from ..training.checkpoint import layer_rng_states

    parts = {}
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(run, sort_keys=True, default=str).encode())
    parts["run settings"] = h.hexdigest()
    h = hashlib.blake2b(architecture_to_json(model).encode(), digest_size=16)
    parts["architecture"] = h.hexdigest()
    h = hashlib.blake2b(digest_size=16)
    _hash_arrays(h, model.named_parameters())
    _hash_arrays(h, sorted(named_buffers(model).items()))
    parts["weights and buffers"] = h.hexdigest()
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(optimizer.get_config(), sort_keys=True, default=str).encode())
    _hash_arrays(h, sorted(optimizer.state_dict().items()))
    parts["optimizer"] = h.hexdigest()
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(layer_rng_states(model), sort_keys=True, default=str).encode())
    parts["layer generators"] = h.hexdigest()
    h = hashlib.blake2b(digest_size=16)
    _hash_arrays(h, [("images", train_images)])
    parts["training data"] = h.hexdigest()
    return parts
