"""Distributed training-step benchmark and the allreduce cost model.

:func:`run_distributed_benchmark` times the steps of :func:`~im2col_net.training.fit`'s
loop (shard, forward, backward, gradient allreduce, update) on fixed random data under
``mpiexec -n K`` (or in one process), and reports step, compute and allreduce time,
bytes and messages per step; given a baseline result it adds the speed-up and the
scaling efficiency. :func:`predict` is the cost model of ``docs/distributed.md``.

Run it as ``mpiexec -n 2 python -m im2col_net.distributed.bench --model lenet5``
(``--local`` without MPI; ``--json FILE`` writes the dict, ``--baseline FILE`` compares
with an earlier one; ``--predict`` prints the cost-model table for every named model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .. import runtime
from ..layers.loss import SoftmaxCrossEntropy
from ..models import MODEL_BUILDERS, build_model
from ..optim import make_optimizer
from .local import LocalCommunicator

__all__ = ["run_distributed_benchmark", "format_report", "compare", "ring_allreduce_seconds",
           "predict", "main"]

# One-way latency of one message on a cluster link (seconds); only matters for tiny models.
LINK_LATENCY = 20e-6


def _threads():
    """BLAS threads per rank, as the runtime sees them (the engine's blocks follow it)."""
    return runtime.blas_thread_count()


def run_distributed_benchmark(model="lenet5", batch_size=128, steps=12, warmup=3,
                              communicator=None, seed=0) -> dict:
    """Time ``steps`` training steps at global batch ``batch_size`` (after ``warmup``).

    Every rank calls it alike. Times are medians over the steps on rank 0 (the ranks
    wait for each other in every allreduce, so their step times agree); ``compute``
    is shard + forward + backward, ``wait`` a one-integer allreduce that waits for the
    slowest rank (load imbalance), ``allreduce`` the gradient allreduce after it (the
    transfer), ``update`` the optimizer step.
    """
    comm = communicator if communicator is not None else LocalCommunicator()
    net = build_model(model, rng=seed)
    optimizer = make_optimizer("adam", net.params, lr=1e-3)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng(seed + 1)
    images = rng.random((batch_size, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, batch_size)
    run = {"batch_size": batch_size, "seed": seed, "n_train": batch_size, "bench": model}
    comm.start(net, optimizer, run, images)
    stats = getattr(comm, "stats", None)
    times = {"step": [], "compute": [], "wait": [], "allreduce": [], "update": []}
    moved = []
    for index in range(warmup + steps):
        t0 = time.perf_counter()
        xb, yb = comm.shard(images, labels)
        logits = net.forward(xb)
        loss = loss_fn.forward(logits, yb)
        net.backward(loss_fn.backward())
        t1 = time.perf_counter()
        comm.any(False)  # waits for the slowest rank, so the allreduce below is transfer
        t1b = time.perf_counter()
        before = dict(stats) if stats else None
        grads, loss, _, _ = comm.reduce(net.grads, loss, 0, len(yb))
        t2 = time.perf_counter()
        optimizer.step(grads)
        t3 = time.perf_counter()
        if index >= warmup:
            times["step"].append(t3 - t0)
            times["compute"].append(t1 - t0)
            times["wait"].append(t1b - t1)
            times["allreduce"].append(t2 - t1b)
            times["update"].append(t3 - t2)
            if before is not None:
                moved.append((stats["bytes"] - before["bytes"],
                              stats["messages"] - before["messages"]))
    medians = {k: float(np.median(v)) for k, v in times.items()}
    param_bytes = int(sum(p.nbytes for p in net.params.values()))
    return {
        "model": model, "ranks": comm.size, "threads_per_rank": _threads(),
        "batch_size": batch_size, "shard": len(comm.shard(images, labels)[1]),
        "parameters": net.parameter_count(), "parameter_bytes": param_bytes,
        "steps": steps, "step_seconds": medians["step"],
        "compute_seconds": medians["compute"], "wait_seconds": medians["wait"],
        "allreduce_seconds": medians["allreduce"],
        "update_seconds": medians["update"],
        "allreduce_bytes_per_step": moved[-1][0] if moved else 0,
        "messages_per_step": moved[-1][1] if moved else 0,
        "images_per_second": batch_size / medians["step"],
        "allreduce_fraction": medians["allreduce"] / medians["step"],
        "allreduce_gbit_per_second": (8e-9 * moved[-1][0] / medians["allreduce"]
                                      if moved and medians["allreduce"] > 0 else None),
    }


def _cores(result):
    try:
        return result["ranks"] * int(result["threads_per_rank"])
    except (TypeError, ValueError):
        return result["ranks"]


def compare(result, baseline) -> dict:
    """Add ``speedup`` (baseline step time / this one, same global batch) and
    ``scaling_efficiency`` (speed-up per core used, relative to the baseline's cores)."""
    if baseline["batch_size"] != result["batch_size"] or baseline["model"] != result["model"]:
        raise ValueError(f"baseline is {baseline['model']} at batch {baseline['batch_size']}, "
                         f"this run {result['model']} at {result['batch_size']}")
    out = dict(result)
    out["speedup"] = baseline["step_seconds"] / result["step_seconds"]
    out["scaling_efficiency"] = out["speedup"] / (_cores(result) / _cores(baseline))
    out["baseline"] = {k: baseline[k] for k in ("ranks", "threads_per_rank", "step_seconds")}
    return out


def format_report(result) -> str:
    """The benchmark result as a few aligned lines."""
    r = result
    lines = [
        f"{r['model']}: {r['parameters']:,} parameters ({r['parameter_bytes'] / 1e6:.2f} MB), "
        f"global batch {r['batch_size']} on {r['ranks']} rank(s) x {r['threads_per_rank']} "
        f"thread(s), shard {r['shard']}",
        f"  step      {1e3 * r['step_seconds']:8.2f} ms   ({r['images_per_second']:.0f} "
        f"images/s)",
        f"  compute   {1e3 * r['compute_seconds']:8.2f} ms   (shard, forward, backward)",
        f"  wait      {1e3 * r['wait_seconds']:8.2f} ms   (for the slowest rank)",
        f"  allreduce {1e3 * r['allreduce_seconds']:8.2f} ms   ({r['allreduce_bytes_per_step']:,} "
        f"bytes in {r['messages_per_step']} message(s) per step, "
        f"{100 * r['allreduce_fraction']:.1f}% of the step)",
        f"  update    {1e3 * r['update_seconds']:8.2f} ms",
    ]
    if "speedup" in r:
        b = r["baseline"]
        lines.append(f"  vs {b['ranks']} rank(s) x {b['threads_per_rank']} thread(s) "
                     f"({1e3 * b['step_seconds']:.2f} ms): speed-up {r['speedup']:.2f}, "
                     f"scaling efficiency {100 * r['scaling_efficiency']:.0f}%")
    return "\n".join(lines)


def ring_allreduce_seconds(nbytes, ranks, bits_per_second, latency=LINK_LATENCY) -> float:
    """Ring allreduce: each rank sends and receives ``2 (K - 1) / K`` of the buffer in
    ``2 (K - 1)`` messages (reduce-scatter then allgather)."""
    if ranks < 2:
        return 0.0
    return (2 * (ranks - 1) / ranks * nbytes * 8 / bits_per_second
            + 2 * (ranks - 1) * latency)


def predict(compute_per_image, update_seconds, nbytes, batch_size, ranks,
            bits_per_second, latency=LINK_LATENCY) -> dict:
    """Step time and efficiency at a fixed global batch on ``ranks`` nodes: compute
    divides over the ranks, the update does not, the allreduce is not overlapped."""
    single = compute_per_image * batch_size + update_seconds
    comm = ring_allreduce_seconds(nbytes, ranks, bits_per_second, latency)
    step = compute_per_image * batch_size / ranks + update_seconds + comm
    return {"step_seconds": step, "allreduce_seconds": comm,
            "efficiency": single / (ranks * step)}


def _measure_compute(model, batch_size=32, steps=3):
    """Seconds of forward + backward per image and of one update, in this process."""
    result = run_distributed_benchmark(model, batch_size, steps=steps, warmup=1)
    return (result["compute_seconds"] / batch_size, result["update_seconds"],
            result["parameter_bytes"])


def prediction_table(batch_size=256, ranks=(2, 4, 8, 16, 32, 64),
                     links=(10e9, 100e9), models=None) -> str:
    """Measure each model's compute in this process and print the cost-model table."""
    rows = [f"global batch {batch_size}; compute per image measured here with "
            f"{_threads()} thread(s); efficiency = T1 / (K TK)",
            f"{'model':15} {'MB':>7} {'ms/img':>7} {'link':>6} "
            + " ".join(f"{'K=' + str(k):>13}" for k in ranks)]
    for model in models or sorted(MODEL_BUILDERS):
        per_image, update, nbytes = _measure_compute(model)
        for link in links:
            cells = []
            for k in ranks:
                p = predict(per_image, update, nbytes, batch_size, k, link)
                cells.append(f"{1e3 * p['step_seconds']:7.1f}ms {100 * p['efficiency']:3.0f}%")
            rows.append(f"{model:15} {nbytes / 1e6:7.2f} {1e3 * per_image:7.2f} "
                        f"{link / 1e9:4.0f}G " + " ".join(f"{c:>13}" for c in cells))
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m im2col_net.distributed.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5", choices=sorted(MODEL_BUILDERS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--local", action="store_true", help="one process, no MPI")
    parser.add_argument("--json", metavar="FILE", help="write the result dict (rank 0)")
    parser.add_argument("--baseline", metavar="FILE", help="an earlier --json to compare")
    parser.add_argument("--predict", action="store_true",
                        help="print the cost-model table for every model and exit")
    args = parser.parse_args(argv)
    if args.predict:
        print(prediction_table())
        return 0
    comm = None
    if not args.local:
        from . import mpi_communicator

        comm = mpi_communicator(announce=False)
    result = run_distributed_benchmark(args.model, args.batch_size, steps=args.steps,
                                       communicator=comm)
    if comm is None or comm.is_writer:
        if args.baseline:
            with open(args.baseline, encoding="utf-8") as handle:
                result = compare(result, json.load(handle))
        print(format_report(result))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
