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

from ..functional import planner
from ..layers.conv import Conv2D
from ..layers.loss import SoftmaxCrossEntropy
from ..serialization import (
    architecture_to_json,
    load_buffers,
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
from .rundir import CHECKPOINT_NAME, METRICS_NAME, MODEL_NAME, open_run_dir
from .signals import stop_on_signals

__all__ = ["fit", "FitResult", "TrainingInterrupted", "NonFiniteError", "CHECKPOINT_NAME",
           "METRICS_NAME", "MODEL_NAME"]


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
    time in seconds summed over resumed sessions; ``history`` the epoch records."""

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
    for key in ("batch_size", "seed", "n_train", "train_labels_crc32"):
        if checkpoint.run.get(key) != run[key]:
            raise CheckpointError(
                f"{path}: cannot resume exactly: {key} was {checkpoint.run.get(key)!r}, "
                f"now {run[key]!r}")
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


def _first_conv(model):
    """The model's first layer if it is a Conv2D applied directly to the input."""
    if isinstance(model, Conv2D):
        return model
    layers = getattr(model, "layers", None)
    if type(model).__name__ == "Sequential" and layers and isinstance(layers[0], Conv2D):
        return layers[0]
    return None


def fit(model, train_data, test_data=None, *, epochs, batch_size, optimizer, schedule=None,
        seed=0, out_dir=None, resume=False, overwrite=False, progress=True, log_every=50,
        eval_batch_size=256, callback=None, run_meta=None, handle_sigint=True,
        stream=None) -> FitResult:
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
    records and progress lines. ``callback(info: dict)``: called after every update with
    ``epoch``, ``step``, ``batch``, ``loss``, ``accuracy``, ``lr``. ``run_meta``: JSON-able
    description stored in checkpoints and the log. ``handle_sigint``: defer SIGINT and
    SIGTERM to the end of the current update (main thread only).

    Returns :class:`FitResult`. Raises :class:`TrainingInterrupted` after a stop signal,
    :class:`NonFiniteError` when training diverges, :class:`~.rundir.RunDirLocked` when
    another trainer uses ``out_dir``, FileExistsError for a directory holding another run,
    OSError (naming the file) when a file cannot be written.
    """
    train_x, train_y = _check_data(train_data, "train_data")
    test = _check_data(test_data, "test_data", require=False)
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    log_every = _positive_int(log_every, "log_every")
    eval_batch_size = _positive_int(eval_batch_size, "eval_batch_size")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"fit: seed must be a non-negative int, got {seed!r}")
    if model.dtype is None:
        raise ValueError("fit: the model has no parameters to train")
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
    session = (contextlib.nullcontext({}) if out_dir is None
               else open_run_dir(out_dir, resume=resume, overwrite=overwrite))
    with session as paths, planner.training_planning():   # "measure" unless chosen
        return _fit_session(
            model, train_x, train_y, test, epochs=epochs, batch_size=batch_size,
            optimizer=optimizer, schedule=schedule, seed=int(seed),
            out_dir=None if out_dir is None else os.fspath(out_dir), paths=paths,
            resume=resume, show=make_progress(progress, stream), log_every=log_every,
            eval_batch_size=eval_batch_size, callback=callback, run_meta=run_meta,
            handle_sigint=handle_sigint)


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
                 run_meta, handle_sigint) -> FitResult:
    """:func:`fit` after argument checks, with the run directory (if any) locked."""
    from ..datasets import iterate_batches

    ckpt_path = paths.get(CHECKPOINT_NAME)
    log = MetricsLog(paths.get(METRICS_NAME))
    n_train = len(train_x)
    batches_per_epoch = math.ceil(n_train / batch_size)
    run = {"batch_size": batch_size, "seed": seed, "n_train": n_train,
           "train_labels_crc32": zlib.crc32(np.ascontiguousarray(train_y).tobytes()),
           "epochs": epochs, "meta": run_meta}
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
        log.write({"kind": "event", "event": "resume", "epoch": state.epoch,
                   "step": state.step, "time": state.elapsed, "run": run})
        show.message(f"resuming from {ckpt_path}: epoch {state.epoch} done, "
                     f"step {state.step}")
    else:
        log.write({"kind": "event", "event": "start", "epoch": 0, "step": 0, "time": 0.0,
                   "run": run, "optimizer": optimizer.get_config(),
                   "schedule": schedule.get_config() if hasattr(schedule, "get_config")
                   else None})
    shuffle_start = generator_state(shuffle_rng)
    loss_fn = SoftmaxCrossEntropy()
    first_conv = _first_conv(model)
    saved_input_grad = first_conv.compute_input_grad if first_conv is not None else None
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
        bad = _model_state_problem(model, optimizer)
        if bad is not None:
            raise diverged(bad, during="checkpoint", step=current.step,
                           epoch=current.epoch + (1 if current.batch_in_epoch else 0))
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
            if first_conv is not None:
                first_conv.compute_input_grad = False  # nobody needs d(loss)/d(images)
            while state.epoch < epochs:
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
                    xb = xb.astype(dtype, copy=False)
                    if schedule is not None:
                        lr = float(schedule(state.epoch + index / batches_per_epoch))
                        optimizer.lr = lr
                    before_step = (layer_rng_states(model), snapshot_buffers(model))
                    phase = "compute"
                    logits = model.forward(xb)
                    loss = loss_fn.forward(logits, yb)
                    if not math.isfinite(loss):
                        raise diverged(f"loss ({loss})")
                    model.backward(loss_fn.backward())
                    grads = model.grads
                    bad = first_non_finite(grads)
                    if bad is not None:
                        raise diverged(f"gradient of {bad}")
                    correct = int(np.count_nonzero(logits.argmax(axis=1) == yb))
                    phase = "update"
                    optimizer.step(grads)
                    bad = first_non_finite(model.params)
                    if bad is not None:
                        raise diverged(f"parameter {bad} after the update")
                    n = len(yb)
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
                    if stop.requested:
                        stop.stopping()
                        raise _Stop
                phase = "eval"
                if test is not None:
                    try:
                        test_loss, test_acc, _ = evaluate(model, *test,
                                                          batch_size=eval_batch_size)
                    except NonFiniteError as exc:
                        raise diverged(f"test logits ({exc})", during="evaluation") from exc
                else:
                    test_loss = test_acc = None
                record = {"kind": "epoch", "epoch": state.epoch + 1, "step": state.step,
                          "train_loss": state.loss_sum / max(state.seen, 1),
                          "train_accuracy": state.correct / max(state.seen, 1),
                          "test_loss": test_loss, "test_accuracy": test_acc, "lr": lr,
                          "epoch_time": time.perf_counter() - epoch_started,
                          "time": elapsed()}
                state, shuffle_start = (Progress(epoch=state.epoch + 1, step=state.step),
                                        generator_state(shuffle_rng))
                phase = "epoch_end"
                log.write(record)
                session_history.append(record)
                show.end_epoch()
                show.message(_epoch_line(record, epochs))
                save(state, shuffle_start)
                phase = "idle"
                if stop.requested:
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
            message = (f"interrupted at epoch {state.epoch + 1}, step {state.step}; "
                       + (f"checkpoint in {where} (resume to continue)" if where
                          else "no checkpoint (no out_dir)"))
            if not consistent:
                message += "; the update in progress was cut short, the last saved state stays"
            stop.handled = True
            raise TrainingInterrupted(message, where, state, stop.signum) from (
                None if isinstance(exc, _Stop) else exc)
        finally:
            show.close()
            if first_conv is not None:
                first_conv.compute_input_grad = saved_input_grad

        history = (read_metrics(log.path, kind="epoch") if log.path is not None
                   else session_history)
        last = history[-1] if history else None
        if last is None or last.get("epoch") != state.epoch:
            last = None
        if test is not None and (last is None or last.get("test_accuracy") is None):
            test_loss, test_acc, _ = evaluate(model, *test, batch_size=eval_batch_size)
        else:
            test_loss = last.get("test_loss") if last else None
            test_acc = last.get("test_accuracy") if last else None
        model_path = paths.get(MODEL_NAME)
        if model_path is not None:
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
        log.write({"kind": "event", "event": "end", "epoch": state.epoch, "step": state.step,
                   "time": elapsed(), "test_accuracy": test_acc})
    return FitResult(
        epochs=state.epoch, step=state.step,
        train_loss=last.get("train_loss") if last else None,
        train_accuracy=last.get("train_accuracy") if last else None,
        test_loss=test_loss, test_accuracy=test_acc, wall_time=elapsed(), history=history,
        out_dir=out_dir, model_path=model_path, checkpoint_path=ckpt_path,
    )


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
    if record["test_accuracy"] is not None:
        text += (f" | test loss {record['test_loss']:.4f} "
                 f"acc {100 * record['test_accuracy']:.2f}%")
    return text + f" | {record['epoch_time']:.1f} s"
