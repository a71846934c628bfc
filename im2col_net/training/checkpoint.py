"""Training checkpoints: one ``.npz`` holding everything needed to continue a run exactly.

Members (all loadable with ``allow_pickle=False``):

- the model members of :func:`im2col_net.serialization.model_arrays` (architecture JSON,
  dtype, ``param/<name>``, ``buffer/<name>``), so :func:`im2col_net.load_model` also
  reads the model out of a checkpoint;
- ``optim/<key>``: the optimizer's ``state_dict()`` arrays;
- ``__checkpoint__``: a 0-d JSON string with ``version``, ``optimizer`` (its
  ``get_config()``), ``schedule`` (its ``get_config()`` or null), ``progress`` (see
  :class:`Progress`), ``rng`` (``{"shuffle": bit-generator state at the start of the
  epoch in progress, "layers": {layer path: state}}`` for every layer holding a
  ``numpy.random.Generator`` in ``.rng``, e.g. Dropout), ``run`` (batch size, seed,
  training-set size and label checksum, epochs, plus free-form ``meta``), ``plans``
  (the convolution plans the run used, :func:`im2col_net.functional.planner.export_plans`;
  installed again on resume so that it repeats the same arithmetic; absent in older
  checkpoints).

Written with :func:`~im2col_net.serialization.atomic_savez` (temp file + fsync + rename,
signals held during the write). Before a resume, :func:`validate_resume` checks every
field the resume relies on (progress consistent with the data and batch size, generator
states well-formed, arrays finite, plans well-formed) and refuses the file naming the
first bad field.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ..functional import planner
from ..serialization import (
    ModelFileError,
    atomic_savez,
    json_from_array,
    json_scalar,
    model_arrays,
    named_buffers,
    named_layers,
    read_npz,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "Progress",
    "Checkpoint",
    "generator_state",
    "set_generator_state",
    "layer_rng_states",
    "set_layer_rng_states",
    "save_checkpoint",
    "load_checkpoint",
    "snapshot_buffers",
    "validate_resume",
]

CHECKPOINT_VERSION = 1
OPTIM_PREFIX = "optim/"


class CheckpointError(ModelFileError):
    """A checkpoint file is unreadable, corrupt, or does not belong to this run."""


@dataclass
class Progress:
    """Where a run stands.

    ``epoch``: completed epochs (evaluated and logged). ``step``: optimizer updates done
    in total. ``batch_in_epoch``: updates done in epoch ``epoch`` (0-based) so far; it may
    equal the number of batches per epoch when the interruption came during evaluation.
    ``loss_sum``/``correct``/``seen``: the running training sums of that partial epoch.
    ``elapsed``: training wall time in seconds over all sessions so far.
    """

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    elapsed: float = 0.0


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the meaning of each part)."""

    path: str
    model_arrays: dict
    optimizer_state: dict
    optimizer_config: dict
    schedule_config: dict | None
    progress: Progress
    rng: dict
    run: dict = field(default_factory=dict)
    plans: list = field(default_factory=list)   # the convolution plans the run used


