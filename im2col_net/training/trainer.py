"""``fit``: mini-batch training with per-epoch evaluation, metrics log and exact resume.

Run directory (``out_dir``): ``metrics.jsonl`` (format in :mod:`.metrics`),
``checkpoint.npz`` (format in :mod:`.checkpoint`, rewritten after every epoch) and, when
training finishes, ``model.npz`` (:func:`im2col_net.save_model`).

Exact resume. Each epoch shuffles with a generator seeded by ``seed``; a checkpoint holds
that generator's state at the start of the epoch in progress, the number of updates done
in it, the weights, buffers, optimizer state and every layer generator (Dropout). Resuming
replays the epoch's shuffle from that state, skips the batches already done and continues,
so an interrupted-then-resumed run ends with bit-for-bit the weights of an uninterrupted
one (same data, seed, batch size, and the same BLAS threading).

Run directory safety (:mod:`.rundir`). ``fit`` holds an OS lock on the run directory for
the whole session, so a second trainer on it is refused at once; a fresh start refuses a
directory holding any run file unless ``overwrite=True``; temporary files of writers killed
mid-write are removed. Every file is written atomically (``atomic_savez``).

Stopping (:mod:`.signals`). While training in the main thread, the first SIGINT (Ctrl-C) or
SIGTERM only sets a flag: the current update finishes, a checkpoint of exactly that state
(mid-epoch) is written, and :class:`TrainingInterrupted` (a KeyboardInterrupt, with the
signal number in ``.signal``) is raised. Further signals during that checkpoint wait for it
to be complete. A KeyboardInterrupt raised any other way (a second signal during an update,
a callback, another thread's handler):

- between updates, or during evaluation: the checkpoint holds the last completed update;
- during forward/backward: that update is discarded (layer generators and buffers are
  rewound) and the checkpoint holds the previous update;
- during the optimizer's in-place update itself: no consistent state exists, so no new
  checkpoint is written; the previous one (last epoch or last Ctrl-C) stays valid.

Either way a later ``resume=True`` continues exactly from what the checkpoint holds.

Non-finite values (:class:`~.numerics.NonFiniteError`). The data are checked once up
front; the loss, the gradients (before the update) and the parameters (after it) at every
update; parameters, buffers and optimizer state again before any file is written. The
first NaN/inf stops training with an error naming the epoch and the step; nothing
non-finite is ever written, so the last checkpoint stays the last finite state.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from ..distributed.local import LocalCommunicator
from ..functional import planner
from ..layers.loss import SoftmaxCrossEntropy
from ..serialization import (
    architecture_to_json,
    load_buffers,
    load_model,
    load_parameters,
    named_buffers,
    save_model,
)
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    Progress,
    generator_state,
    layer_rng_states,
    load_checkpoint,
    save_checkpoint,
    set_generator_state,
    set_layer_rng_states,
    snapshot_buffers,
    validate_resume,
)
from .evaluation import evaluate
from .metrics import MetricsLog, read_metrics
from .numerics import NonFiniteError, count_non_finite, first_non_finite
from .progress import make_progress
from .rundir import (
    BEST_NAME,
    CHECKPOINT_NAME,
    METRICS_NAME,
    MODEL_NAME,
    open_run_dir,
    run_paths,
)
from .signals import stop_on_signals

__all__ = ["fit", "FitResult", "TrainingInterrupted", "NonFiniteError", "split_validation",
           "CHECKPOINT_NAME", "METRICS_NAME", "MODEL_NAME", "BEST_NAME"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM. ``checkpoint``: the file to resume from (or
    None); ``progress``: the :class:`~.checkpoint.Progress` it holds; ``signal``: the
    signal number that stopped it (None for a KeyboardInterrupt raised otherwise)."""

    def __init__(self, message, checkpoint=None, progress=None, signal=None):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.progress = progress
        self.signal = signal


