"""Time to accuracy, behind ``im2col-net bench --time-to-accuracy TARGET``.

Trains the model of plain ``im2col-net train`` with its recipe (model, optimizer, learning
rate, schedule, batch size, seed and data: taken from :mod:`.cli.train_cmd`, so the
benchmark follows the default recipe when it changes) twice: with our engine through
:func:`im2col_net.training.fit`, and with PyTorch on the twin model (the same initial
weights, copied through :mod:`im2col_net.interop`), the same optimizer hyper-parameters,
the same learning rate at every update (our schedule's value, set on torch's
parameter groups) and the same mini-batches in the same order (the permutations fit
draws from the seed, drawn again from the same seed for torch). Both evaluate the test
set every ``eval_every`` epochs and stop at the first evaluation reaching ``target``;
each reports its training time to that point (evaluations excluded, as DAWNBench and
MLPerf rank systems by time to a quality target), the wall time including the
evaluations, and its accuracy curve.
"""

from __future__ import annotations

import argparse
import math
import time
import zlib

import numpy as np

from .. import runtime
from ..datasets import iterate_batches, load_dataset
from ..models import build_model
from ..optim import make_optimizer
from ..training import evaluate, fit
from . import bench, bench_torch
from .cli import train_cmd

__all__ = ["run_time_to_accuracy", "format_tta_report", "recipe", "torch_batches",
           "QUICK"]

# The --quick smoke test: a tiny slice of the data, one epoch.
QUICK = {"limit": 256, "epochs": 1, "batch_size": 32, "eval_every": 0.5}
EVAL_BATCH = 1000


class _Reached(Exception):
    """Raised from fit's callback to stop training once the target is reached."""


def recipe(**overrides) -> dict:
    """The settings of plain ``im2col-net train`` (its DEFAULTS, the optimizer's default
    learning rate resolved as the command does), with ``overrides`` (None: default)."""
    names = dict.fromkeys(train_cmd.DEFAULTS)
    unknown = set(overrides) - set(names)
    if unknown:
        raise ValueError(f"time to accuracy: unknown settings {sorted(unknown)}")
    names.update(overrides)
    return train_cmd._resolve_settings(argparse.Namespace(**names), None)


def _build(settings):
    """Model, optimizer and schedule exactly as ``im2col-net train`` builds them."""
    model = build_model(settings["model"], rng=np.random.default_rng([settings["seed"], 0]),
                        dtype=np.dtype(settings["dtype"]))
    optimizer = make_optimizer(settings["optimizer"], model.params, lr=settings["lr"],
                               **train_cmd.OPTIMIZER_OPTIONS.get(settings["optimizer"], {}))
    schedule = train_cmd.build_schedule(settings["schedule"], optimizer.lr,
                                        settings["epochs"])
    return model, optimizer, schedule


def torch_batches(train, batch_size, seed, epochs):
    """``(epoch, index, images, labels)`` in the order fit trains on: the per-epoch
    permutations drawn from one generator seeded with ``seed``, as fit draws them."""
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        for index, (xb, yb) in enumerate(iterate_batches(*train, batch_size, rng,
                                                         shuffle=True)):
            yield epoch, index, xb, yb


class _Clock:
    """Training time: wall time minus the evaluation pauses."""

    def __init__(self):
        self.start = time.perf_counter()
        self.paused = 0.0

    def wall(self):
        return time.perf_counter() - self.start

    def train(self):
        return self.wall() - self.paused


def _evaluations(steps_per_epoch, eval_every, epochs):
    every = max(1, round(eval_every * steps_per_epoch))
    return every, steps_per_epoch * epochs


def _record(curve, clock, step, steps_per_epoch, loss, accuracy):
    curve.append({"step": step, "epoch": step / steps_per_epoch,
                  "train_time_s": clock.train(), "wall_time_s": clock.wall(),
                  "test_loss": float(loss), "test_accuracy": float(accuracy)})


def _summarise(curve, clock, target, first_loss):
    reached = next((point for point in curve if point["test_accuracy"] >= target), None)
    out = {"reached": reached is not None, "first_loss": first_loss,
           "time_to_target_s": reached["train_time_s"] if reached else None,
           "wall_to_target_s": reached["wall_time_s"] if reached else None,
           "epochs_to_target": reached["epoch"] if reached else None,
           "steps_to_target": reached["step"] if reached else None,
           "best_accuracy": max((p["test_accuracy"] for p in curve), default=None),
           "train_time_s": clock.train(), "eval_time_s": clock.paused,
           "wall_time_s": clock.wall(), "evaluations": len(curve), "curve": curve}
    return out