# -- RNG states as JSON ------------------------------------------------------------------
def _to_json(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_json(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_json(v) for k, v in value.items()}
    return value


def generator_state(rng: np.random.Generator) -> dict:
    """The bit-generator state of ``rng`` as a JSON-able dict."""
    return _to_json(rng.bit_generator.state)


def set_generator_state(rng: np.random.Generator, state: dict):
    """Restore a state taken by :func:`generator_state`."""
    rng.bit_generator.state = _from_json(state)


def layer_rng_states(model) -> dict:
    """``{layer path: state}`` for every layer whose ``rng`` is a Generator (Dropout...)."""
    return {path: generator_state(layer.rng) for path, layer in named_layers(model)
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def set_layer_rng_states(model, states: dict, *, where="checkpoint"):
    """Restore :func:`layer_rng_states`; the set of layers with generators must match."""
    own = {path: layer for path, layer in named_layers(model)
           if isinstance(getattr(layer, "rng", None), np.random.Generator)}
    if set(own) != set(states):
        raise ValueError(f"{where}: layers with random generators do not match: model has "
                         f"{sorted(own)}, checkpoint has {sorted(states)}")
    for path, layer in own.items():
        set_generator_state(layer.rng, states[path])


# -- files -------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, *, schedule=None, progress: Progress,
                    shuffle_state: dict, run: dict | None = None):
    """Write a checkpoint of the current state atomically to ``path``.

    ``shuffle_state``: the shuffle generator's state at the start of the epoch in
    progress (:func:`generator_state`). ``run``: JSON-able identity of the run.
    """
    arrays = model_arrays(model)
    for key, value in optimizer.state_dict().items():
        arrays[OPTIM_PREFIX + key] = np.asarray(value)
    meta = {
        "version": CHECKPOINT_VERSION,
        "optimizer": optimizer.get_config(),
        "schedule": schedule.get_config() if schedule is not None else None,
        "progress": asdict(progress),
        "rng": {"shuffle": shuffle_state, "layers": layer_rng_states(model)},
        "run": run or {},
        "plans": planner.export_plans(),   # reused on resume, so it stays bit-exact
    }
    arrays["__checkpoint__"] = json_scalar(meta)
    atomic_savez(path, arrays)


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises FileNotFoundError or :class:`CheckpointError` naming the file.
    """
    path = os.fspath(path)
    arrays = read_npz(path, error=CheckpointError)
    meta = json_from_array(arrays, "__checkpoint__", path, error=CheckpointError)
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), int):
        raise CheckpointError(f"{path}: '__checkpoint__' is not a checkpoint description")
    if meta["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta['version']} is newer than "
                              f"this im2col_net understands ({CHECKPOINT_VERSION})")
    try:
        progress = Progress(**meta["progress"])
        rng = meta["rng"]
        if not isinstance(rng.get("shuffle"), dict) or not isinstance(rng.get("layers"), dict):
            raise TypeError("bad 'rng' entry")
        optimizer_config = meta["optimizer"]
        if not isinstance(optimizer_config, dict):
            raise TypeError("bad 'optimizer' entry")
        if not isinstance(meta.get("run") or {}, dict):
            raise TypeError("bad 'run' entry")
        if not isinstance(meta.get("plans") or [], list):
            raise TypeError("bad 'plans' entry")
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint description: {exc}") from exc
    for key, value in arrays.items():
        if key.startswith(("param/", "buffer/", OPTIM_PREFIX)) and value.dtype.kind not in "fiub":
            raise CheckpointError(f"{path}: array {key!r} has unsupported dtype {value.dtype}")
    return Checkpoint(
        path=path,
        model_arrays={k: v for k, v in arrays.items()
                      if not k.startswith(OPTIM_PREFIX) and k != "__checkpoint__"},
        optimizer_state={k[len(OPTIM_PREFIX):]: v for k, v in arrays.items()
                         if k.startswith(OPTIM_PREFIX)},
        optimizer_config=optimizer_config,
        schedule_config=meta.get("schedule"),
        progress=progress,
        rng=rng,
        run=meta.get("run") or {},
        plans=meta.get("plans") or [],   # older checkpoints have none: plan anew
    )


def snapshot_buffers(model) -> dict:
    """Copies of every buffer (to undo a half-done step)."""
    return {name: np.array(value, copy=True) for name, value in named_buffers(model).items()}


# -- validation before resuming -----------------------------------------------------------
def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_progress(p: Progress, path, *, epochs, batches_per_epoch, batch_size, n_train):
    def bad(name, why):
        raise CheckpointError(f"{path}: progress.{name} = {getattr(p, name)!r} {why}; the "
                              f"checkpoint is damaged or was edited")

    for name in ("epoch", "step", "batch_in_epoch", "correct", "seen"):
        if not _is_int(getattr(p, name)) or getattr(p, name) < 0:
            bad(name, "is not an integer >= 0")
    for name in ("loss_sum", "elapsed"):
        if not _is_number(getattr(p, name)) or getattr(p, name) < 0:
            bad(name, "is not a finite number >= 0")
    if p.epoch > epochs:  # a user choice, not damage: say what to ask for instead
        raise CheckpointError(f"{path}: the run has already done {p.epoch} epochs, more "
                              f"than the {epochs} asked for; ask for at least {p.epoch}")
    if p.batch_in_epoch > batches_per_epoch:
        bad("batch_in_epoch", f"exceeds the {batches_per_epoch} batches of an epoch")
    if p.epoch == epochs and p.batch_in_epoch:
        bad("batch_in_epoch", f"is non-zero after the last of {epochs} epochs")
    if p.step != p.epoch * batches_per_epoch + p.batch_in_epoch:
        bad("step", f"disagrees with epoch {p.epoch} x {batches_per_epoch} batches + "
                    f"batch_in_epoch {p.batch_in_epoch}")
    if p.seen != min(p.batch_in_epoch * batch_size, n_train):
        bad("seen", f"is not the number of images in {p.batch_in_epoch} batches of "
                    f"{batch_size}")
    if p.correct > p.seen:
        bad("correct", f"exceeds seen = {p.seen}")
    if p.seen == 0 and p.loss_sum != 0:
        bad("loss_sum", "is non-zero before any batch")


def _check_like(saved, reference, where):
    """``saved`` must have the structure of the JSON state ``reference`` (same keys, list
    lengths, names; non-negative integers where it has integers)."""
    if isinstance(reference, dict):
        if not isinstance(saved, dict) or set(saved) != set(reference):
            raise CheckpointError(f"{where}: expected an object with keys "
                                  f"{sorted(reference)}, got {saved!r:.120}")
        for key in reference:
            _check_like(saved[key], reference[key], f"{where}.{key}")
    elif isinstance(reference, list):
        if not isinstance(saved, list) or len(saved) != len(reference):
            raise CheckpointError(f"{where}: expected a list of {len(reference)} entries")
        for i, (a, b) in enumerate(zip(saved, reference, strict=True)):
            _check_like(a, b, f"{where}[{i}]")
    elif _is_int(reference):
        if not _is_int(saved) or saved < 0:
            raise CheckpointError(f"{where}: expected an integer >= 0, got {saved!r:.60}")
    elif isinstance(reference, str):
        if saved != reference:
            raise CheckpointError(f"{where}: expected {reference!r}, got {saved!r:.60}")
    elif not _is_number(saved):
        raise CheckpointError(f"{where}: expected a finite number, got {saved!r:.60}")


def _check_generator_state(saved, rng: np.random.Generator, where):
    _check_like(saved, generator_state(rng), where)
    trial = np.random.Generator(type(rng.bit_generator)())
    try:
        set_generator_state(trial, saved)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"{where}: not a valid generator state: {exc}") from exc


def validate_resume(checkpoint: Checkpoint, *, model, shuffle_rng, epochs, batches_per_epoch,
                    batch_size, n_train):
    """Check every part of ``checkpoint`` that resuming relies on, before anything is
    loaded: progress consistent with the data and batch size, well-formed generator
    states for the shuffle and for each of ``model``'s random layers, finite arrays,
    well-formed convolution plans.
    Raises :class:`CheckpointError` naming the file and the field."""
    path = checkpoint.path
    try:
        planner.validate_entries(checkpoint.plans)
    except ValueError as exc:
        raise CheckpointError(f"{path}: plans: {exc}") from None
    _check_progress(checkpoint.progress, path, epochs=epochs,
                    batches_per_epoch=batches_per_epoch, batch_size=batch_size,
                    n_train=n_train)
    _check_generator_state(checkpoint.rng["shuffle"], shuffle_rng, f"{path}: rng.shuffle")
    layers = checkpoint.rng["layers"]
    for name, layer in named_layers(model):
        if isinstance(getattr(layer, "rng", None), np.random.Generator) and name in layers:
            _check_generator_state(layers[name], layer.rng, f"{path}: rng.layers[{name!r}]")
    arrays = dict(checkpoint.model_arrays)
    arrays.update({OPTIM_PREFIX + k: v for k, v in checkpoint.optimizer_state.items()})
    for key, value in arrays.items():
        value = np.asarray(value)
        if key.startswith(("param/", "buffer/", OPTIM_PREFIX)) and value.dtype.kind == "f" \
                and not np.isfinite(value).all():
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values; refusing to "
                                  f"resume from it")