@dataclass
class FitResult:
    """What :func:`fit` returns. Accuracies in [0, 1]; ``wall_time`` is the training wall
    time in seconds summed over resumed sessions, ``session_time`` that of this call
    alone; ``history`` the epoch records. With validation data: ``val_loss`` and
    ``val_accuracy`` of the returned weights, ``best_epoch`` the epoch of the lowest
    validation loss; ``stopped_early`` whether early stopping ended the run (the model
    then holds the weights of ``best_epoch``, as it does whenever ``early_stop`` is set).
    """

    epochs: int
    step: int
    train_loss: float | None
    train_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    wall_time: float
    history: list = field(default_factory=list)
    out_dir: str | None = None
    model_path: str | None = None
    checkpoint_path: str | None = None
    session_time: float = 0.0
    val_loss: float | None = None
    val_accuracy: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False


class _Stop(Exception):
    """Internal: a stop request was seen at a safe point."""


def _check_data(data, name, require=True):
    if data is None and not require:
        return None
    try:
        images, labels = data
    except (TypeError, ValueError):
        raise ValueError(f"fit: {name} must be an (images, labels) pair") from None
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.dtype.kind != "f":
        raise ValueError(f"fit: {name} images must be float (N, C, H, W), got shape "
                         f"{images.shape} dtype {images.dtype}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"fit: {name} labels must be integers of shape ({len(images)},), "
                         f"got shape {labels.shape} dtype {labels.dtype}")
    if len(images) == 0:
        raise ValueError(f"fit: {name} is empty")
    chunk = 4096  # bounded temporary memory for the one-pass check
    bad = sum(count_non_finite(images[i:i + chunk]) for i in range(0, len(images), chunk))
    if bad:
        raise ValueError(f"fit: {name} images hold {bad} NaN or infinite values; clean the "
                         f"data before training")
    return images, labels


def _positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    return int(value)


def _config_without_lr(config):
    return {k: v for k, v in config.items() if k not in ("lr", "initial_lr")}


def _restore(checkpoint: Checkpoint, model, optimizer, run, shuffle_rng, batches_per_epoch):
    """Load a checkpoint's state into ``model``/``optimizer`` after checking that it fits
    and that every field is consistent (nothing is changed when a check fails)."""
    path = checkpoint.path
    arrays = checkpoint.model_arrays
    saved_arch = str(arrays.get("__architecture__", ""))
    if saved_arch != architecture_to_json(model):
        raise CheckpointError(f"{path}: the checkpoint's architecture differs from the model "
                              f"being trained")
    if str(arrays.get("__dtype__", "")) != np.dtype(model.dtype).name:
        raise CheckpointError(f"{path}: checkpoint dtype {arrays.get('__dtype__')} differs "
                              f"from the model's {np.dtype(model.dtype).name}")
    for key in ("batch_size", "seed", "n_train", "train_labels_crc32", "n_val"):
        if checkpoint.run.get(key) != run.get(key):
            raise CheckpointError(
                f"{path}: cannot resume exactly: {key} was {checkpoint.run.get(key)!r}, "
                f"now {run.get(key)!r}")
    # Recorded only when nonzero, so checkpoints from before the option still resume.
    saved_smoothing = checkpoint.run.get("label_smoothing", 0.0)
    if saved_smoothing != run.get("label_smoothing", 0.0):
        raise CheckpointError(
            f"{path}: cannot resume exactly: label_smoothing was {saved_smoothing!r}, now "
            f"{run.get('label_smoothing', 0.0)!r}")
    saved_opt = _config_without_lr(checkpoint.optimizer_config)
    own_opt = _config_without_lr(optimizer.get_config())
    if saved_opt != own_opt:
        raise CheckpointError(f"{path}: optimizer differs from the checkpoint's: saved "
                              f"{saved_opt}, given {own_opt}")
    validate_resume(checkpoint, model=model, shuffle_rng=shuffle_rng, epochs=run["epochs"],
                    batches_per_epoch=batches_per_epoch, batch_size=run["batch_size"],
                    n_train=run["n_train"])
    try:
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        buffers = {k[len("buffer/"):]: v for k, v in arrays.items() if k.startswith("buffer/")}
        load_parameters(model, params)
        load_buffers(model, buffers, where=path)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        set_layer_rng_states(model, checkpoint.rng["layers"], where=path)
        planner.install(checkpoint.plans)   # the same algorithms as before: bit-exact
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot restore: {exc}") from exc


