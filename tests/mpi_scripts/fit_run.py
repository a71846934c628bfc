"""Run fit() in-process on synthetic data, distributed or not; write the final weights.

Used by tests/test_distributed.py under ``mpiexec -n K``. Arguments: JSON with ``out``
(run directory), ``weights`` (npz to write, rank 0), and optional ``model`` ("tiny",
"bn", "dropout"), ``n``, ``batch``, ``epochs``, ``distributed``, ``sync_bn``, ``resume``,
``timeout``, ``fault`` ({"rank": r, "kind": "raise"|"hang"|"exit"|"drift", "step": s}).
"""

import json
import os
import sys
import time

import numpy as np

from im2col_net.layers import (
    BatchNorm2D,
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
)
from im2col_net.optim import make_optimizer, make_schedule
from im2col_net.training import TrainingInterrupted, fit


def data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.random((n, 1, 12, 12)).astype(np.float32) * 0.5
    images[np.arange(n), 0, labels, :] += 0.5
    return images, labels


def build(kind, seed=0):
    rng = np.random.default_rng(seed)
    # No conv bias before batch norm: its true gradient is zero, and Adam would blow the
    # rounding noise of that zero up into full-size steps that differ between runs.
    layers = [Conv2D(1, 4, 3, padding=1, bias=kind != "bn", rng=rng)]
    if kind == "bn":
        layers.append(BatchNorm2D(4))
    layers += [ReLU(), MaxPool2D(2), Flatten()]
    if kind == "dropout":
        layers.append(Dropout(0.3, rng=rng.spawn(1)[0]))
    layers.append(Linear(4 * 6 * 6, 10, rng=rng))
    return Sequential(layers)


def main():
    cfg = json.loads(sys.argv[1])
    comm = None
    rank = 0
    if cfg.get("distributed"):
        from im2col_net.distributed import mpi_communicator

        comm = mpi_communicator(timeout=cfg.get("timeout", 30.0),
                                sync_batchnorm=cfg.get("sync_bn", False))
        rank = comm.rank
    if cfg.get("pidfile"):
        with open(f"{cfg['pidfile']}.{rank}", "w") as handle:
            handle.write(str(os.getpid()))
    train = data(cfg.get("n", 203), 0)
    test = data(61, 1)
    if cfg.get("perturb_rank") == rank and cfg.get("perturb_rank") is not None:
        train[0][0, 0, 0, 0] += 1.0  # this rank was given a different data file
    model = build(cfg.get("model", "tiny"))
    epochs = cfg.get("epochs", 2)
    optimizer = make_optimizer("adam", model.params, lr=3e-3)
    schedule = make_schedule("cosine", 3e-3, epochs)
    fault = cfg.get("fault")

    def callback(info):
        if fault and fault["rank"] == rank and info["step"] == fault["step"]:
            if fault["kind"] == "raise":
                raise RuntimeError(f"injected failure at step {info['step']}")
            if fault["kind"] == "hang":
                time.sleep(3600)
            if fault["kind"] == "exit":
                os._exit(9)
            if fault["kind"] == "drift":
                next(iter(model.params.values())).flat[0] += 1e-3
        if cfg.get("slow"):
            time.sleep(cfg["slow"])

    try:
        fit(model, train, test, epochs=epochs, batch_size=cfg.get("batch", 32),
            optimizer=optimizer, schedule=schedule, seed=7, out_dir=cfg["out"],
            resume=cfg.get("resume", False), progress=False, callback=callback,
            communicator=comm)
    except TrainingInterrupted as exc:
        print(f"rank {rank}: {exc}", flush=True)
        sys.exit(130)
    if rank == 0 and cfg.get("weights"):
        np.savez(cfg["weights"], **{k: v for k, v in model.named_parameters()},
                 **{"buffer/" + k: v for k, v in model.named_buffers()})


if __name__ == "__main__":
    main()