def _train_ours(model, optimizer, schedule, train, test, s, target, every, total,
                steps_per_epoch):
    curve, first = [], {}
    clock = _Clock()

    def callback(info):
        step = info["step"]
        first.setdefault("loss", float(info["loss"]))
        if step % every and step != total:
            return
        paused = time.perf_counter()
        loss, accuracy, _ = evaluate(model, *test, batch_size=EVAL_BATCH)
        clock.paused += time.perf_counter() - paused
        _record(curve, clock, step, steps_per_epoch, loss, accuracy)
        if accuracy >= target:
            raise _Reached

    try:
        fit(model, train, None, epochs=s["epochs"], batch_size=s["batch_size"],
            optimizer=optimizer, schedule=schedule, seed=s["seed"], progress=False,
            callback=callback, log_every=max(1, total), label_smoothing=s["label_smoothing"])
    except _Reached:
        pass
    return _summarise(curve, clock, target, first.get("loss"))


def _train_torch(torch, net, optimizer, schedule, train, test, s, target, every,
                 total, steps_per_epoch):
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=s["label_smoothing"])
    test_loss_fn = torch.nn.CrossEntropyLoss()     # evaluations: the plain loss, as ours
    test_x = torch.from_numpy(np.ascontiguousarray(test[0], dtype=np.float32))
    test_y = torch.from_numpy(np.asarray(test[1], dtype=np.int64))
    curve, first = [], None
    clock = _Clock()
    step = 0
    net.train()
    for epoch, index, xb, yb in torch_batches(train, s["batch_size"], s["seed"], s["epochs"]):
        lr = float(schedule(epoch + index / steps_per_epoch)) if schedule else None
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(torch.from_numpy(xb.astype(np.float32, copy=False))),
                       torch.from_numpy(yb.astype(np.int64, copy=False)))
        loss.backward()
        optimizer.step()
        step += 1
        if first is None:
            first = float(loss.item())
        if step % every and step != total:
            continue
        paused = time.perf_counter()
        net.eval()
        with torch.inference_mode():
            logits = torch.cat([net(test_x[i:i + EVAL_BATCH])
                                for i in range(0, len(test_x), EVAL_BATCH)])
            test_loss = float(test_loss_fn(logits, test_y))
            accuracy = float((logits.argmax(1) == test_y).double().mean())
        net.train()
        clock.paused += time.perf_counter() - paused
        _record(curve, clock, step, steps_per_epoch, test_loss, accuracy)
        if accuracy >= target:
            break
    return _summarise(curve, clock, target, first)


def run_time_to_accuracy(target: float = 0.99, *, epochs: int | None = None,
                         batch_size: int | None = None, limit: int | None = None,
                         eval_every: float | None = None, threads: int | None = None,
                         include_torch: bool = True, quick: bool = False,
                         data_dir: str | None = None) -> dict:
    """Train both engines to ``target`` test accuracy; a JSON-able dict.

    ``epochs``: the most epochs to train (and the length of the schedule, as for
    ``im2col-net train --epochs``); ``batch_size``, ``limit`` (the first N training and
    test images), ``data_dir``: as for ``im2col-net train``, None for its defaults.
    ``eval_every``: epochs between test evaluations (None: 0.25). ``quick``: :data:`QUICK` for what
    was not given (a smoke test of seconds).
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) \
            or not 0 < target <= 1:
        raise ValueError(f"--time-to-accuracy: the target must be an accuracy in (0, 1], "
                         f"got {target!r}")
    if quick:
        limit = QUICK["limit"] if limit is None else limit
        epochs = QUICK["epochs"] if epochs is None else epochs
        batch_size = QUICK["batch_size"] if batch_size is None else batch_size
        eval_every = QUICK["eval_every"] if eval_every is None else eval_every
    eval_every = 0.25 if eval_every is None else eval_every
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, float)) \
            or not (math.isfinite(eval_every) and eval_every > 0):
        raise ValueError(f"--eval-every: expected a positive number of epochs, got "
                         f"{eval_every!r}")
    s = recipe(epochs=epochs, batch_size=batch_size, limit=limit, data_dir=data_dir,
               threads=threads)
    train = load_dataset(s["dataset"], "train", data_dir=s["data_dir"], limit=s["limit"])
    test = load_dataset(s["dataset"], "test", data_dir=s["data_dir"], limit=s["limit"])
    steps_per_epoch = math.ceil(len(train[0]) / s["batch_size"])
    every, total = _evaluations(steps_per_epoch, eval_every, s["epochs"])
    with bench._blas_threads(threads):
        threads_used = runtime.worker_count() if threads is None else threads
        model, optimizer, schedule = _build(s)
        config = {"mode": "time_to_accuracy", "target": float(target), "recipe": s,
                  "optimizer": optimizer.get_config(),
                  "schedule": schedule.get_config() if hasattr(schedule, "get_config")
                  else repr(schedule),
                  "max_epochs": s["epochs"], "batch_size": s["batch_size"],
                  "limit": s["limit"], "n_train": len(train[0]), "n_test": len(test[0]),
                  "eval_every_epochs": float(eval_every), "eval_every_steps": every,
                  "steps_per_epoch": steps_per_epoch, "threads": threads_used,
                  "quick": quick, "eval_batch_size": EVAL_BATCH,
                  "first_epoch_labels_crc32": _order_digest(train, s)}
        status = {"ours": "ok (im2col_net fit)"}
        twin = None
        if include_torch:
            torch, reason = bench_torch.import_torch()
            if torch is None:
                status["torch"] = reason
            else:
                try:
                    torch.set_num_threads(int(threads_used))
                    net = bench_torch.torch_model_from(model, torch)  # before ours trains
                    twin = (torch, net, bench_torch.torch_optimizer_from(
                        optimizer, net.parameters(), torch))
                    status["torch"] = (f"ok (torch {torch.__version__}, "
                                       f"{torch.get_num_threads()} threads)")
                except ValueError as exc:
                    status["torch"] = f"no twin: {exc}"
        else:
            status["torch"] = "disabled (--no-torch)"
        engines = {"ours": _train_ours(model, optimizer, schedule, train, test, s, target,
                                       every, total, steps_per_epoch)}
        if twin is not None:
            engines["torch"] = _train_torch(*twin, schedule, train, test, s, target, every,
                                            total, steps_per_epoch)
    result = {"config": config, "machine": bench.machine_info(), "status": status,
              "engines": engines}
    both = [engines.get(name, {}).get("time_to_target_s") for name in ("ours", "torch")]
    result["speedup_ours_vs_torch"] = (both[1] / both[0] if None not in both else None)
    return result


def _order_digest(train, s) -> int:
    """CRC-32 of the first epoch's labels in training order (the same for both engines)."""
    order = torch_batches(train, s["batch_size"], s["seed"], 1)
    return zlib.crc32(np.concatenate([yb for *_, yb in order]).tobytes())