def split_validation(data, *, fraction=None, size=None, seed=0):
    """``(train, val)``: ``data`` (an ``(images, labels)`` pair) cut in two at random,
    reproducibly from ``seed``: ``val`` gets ``size`` images, or ``round(fraction * N)``
    (at least 1); both keep the original order of their images. Exactly one of
    ``fraction`` (in (0, 1)) and ``size`` (1 to N - 1) must be given."""
    images, labels = data
    n = len(labels)
    if (fraction is None) == (size is None):
        raise ValueError("split_validation: give exactly one of fraction= and size=")
    if fraction is not None:
        if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
            raise ValueError(f"split_validation: fraction must be in (0, 1), got {fraction!r}")
        size = max(1, round(fraction * n))
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"split_validation: size must be a positive int, got {size!r}")
    if size >= n:
        raise ValueError(f"split_validation: a validation set of {size} images leaves none "
                         f"of the {n} for training")
    # A generator of its own (not the shuffling one), so the split never shifts the
    # training order a run without validation would have for the same seed.
    order = np.random.default_rng([seed, 0x5EA1]).permutation(n)
    val_index, train_index = np.sort(order[:size]), np.sort(order[size:])
    return (images[train_index], labels[train_index]), (images[val_index], labels[val_index])


def fit(model, train_data, test_data=None, *, epochs, batch_size, optimizer, schedule=None,
        seed=0, out_dir=None, resume=False, overwrite=False, progress=True, log_every=50,
        eval_batch_size=None, callback=None, run_meta=None, handle_sigint=True,
        stream=None, val_data=None, early_stop=None, test_every_epoch=None,
        communicator=None, label_smoothing=0.0) -> FitResult:
    """Train ``model`` with softmax cross-entropy.

    ``train_data``/``test_data``: ``(images (N, C, H, W) float, labels (N,) int)``, all
    finite; images are cast per batch to the model's dtype. ``optimizer``: an optimizer
    from :mod:`im2col_net.optim` built on ``model.params`` (or a name for
    ``make_optimizer(name, model.params)``). ``schedule``: a callable ``epoch (float) ->
    lr`` applied before every update at the fractional epoch ``e + i / batches``; None
    keeps ``optimizer.lr``. ``seed``: the shuffling generator's seed (the model's
    initialisation is the caller's). ``out_dir``: run directory (module docstring),
    locked for the call; one already holding a run file needs ``resume=True`` (continue
    it) or ``overwrite=True`` (delete its checkpoint, model and log first).
    ``progress``: see :func:`.progress.make_progress`. ``log_every``: updates between step
    records and progress lines. ``eval_batch_size``: the most images per forward when
    evaluating (None: a rank's share of ``batch_size``, whose shapes the planner has
    already timed for training). ``callback(info: dict)``: called after every update with
    ``epoch``, ``step``, ``batch``, ``loss``, ``accuracy``, ``lr``. ``run_meta``: JSON-able
    description stored in checkpoints and the log. ``handle_sigint``: defer SIGINT and
    SIGTERM to the end of the current update (main thread only). ``communicator``:
    data-parallel training, e.g. :func:`im2col_net.distributed.mpi_communicator` under
    ``mpiexec`` (every rank calls ``fit`` alike; ``batch_size`` is the global batch; only
    rank 0 locks and writes the run directory; see ``docs/distributed.md``); None trains
    in this process alone.

    ``label_smoothing``: in ``[0, 1)``, the training loss's target mixes the label with
    the uniform distribution over the classes (torch's ``CrossEntropyLoss(label_smoothing=
    ...)``); the reported training loss includes it, evaluations use the plain
    cross-entropy.

    ``val_data``: an ``(images, labels)`` pair (e.g. from :func:`split_validation`)
    evaluated after every epoch (``val_loss``, ``val_accuracy`` in the epoch records).
    ``early_stop``: a patience, in epochs: training ends once the validation loss has
    not improved for that many epochs, and the model is given back (and saved) with the
    weights of the best epoch, kept in ``best.npz`` in the run directory so that a resume
    keeps them too. ``test_every_epoch``: evaluate ``test_data`` after every epoch
    (default: only without ``val_data``; otherwise the test set is evaluated once, at the
    end, so nothing chosen during training has seen it).

    Returns :class:`FitResult`. Raises :class:`TrainingInterrupted` after a stop signal,
    :class:`NonFiniteError` when training diverges, :class:`~.rundir.RunDirLocked` when
    another trainer uses ``out_dir``, FileExistsError for a directory holding another run,
    OSError (naming the file) when a file cannot be written.
    """
    train_x, train_y = _check_data(train_data, "train_data")
    test = _check_data(test_data, "test_data", require=False)
    val = _check_data(val_data, "val_data", require=False)
    if early_stop is not None:
        early_stop = _positive_int(early_stop, "early_stop")
        if val is None:
            raise ValueError("fit: early_stop needs val_data (stopping on the test set would "
                             "make its accuracy meaningless)")
    if test_every_epoch is None:
        test_every_epoch = val is None
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    log_every = _positive_int(log_every, "log_every")
    if eval_batch_size is not None:
        eval_batch_size = _positive_int(eval_batch_size, "eval_batch_size")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"fit: seed must be a non-negative int, got {seed!r}")
    if model.dtype is None:
        raise ValueError("fit: the model has no parameters to train")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
            label_smoothing, (int, float, np.number)) or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"fit: label_smoothing must be a number in [0, 1), got "
                         f"{label_smoothing!r}")
    label_smoothing = float(label_smoothing)
    if isinstance(optimizer, str):
        from ..optim import make_optimizer

        optimizer = make_optimizer(optimizer, model.params)
    if schedule is not None and not callable(schedule):
        raise ValueError(f"fit: schedule must be callable epoch -> lr, got {schedule!r}")
    if resume and overwrite:
        raise ValueError("fit: resume=True and overwrite=True exclude each other")
    if out_dir is None and (resume or overwrite):
        raise ValueError(f"fit: {'resume' if resume else 'overwrite'}=True needs the out_dir "
                         f"of the run")
    comm = communicator if communicator is not None else LocalCommunicator()
    if eval_batch_size is None:
        # A rank's share of the training batch: evaluation then runs on the shapes the
        # training step has already planned (the planner keys by the batch's power of two).
        eval_batch_size = -(-batch_size // comm.size)
    if out_dir is None:
        session = contextlib.nullcontext({})
    elif comm.is_writer:
        session = open_run_dir(out_dir, resume=resume, overwrite=overwrite)
    else:  # the other ranks only read the checkpoint on resume
        session = contextlib.nullcontext(run_paths(out_dir))
    with session as paths, planner.training_planning():   # "measure" unless chosen
        return _fit_session(
            model, train_x, train_y, test, epochs=epochs, batch_size=batch_size,
            optimizer=optimizer, schedule=schedule, seed=int(seed),
            out_dir=None if out_dir is None else os.fspath(out_dir), paths=paths,
            resume=resume, show=make_progress(progress if comm.is_writer else False, stream),
            log_every=log_every, eval_batch_size=eval_batch_size, callback=callback,
            run_meta=run_meta, handle_sigint=handle_sigint, val=val, early_stop=early_stop,
            test_every_epoch=bool(test_every_epoch), comm=comm,
            label_smoothing=label_smoothing)


def _model_state_problem(model, optimizer=None):
    """The name of the first parameter, buffer or optimizer state array holding NaN/inf."""
    bad = first_non_finite(model.params)
    if bad is None:
        bad = first_non_finite({f"buffer {k}": v for k, v in named_buffers(model).items()})
    if bad is None and optimizer is not None:
        bad = first_non_finite({f"optimizer state {k}": v
                                for k, v in optimizer.state_dict().items()})
    return bad


def _fit_session(model, train_x, train_y, test, *, epochs, batch_size, optimizer, schedule,
                 seed, out_dir, paths, resume, show, log_every, eval_batch_size, callback,
                 run_meta, handle_sigint, val, early_stop, test_every_epoch,
                 comm, label_smoothing) -> FitResult:
    """:func:`fit` after argument checks, with the run directory (if any) locked."""
    from ..datasets import iterate_batches

    ckpt_path = paths.get(CHECKPOINT_NAME)
    log = MetricsLog(paths.get(METRICS_NAME) if comm.is_writer else None)
    n_train = len(train_x)
    batches_per_epoch = math.ceil(n_train / batch_size)
    run = {"batch_size": batch_size, "seed": seed, "n_train": n_train,
           "train_labels_crc32": zlib.crc32(np.ascontiguousarray(train_y).tobytes()),
           "epochs": epochs, "meta": run_meta}
    if val is not None:
        run["n_val"] = len(val[0])
    if label_smoothing:
        run["label_smoothing"] = label_smoothing
    best_path = paths.get(BEST_NAME)
    # The lowest validation loss so far, its epoch, and (with early stopping) its weights.
    best = {"loss": math.inf, "epoch": None, "params": None, "buffers": None}
    stopped_early = False
    dtype = model.dtype
    shuffle_rng = np.random.default_rng(seed)
    state = Progress()
    saved = None  # (epoch, step) of the state the checkpoint file holds
    if resume:
        if not os.path.exists(ckpt_path):
            raise FileNotFoundError(f"fit: nothing to resume: {ckpt_path} does not exist")
        checkpoint = load_checkpoint(ckpt_path)
        _restore(checkpoint, model, optimizer, run, shuffle_rng, batches_per_epoch)
        state = checkpoint.progress
        saved = (state.epoch, state.step)
        set_generator_state(shuffle_rng, checkpoint.rng["shuffle"])
        log.truncate_to(step=state.step, epoch=state.epoch)
        stopped_early = bool(checkpoint.run.get("early_stopped"))
        if stopped_early:
            run["early_stopped"] = checkpoint.run["early_stopped"]
        if val is not None:
            _restore_best(best, log, best_path, early_stop, state.epoch)
        log.write({"kind": "event", "event": "resume", "epoch": state.epoch,
                   "step": state.step, "time": state.elapsed, "run": run})
        show.message(f"resuming from {ckpt_path}: {_position(state, epochs)}")
    else:
        log.write({"kind": "event", "event": "start", "epoch": 0, "step": 0, "time": 0.0,
                   "run": run, "optimizer": optimizer.get_config(),
                   "schedule": schedule.get_config() if hasattr(schedule, "get_config")
                   else None})
    comm.start(model, optimizer, run, train_x)
    shuffle_start = generator_state(shuffle_rng)
    loss_fn = SoftmaxCrossEntropy(label_smoothing=label_smoothing)
    saved_input_grad = None  # the model's own input-gradient setting, put back at the end
    session_start = time.perf_counter()
    elapsed_before = state.elapsed
    lr = float(optimizer.lr)

    def elapsed():
        return elapsed_before + time.perf_counter() - session_start

    def kept():
        if saved is None:
            return "no checkpoint was written"
        return f"the checkpoint {ckpt_path} (step {saved[1]}) is unchanged"

    def diverged(what, *, during="update", epoch=None, step=None):
        epoch = state.epoch + 1 if epoch is None else epoch
        step = state.step + (during == "update") if step is None else step
        return NonFiniteError(
            f"fit: non-finite {what} at epoch {epoch}, step {step} ({during}): training "
            f"diverged; the learning rate ({lr:.3g}) is most likely too high (the training "
            f"data are finite); {kept()}", epoch=epoch, step=step, what=what)

    def save(current: Progress, start_state):
        nonlocal saved
        if ckpt_path is None or saved == (current.epoch, current.step):
            return
        bad = _model_state_problem(model, optimizer)  # on every rank: replicas agree
        if bad is not None:
            raise diverged(bad, during="checkpoint", step=current.step,
                           epoch=current.epoch + (1 if current.batch_in_epoch else 0))
        if comm.is_writer:
            try:
                save_checkpoint(ckpt_path, model, optimizer, schedule=schedule,
                                progress=replace(current, elapsed=elapsed()),
                                shuffle_state=start_state, run=run)
            except OSError as exc:
                raise type(exc)(exc.errno, f"fit: cannot write the checkpoint {ckpt_path}: "
                                           f"{exc.strerror or exc}; {kept()}") from exc
        saved = (current.epoch, current.step)

    phase = "idle"
    before_step = None
    session_history = []
    # NaN/inf are detected and reported explicitly below, so numpy's warnings would only
    # add noise to that one clear error.
    quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    with stop_on_signals(handle_sigint) as stop, quiet:
        try:
            saved_input_grad = model.set_input_grad(False)  # nobody needs d(loss)/d(images)
            while state.epoch < epochs and not stopped_early:
                epoch_started = time.perf_counter()
                skip = state.batch_in_epoch
                show.start_epoch(state.epoch + 1, epochs, batches_per_epoch, initial=skip)
                model.train()
                window = [0.0, 0, 0, 0, time.perf_counter()]  # loss*n, correct, n, steps, t0
                lr = float(optimizer.lr)  # the rate of the last update, for the records
                if schedule is not None and skip > 0:
                    lr = float(schedule(state.epoch + (skip - 1) / batches_per_epoch))
                for index, (xb, yb) in enumerate(iterate_batches(train_x, train_y, batch_size,
                                                                 shuffle_rng, shuffle=True)):
                    if index < skip:
                        continue
                    xb, yb = comm.shard(xb, yb)
                    xb = xb.astype(dtype, copy=False)
                    if schedule is not None:
                        lr = float(schedule(state.epoch + index / batches_per_epoch))
                        optimizer.lr = lr
                    before_step = (layer_rng_states(model), snapshot_buffers(model))
                    phase = "compute"
                    logits = model.forward(xb)
                    loss = loss_fn.forward(logits, yb)
                    model.backward(loss_fn.backward())
                    correct = int(np.count_nonzero(logits.argmax(axis=1) == yb))
                    # Checked after the reduction, so that every rank stops alike.
                    grads, loss, correct, n = comm.reduce(model.grads, loss, correct, len(yb))
                    if not math.isfinite(loss):
                        raise diverged(f"loss ({loss})")
                    bad = first_non_finite(grads)
                    if bad is not None:
                        raise diverged(f"gradient of {bad}")
                    phase = "update"
                    optimizer.step(grads)
                    bad = first_non_finite(model.params)
                    if bad is not None:
                        raise diverged(f"parameter {bad} after the update")
                    state = replace(state, step=state.step + 1, batch_in_epoch=index + 1,
                                    loss_sum=state.loss_sum + loss * n,
                                    correct=state.correct + correct, seen=state.seen + n)
                    phase = "done"
                    show.advance()
                    window[0] += loss * n
                    window[1] += correct
                    window[2] += n
                    window[3] += 1
                    if window[3] >= log_every or index + 1 == batches_per_epoch:
                        _log_window(log, show, window, state, batches_per_epoch, lr, elapsed())
                        window = [0.0, 0, 0, 0, time.perf_counter()]
                    if callback is not None:
                        callback({"epoch": state.epoch, "step": state.step, "batch": index,
                                  "loss": loss, "accuracy": correct / n, "lr": lr})
                    if comm.any(stop.requested):
                        stop.stopping()
                        raise _Stop
                comm.check_replicas(model)
                phase = "eval"
                test_loss = test_acc = None
                if test is not None and test_every_epoch:
                    try:
                        test_loss, test_acc, _ = comm.evaluate(evaluate, model, *test,
                                                               eval_batch_size)
                    except NonFiniteError as exc:
                        raise diverged(f"test logits ({exc})", during="evaluation") from exc
                record = {"kind": "epoch", "epoch": state.epoch + 1, "step": state.step,
                          "train_loss": state.loss_sum / max(state.seen, 1),
                          "train_accuracy": state.correct / max(state.seen, 1),
                          "test_loss": test_loss, "test_accuracy": test_acc, "lr": lr,
                          "epoch_time": time.perf_counter() - epoch_started,
                          "time": elapsed()}
                improved = False
                if val is not None:
                    try:
                        val_loss, val_acc, _ = comm.evaluate(evaluate, model, *val,
                                                             eval_batch_size)
                    except NonFiniteError as exc:
                        raise diverged(f"validation logits ({exc})",
                                       during="evaluation") from exc
                    record.update(val_loss=val_loss, val_accuracy=val_acc)
                    improved = val_loss < best["loss"]
                    if improved:
                        best.update(loss=val_loss, epoch=state.epoch + 1)
                    record["best_epoch"] = best["epoch"]
                    stopped_early = (early_stop is not None
                                     and state.epoch + 1 - best["epoch"] >= early_stop
                                     and state.epoch + 1 < epochs)
                    if stopped_early:
                        run["early_stopped"] = {"epoch": state.epoch + 1,
                                                "best_epoch": best["epoch"],
                                                "best_val_loss": best["loss"]}
                state, shuffle_start = (Progress(epoch=state.epoch + 1, step=state.step),
                                        generator_state(shuffle_rng))
                phase = "epoch_end"
                if improved and early_stop is not None:
                    _keep_best(best, model, best_path if comm.is_writer else None)
                log.write(record)
                session_history.append(record)
                show.end_epoch()
                show.message(_epoch_line(record, epochs))
                save(state, shuffle_start)
                if stopped_early:
                    log.write({"kind": "event", "event": "early_stop", "epoch": state.epoch,
                               "step": state.step, "time": elapsed(), **run["early_stopped"]})
                    show.message(f"early stop after epoch {state.epoch}: no lower validation "
                                 f"loss for {early_stop} epochs; keeping the weights of epoch "
                                 f"{best['epoch']}")
                phase = "idle"
                if comm.any(stop.requested):
                    stop.stopping()
                    raise _Stop
        except NonFiniteError as exc:
            stop.stopping()
            show.close()
            with contextlib.suppress(OSError):  # best effort: the error itself matters more
                log.write({"kind": "event", "event": "non_finite", "epoch": exc.epoch,
                           "step": exc.step, "time": elapsed(), "what": exc.what})
            raise
        except (KeyboardInterrupt, _Stop) as exc:
            stop.stopping()  # further signals wait: the checkpoint below must be complete
            show.close()
            consistent = phase != "update"
            if phase == "compute" and before_step is not None:
                set_layer_rng_states(model, before_step[0])
                load_buffers(model, before_step[1])
            if ckpt_path is not None and consistent:
                save(state, shuffle_start)
            where = ckpt_path if ckpt_path is not None and os.path.exists(ckpt_path) else None
            with contextlib.suppress(OSError):  # best effort: the checkpoint is what counts
                log.write({"kind": "event", "event": "interrupt", "epoch": state.epoch,
                           "step": state.step, "time": elapsed(), "consistent": consistent})
            message = (f"interrupted {_position(state, epochs)}; "
                       + (f"checkpoint in {where} (resume to continue)" if where
                          else "no checkpoint (no out_dir)"))
            if not consistent:
                message += "; the update in progress was cut short, the last saved state stays"
            stop.handled = True
            raise TrainingInterrupted(message, where, state, stop.signum) from (
                None if isinstance(exc, _Stop) else exc)
        finally:
            show.close()
            model.set_input_grad(saved_input_grad)

        history = (read_metrics(log.path, kind="epoch") if log.path is not None
                   else session_history)
        last = history[-1] if history else None
        if last is None or last.get("epoch") != state.epoch:
            last = None
        restored = early_stop is not None and best["params"] is not None \
            and best["epoch"] != state.epoch
        if restored:
            load_parameters(model, best["params"])
            load_buffers(model, best["buffers"])
            last = next((r for r in history if r.get("epoch") == best["epoch"]), None)
        # Decided together: only rank 0 reads the log, and evaluation is collective.
        if test is not None and comm.any(last is None or last.get("test_accuracy") is None):
            test_loss, test_acc, _ = comm.evaluate(evaluate, model, *test, eval_batch_size)
        else:
            test_loss = last.get("test_loss") if last else None
            test_acc = last.get("test_accuracy") if last else None
        model_path = paths.get(MODEL_NAME)
        if model_path is not None and comm.is_writer:
            bad = _model_state_problem(model)
            if bad is not None:
                raise NonFiniteError(f"fit: {bad} is non-finite at the end of training; "
                                     f"{model_path} was not written")
            try:
                save_model(model, model_path)
            except OSError as exc:
                raise type(exc)(exc.errno, f"fit: cannot write the model {model_path}: "
                                           f"{exc.strerror or exc}; the finished run's "
                                           f"checkpoint is kept, resume it to write the "
                                           f"model again") from exc
        end = {"kind": "event", "event": "end", "epoch": state.epoch, "step": state.step,
               "time": elapsed(), "test_accuracy": test_acc}
        if val is not None:
            end.update(best_epoch=best["epoch"], restored_best=restored,
                       stopped_early=stopped_early)
        log.write(end)
    return FitResult(
        epochs=state.epoch, step=state.step,
        train_loss=last.get("train_loss") if last else None,
        train_accuracy=last.get("train_accuracy") if last else None,
        test_loss=test_loss, test_accuracy=test_acc, wall_time=elapsed(), history=history,
        out_dir=out_dir, model_path=model_path, checkpoint_path=ckpt_path,
        session_time=time.perf_counter() - session_start,
        val_loss=last.get("val_loss") if last else None,
        val_accuracy=last.get("val_accuracy") if last else None,
        best_epoch=best["epoch"], stopped_early=stopped_early,
    )


def _position(state, epochs) -> str:
    """Where a run stands, with epochs numbered from 1 as in every other message (the
    interruption, the resume and the epoch lines all count the same way)."""
    done = f"{state.epoch} of {epochs} epochs done"
    if state.batch_in_epoch or state.epoch == 0:
        return f"at epoch {state.epoch + 1}, step {state.step} ({done})"
    return f"after epoch {state.epoch}, step {state.step} ({done})"


def _keep_best(best, model, best_path):
    """Remember the model's current weights as the best (in memory, and in ``best_path``
    when there is a run directory, for a resume)."""
    best["params"] = {name: np.array(p, copy=True) for name, p in model.named_parameters()}
    best["buffers"] = {name: np.array(b, copy=True) for name, b in named_buffers(model).items()}
    if best_path is not None:
        save_model(model, best_path)


def _restore_best(best, log, best_path, early_stop, epochs_done):
    """On resume: the best validation epoch from the (truncated) log, and its weights
    from ``best_path`` when early stopping needs them."""
    if log.path is None:
        return
    for record in read_metrics(log.path, kind="epoch"):
        loss = record.get("val_loss")
        if record.get("epoch", 0) <= epochs_done and loss is not None and loss < best["loss"]:
            best.update(loss=loss, epoch=record["epoch"])
    if early_stop is None or best["epoch"] is None:
        return
    if best_path is None or not os.path.exists(best_path):
        raise CheckpointError(f"cannot resume early stopping: the best weights "
                              f"({best_path}) are missing")
    kept = load_model(best_path)
    best["params"] = {name: np.array(p, copy=True) for name, p in kept.named_parameters()}
    best["buffers"] = {name: np.array(b, copy=True) for name, b in named_buffers(kept).items()}


def _log_window(log, show, window, state, batches_per_epoch, lr, now):
    loss_sum, correct, n, steps, t0 = window
    seconds = max(time.perf_counter() - t0, 1e-9)
    loss, accuracy, speed = loss_sum / n, correct / n, n / seconds
    log.write({"kind": "step",
               "epoch": state.epoch + state.batch_in_epoch / batches_per_epoch,
               "step": state.step, "loss": loss, "accuracy": accuracy, "lr": lr,
               "images_per_sec": speed, "time": now})
    show.update(state.batch_in_epoch, loss, accuracy, speed, lr)


def _epoch_line(record, epochs):
    text = (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_accuracy']:.2f}%")
    if record.get("val_loss") is not None:
        text += (f" | val loss {record['val_loss']:.4f} "
                 f"acc {100 * record['val_accuracy']:.2f}%")
    if record["test_accuracy"] is not None:
        text += (f" | test loss {record['test_loss']:.4f} "
                 f"acc {100 * record['test_accuracy']:.2f}%")
    return text + f" | {record['epoch_time']:.1f} s"