def format_tta_report(result: dict) -> str:
    """Human-readable summary of a :func:`run_time_to_accuracy` result."""
    cfg = result["config"]
    s = cfg["recipe"]
    lines = [f"im2col_net time to accuracy: {s['model']} on {cfg['n_train']:,} {s['dataset']} "
             f"training images, target {cfg['target']:.2%} test accuracy on "
             f"{cfg['n_test']:,} test images, at most {cfg['max_epochs']} "
             f"epoch{'s' * (cfg['max_epochs'] != 1)}",
             f"recipe of 'im2col-net train': {cfg['optimizer']['class']} lr "
             f"{cfg['optimizer']['lr']:g}, {s['schedule']} schedule, label smoothing "
             f"{s.get('label_smoothing', 0.0):g}, batch {cfg['batch_size']}, "
             f"seed {s['seed']}; test set evaluated every {cfg['eval_every_steps']} updates "
             f"({cfg['eval_every_epochs']:g} epoch)"]
    lines += bench.format_machine(result["machine"], cfg["threads"])
    lines += ["", "engine    time to target   wall (with evals)   epochs   best acc   "
                  "first loss   status"]
    for name in ("ours", "torch"):
        e = result["engines"].get(name)
        if e is None:
            lines.append(f"  {name:<7} {result['status'].get(name, '')}")
            continue
        if e["reached"]:
            reach = (f"{e['time_to_target_s']:12.1f} s   {e['wall_to_target_s']:14.1f} s   "
                     f"{e['epochs_to_target']:6.2f}")
        else:
            reach = f"{'not reached':>14}   {e['wall_time_s']:14.1f} s   {'-':>6}"
        best = e["best_accuracy"]
        lines.append(f"  {name:<7} {reach}   {best if best is not None else float('nan'):8.2%}"
                     f"   {e['first_loss']:.6f}   {result['status'][name]}")
    if result["speedup_ours_vs_torch"] is not None:
        lines.append(f"  torch time / ours: {result['speedup_ours_vs_torch']:.2f}x")
    lines += ["", "accuracy curve (updates, epoch: test accuracy per engine; training s)"]
    curves = {name: e["curve"] for name, e in result["engines"].items()}
    steps = sorted({p["step"] for c in curves.values() for p in c})
    for step in steps:
        cells = []
        for name, curve in curves.items():
            point = next((p for p in curve if p["step"] == step), None)
            cells.append(f"{name} {point['test_accuracy']:.2%} ({point['train_time_s']:.1f} s)"
                         if point else f"{name} -")
        lines.append(f"  {step:6d}  {step / cfg['steps_per_epoch']:5.2f}  " + "   ".join(cells))
    return "\n".join(lines)
