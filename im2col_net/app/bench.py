"""Training-speed benchmark of the default ``convnet`` model, side by side with PyTorch.

:func:`run_benchmark` measures, in one run and on fixed random data (float32):

1. the training step (forward, softmax cross-entropy, backward, Adam) in images per
   second, median of ``repeats`` after ``warmup`` steps; and the same step row by row
   (:func:`measure_step_breakdown`: every layer's forward and backward, the loss and the
   update timed in place inside real steps, plus the "rest", so that the rows add up to
   the step), each GEMM-bound row as a fraction of the GEMM roof and each memory-bound
   row as a multiple of the memory roof (:func:`measure_memory_roof`: a streaming copy
   of the same number of bytes, measured in the same run);
2. forward and backward time of every conv and pool layer, with the conv layers'
   GFLOP/s as a fraction of the machine's float32 GEMM rate (the "roof": the best of a
   few large square matmuls timed at the start and again at the end of the same run, so
   that a core taken by another process during one of them does not halve it);
3. each conv layer's plan (the algorithm the planner chose, in ``measure`` mode unless
   ``IM2COL_NET_PLAN`` says otherwise, with the candidates' times), every applicable
   algorithm on the model's conv shapes, and the speed-up of the fast path over the
   reference loops on a small case;
4. the identical model and step in PyTorch when it is importable (same initial weights,
   same data, same thread count), and the ratio ours / torch;
5. the peak resident memory of a process that runs training steps (a fresh
   subprocess, so the number is not inflated by torch or by the benchmark itself);
6. with ``batch_sizes``, the training step of both engines again at each of those
   batch sizes (:func:`measure_batch_sweep`), one row and one ratio each.

Timed steps of both engines are interleaved so that load from other processes hits
both alike, and each timed step follows two untimed ones of the same engine
(:func:`time_interleaved`): PyTorch's OpenMP threads keep spinning for a while after its
step, and a step timed right after it would pay for that. Compare ratios, not absolute
numbers, across runs. The first conv layer
skips its input gradient (``compute_input_grad=False``), as PyTorch skips it for an
input that does not require a gradient.

:func:`format_report` renders the result as text tables; the ``im2col-net bench``
command prints it and can write the dict as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np

from .. import runtime
from ..functional import basic as F
from ..functional import conv_algorithms, planner
from ..functional.conv import conv2d_backward, conv2d_forward, conv_problem
from ..layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential
from ..layers.loss import SoftmaxCrossEntropy
from ..models import convnet
from ..optim import make_optimizer
from . import bench_torch

__all__ = ["run_benchmark", "format_report", "ENV_VARS", "machine_info", "step_units",
           "measure_step_breakdown", "measure_memory_roof", "format_machine"]

# Environment variables that change which BLAS kernel runs or how many threads it uses.
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS")

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
LEARNING_RATE = 1e-3


def run_benchmark(batch_size: int = 200, repeats: int = 7, warmup: int = 2,
                  threads: int | None = None, include_torch: bool = True,
                  quick: bool = False, measure_memory: bool = True, seed: int = 0,
                  batch_sizes=()) -> dict:
    """Run every measurement; returns a JSON-serialisable dict (see the module docstring).

    ``threads``: BLAS threads for our engine and ``torch.set_num_threads`` for PyTorch;
    None keeps the BLAS thread count in effect. Setting it needs ``threadpoolctl``.
    ``quick``: one warm-up step, two repeats and smaller auxiliary cases (for smoke tests).
    """
    for name, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1),
                             ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"run_benchmark: {name} must be an int >= {low}, got {value!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"run_benchmark: threads must be a positive int or None, got {threads!r}")
    batch_sizes = list(batch_sizes)
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batch_sizes):
        raise ValueError(f"run_benchmark: batch_sizes must be positive ints, got {batch_sizes!r}")
    if quick:
        repeats, warmup = min(repeats, 2), min(warmup, 1)
    with _blas_threads(threads), planner.training_planning():
        threads_used = runtime.worker_count() if threads is None else threads
        result = {
            "config": dict(model="convnet", dtype="float32", optimizer="adam",
                           lr=LEARNING_RATE, batch_size=batch_size, repeats=repeats,
                           warmup=warmup, threads=threads_used, quick=quick, seed=seed),
            "machine": machine_info(),
        }
        roof_size, roof_repeats = (512, 2) if quick else (2048, 4)
        first_roof = measure_gemm_roof(roof_size, roof_repeats)
        # BLAS's own threads spin for a while after a multi-threaded call; let them
        # settle so they do not slow the first timed steps of either engine.
        time.sleep(0.3)
        result["train_step"] = measure_train_step(batch_size, repeats, warmup, threads_used,
                                                  include_torch, seed)
        result["breakdown"] = measure_step_breakdown(batch_size, repeats, warmup, seed)
        result["layers"] = measure_layers(batch_size, repeats, warmup, seed)
        result["plans"] = layer_plans(batch_size, seed)
        result["strategies"] = measure_strategies(batch_size, repeats, warmup, seed)
        result["reference"] = measure_reference_speedup(repeats, seed)
        result["batch_sweep"] = measure_batch_sweep(batch_sizes, repeats, warmup,
                                                    threads_used, include_torch, seed)
        last_roof = measure_gemm_roof(roof_size, roof_repeats)
        result["gemm_roof"] = max(first_roof, last_roof, key=lambda r: r["gflops"])
        result["gemm_roof"]["runs_gflops"] = [first_roof["gflops"], last_roof["gflops"]]
        for row in result["layers"] + result["strategies"]:
            _add_roof_fractions(row, result["gemm_roof"]["gflops"])
        result["memory_roof"] = measure_memory_roof(result["breakdown"]["rows"], 5)
        add_breakdown_roofs(result["breakdown"], result["gemm_roof"], result["memory_roof"])
    result["memory"] = (measure_step_memory(batch_size, threads, seed) if measure_memory
                        else {"status": "skipped"})
    return result


# -- environment ------------------------------------------------------------------------
@contextmanager
def _blas_threads(threads):
    if threads is None:
        yield
        return
    try:
        import threadpoolctl
    except ImportError as exc:
        raise ValueError(
            "run_benchmark: threads= needs threadpoolctl (pip install threadpoolctl); "
            "or set OPENBLAS_NUM_THREADS before starting Python"
        ) from exc
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        yield


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo ({} elsewhere)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_details() -> dict:
    """Vendor, family, model and core count from /proc/cpuinfo (None where unknown):
    a name like "AMD EPYC" alone does not say which generation runs."""
    info = _cpuinfo()

    def number(key):
        try:
            return int(info[key])
        except (KeyError, ValueError):
            return None

    flags = info.get("flags", "").split()
    return {"vendor": info.get("vendor_id"), "family": number("cpu family"),
            "model": number("model"), "cores_per_socket": number("cpu cores"),
            "avx512f": "avx512f" in flags if flags else None,
            "avx2": "avx2" in flags if flags else None}


def machine_info() -> dict:
    """CPU, versions, BLAS libraries (via threadpoolctl when installed) and env vars."""
    import scipy

    blas = runtime.blas_info()
    return {
        "cpu": _cpu_model(),
        "cpu_details": _cpu_details(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "threadpoolctl": bool(blas),
        "blas": [{key: lib.get(key) for key in ("internal_api", "version", "architecture",
                                                "threading_layer", "num_threads", "filepath")}
                 for lib in blas],
        "env": {name: os.environ.get(name) for name in ENV_VARS},
        # What the plan cache file is keyed by, and the planner's mode for this run.
        "machine_id": runtime.machine_identity()["id"],
        "plan_mode": planner.current_mode(),
    }


# -- timing helpers -----------------------------------------------------------------------
# Untimed calls of an engine before each of its timed ones (time_interleaved): after a
# torch step, our second step is still slowed, the third is at its steady time
# (docs/performance.md, "the benchmark").
SETTLE_CALLS = 2


def _time(fn, repeats, warmup) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times) -> dict:
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "times_s": [float(t) for t in times]}


def measure_gemm_roof(size: int = 2048, repeats: int = 4) -> dict:
    """Best float32 GFLOP/s of ``(size, size) @ (size, size)`` with the current BLAS threads."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    times = _time(lambda: np.matmul(a, b, out=out), repeats, 1)
    flops = 2.0 * size ** 3
    return {"size": size, "gflops": flops / min(times) / 1e9,
            "gflops_median": flops / float(np.median(times)) / 1e9, **_summary(times)}


# -- the training step -------------------------------------------------------------------
def make_batch(batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size,) + INPUT_SHAPE, dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size)
    return x, labels


def make_model(seed: int = 0):
    """The default model, first conv layer without input gradient."""
    model = convnet(rng=seed, dtype=np.float32)
    model.layers[0].compute_input_grad = False
    return model


def make_step(model, x, labels):
    """A closure running one training step; returns the loss."""
    loss_fn = SoftmaxCrossEntropy()
    optimizer = make_optimizer("adam", model.params, lr=LEARNING_RATE)

    def step():
        loss = loss_fn.forward(model.forward(x), labels)
        model.backward(loss_fn.backward())
        optimizer.step(model.grads)
        return loss

    return step


def time_interleaved(runs: dict, repeats: int, settle: int = SETTLE_CALLS) -> dict:
    """``{name: [seconds] * repeats}`` for the callables ``runs``, taken in turns so that
    load from other processes hits every engine alike. Each timed call follows ``settle``
    untimed calls of the same engine: an engine whose threads spin-wait after a call
    (PyTorch's OpenMP threads, onnxruntime's pool) would otherwise take cores from the
    next engine's timed call."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            for _ in range(settle):
                run()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def measure_train_step(batch_size, repeats, warmup, threads, include_torch, seed) -> dict:
    x, labels = make_batch(batch_size, seed)
    model = make_model(seed)
    torch_step, torch_status = None, "disabled (--no-torch)"
    if include_torch:
        torch_step, torch_status = bench_torch.make_torch_step(model, x, labels, threads,
                                                               LEARNING_RATE)
    ours = make_step(model, x, labels)
    first_loss = {"ours": float(ours())}
    if torch_step is not None:
        first_loss["torch"] = float(torch_step())
    steps = {"ours": ours} if torch_step is None else {"ours": ours, "torch": torch_step}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = time_interleaved(steps, repeats)
    out = {"first_loss": first_loss, "torch_status": torch_status}
    for name, ts in times.items():
        out[name] = dict(_summary(ts), images_per_s=batch_size / float(np.median(ts)))
    out["ratio"] = (out["ours"]["images_per_s"] / out["torch"]["images_per_s"]
                    if "torch" in out else None)
    return out


def measure_batch_sweep(batch_sizes, repeats, warmup, threads, include_torch, seed) -> list:
    """The training step of both engines at each batch size (a fresh model and batch for
    each, timed interleaved like :func:`measure_train_step`): one row per batch size."""
    rows = []
    for batch_size in batch_sizes:
        step = measure_train_step(batch_size, repeats, warmup, threads, include_torch, seed)
        row = {"batch_size": batch_size, "ratio": step["ratio"], "ours": step["ours"]}
        if "torch" in step:
            row["torch"] = step["torch"]
        rows.append(row)
    return rows


# -- the whole step, row by row -----------------------------------------------------------
def step_units(model) -> list[tuple[tuple[int, ...], object]]:
    """The model's layers as the units a real step runs: ``(indices, unit)`` with a ReLU
    directly followed by a MaxPool2D grouped in a two-layer Sequential (which fuses the
    pair exactly when the model's own Sequential would); the units share the model's
    layer objects, so running them is running the model."""
    layers, units, i = model.layers, [], 0
    while i < len(layers):
        if i + 1 < len(layers) and type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2D:
            units.append(((i, i + 1), Sequential(layers[i], layers[i + 1])))
            i += 2
        else:
            units.append(((i,), layers[i]))
            i += 1
    return units


def _unit_name(model, indices) -> str:
    names = []
    for index in indices:
        layer = model.layers[index]
        if isinstance(layer, (Conv2D, MaxPool2D)):
            names.append(describe(layer))
        elif isinstance(layer, Linear):
            names.append(f"linear {layer.in_features}->{layer.out_features}")
        elif isinstance(layer, Flatten):
            names.append("flatten (NHWC->NCHW copy)")
        else:
            names.append(type(layer).__name__.lower())
    return " + ".join(names)


def _unit_kind(model, indices) -> str:
    """"gemm" for conv and Linear (bounded by the GEMM roof), else "memory"."""
    layer = model.layers[indices[0]]
    return "gemm" if len(indices) == 1 and isinstance(layer, (Conv2D, Linear)) else "memory"


def _unit_flops(layer, x_shape, y_shape) -> tuple[float, float]:
    if isinstance(layer, Conv2D):
        return conv_flops(layer, x_shape, y_shape)
    forward = 2.0 * x_shape[0] * layer.in_features * layer.out_features
    return forward, 2 * forward  # weight gradient and input gradient


def _nbytes(*arrays) -> int:
    return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))


def _moved(x, y) -> int:
    """Bytes read and written by a unit mapping ``x`` to ``y``: 0 when ``y`` is a view of
    ``x`` (a free reshape moves nothing, and has no memory roof)."""
    if isinstance(y, np.ndarray) and np.may_share_memory(x, y):
        return 0
    return _nbytes(x, y)


def _optimizer_bytes(model, optimizer) -> int:
    """Bytes an element-wise update moves at least: parameters, gradients and state read,
    parameters and state written."""
    params = _nbytes(*model.params.values())
    grads = _nbytes(*model.grads.values())
    state = _nbytes(*(v for v in optimizer.state_dict().values()
                      if isinstance(v, np.ndarray) and v.ndim > 0))
    return 2 * params + grads + 2 * state


def measure_step_breakdown(batch_size, repeats, warmup, seed) -> dict:
    """The training step of :func:`make_step`, unit by unit, in place: each unit's
    forward and backward, the loss and the optimizer update timed inside real steps
    (mean over ``repeats`` after ``warmup``); ``rest`` is the step minus their sum
    (Python glue, the timers, the gradient dict), so the rows add up to the step."""
    x, labels = make_batch(batch_size, seed)
    model = make_model(seed)
    model.train()
    units = step_units(model)
    loss_fn = SoftmaxCrossEntropy()
    optimizer = make_optimizer("adam", model.params, lr=LEARNING_RATE)
    clock = time.perf_counter
    shapes = {}

    def step():
        times = np.zeros((len(units) + 2, 2))  # units, loss, update; forward, backward
        start = clock()
        h = x
        for k, (_, unit) in enumerate(units):
            t0 = clock()
            y = unit.forward(h)
            times[k, 0] = clock() - t0
            shapes.setdefault(("f", k), (h.shape, y.shape, _moved(h, y)))
            h = y
        t0 = clock()
        loss_fn.forward(h, labels)
        dy = loss_fn.backward()
        times[-2, 0] = clock() - t0
        for k in range(len(units) - 1, -1, -1):
            t0 = clock()
            dx = units[k][1].backward(dy)
            times[k, 1] = clock() - t0
            shapes.setdefault(("b", k), _moved(dy, dx))
            dy = dx
        t0 = clock()
        optimizer.step(model.grads)
        times[-1, 0] = clock() - t0
        return clock() - start, times

    for _ in range(warmup):
        step()
    runs = [step() for _ in range(repeats)]
    totals = np.array([total for total, _ in runs])
    parts = np.mean([times for _, times in runs], axis=0)
    rows = []
    for k, (indices, unit) in enumerate(units):
        x_shape, y_shape, f_bytes = shapes[("f", k)]
        row = {"name": _unit_name(model, indices), "layers": list(indices),
               "kind": _unit_kind(model, indices),
               "times_s": {"forward": float(parts[k, 0]), "backward": float(parts[k, 1])},
               "bytes": {"forward": f_bytes, "backward": shapes[("b", k)]}}
        if row["kind"] == "gemm":
            flops = _unit_flops(unit, x_shape, y_shape)
            row["gflop"] = {"forward": flops[0] / 1e9, "backward": flops[1] / 1e9}
        rows.append(row)
    rows.append({"name": "softmax cross-entropy (loss + gradient)", "layers": [],
                 "kind": "other", "times_s": {"forward": float(parts[-2, 0])}})
    rows.append({"name": "optimizer update (Adam)", "layers": [], "kind": "memory",
                 "times_s": {"update": float(parts[-1, 0])},
                 "bytes": {"update": _optimizer_bytes(model, optimizer)}})
    step_s = float(totals.mean())
    for row in rows:
        row["seconds"] = float(sum(row["times_s"].values()))
    rest = step_s - sum(row["seconds"] for row in rows)
    rows.append({"name": "rest (Python glue, timers, grads dict)", "layers": [],
                 "kind": "other", "times_s": {"rest": rest}, "seconds": rest})
    for row in rows:
        row["fraction_of_step"] = row["seconds"] / step_s
    return {"method": "timers around each unit inside real training steps, mean of the "
                      "repeats; rest = step - sum of the rows",
            "repeats": repeats, "warmup": warmup, "step_s": step_s,
            "step_median_s": float(np.median(totals)), "rows": rows}


def _copy_seconds(nbytes: int, repeats: int) -> float:
    """Best time of a streaming copy moving ``nbytes`` (half read, half written) on the
    engine's threads (``runtime.for_row_blocks``, one ``np.copyto`` per block)."""
    row = 4096  # float32 numbers per row
    rows = max(1, -(-nbytes // (2 * 4 * row)))
    src = np.ones((rows, row), dtype=np.float32)
    dst = np.empty_like(src)

    def copy():
        runtime.for_row_blocks(rows, row * 4,
                               lambda a, b, _w: np.copyto(dst[a:b], src[a:b]))

    return min(_time(copy, repeats, 1))


def measure_memory_roof(rows, repeats: int = 5) -> dict:
    """The memory roof of every memory-bound part of the breakdown: the best time of a
    streaming copy of the same number of bytes, measured in this run."""
    sizes = sorted({nbytes for row in rows if row["kind"] == "memory"
                    for nbytes in row.get("bytes", {}).values() if nbytes})
    measured = []
    for nbytes in sizes:
        seconds = _copy_seconds(nbytes, repeats)
        measured.append({"bytes": nbytes, "seconds": seconds,
                         "gbytes_per_s": nbytes / seconds / 1e9})
    best = max((m["gbytes_per_s"] for m in measured), default=None)
    return {"method": "np.copyto of half the bytes into a second array (read + write = "
                      f"the row's bytes) on the engine's threads, best of {repeats}",
            "repeats": repeats, "gbytes_per_s": best, "sizes": measured}


def add_breakdown_roofs(breakdown, gemm_roof, memory_roof) -> None:
    """Each GEMM-bound part's fraction of the GEMM roof and each memory-bound part's
    time as a multiple of the copy of its bytes (1.0 = as fast as a plain copy)."""
    copies = {m["bytes"]: m["seconds"] for m in memory_roof["sizes"]}
    for row in breakdown["rows"]:
        roof = {}
        for part, seconds in row["times_s"].items():
            if row["kind"] == "gemm" and seconds > 0:
                gflops = row["gflop"][part] / seconds
                roof[part] = {"kind": "gemm", "gflops": gflops,
                              "fraction": gflops / gemm_roof["gflops"]}
            elif row["kind"] == "memory" and row["bytes"].get(part) in copies:
                copy = copies[row["bytes"][part]]
                roof[part] = {"kind": "memory", "copy_s": copy, "multiple": seconds / copy,
                              "gbytes_per_s": row["bytes"][part] / seconds / 1e9}
        row["roof"] = roof


# -- per layer -----------------------------------------------------------------------------
def conv_flops(layer: Conv2D, x_shape, y_shape) -> tuple[float, float]:
    """Forward and backward FLOPs (multiply + add) of a convolution."""
    n, _, ho, wo = y_shape
    cout, cg, kh, kw = layer.params["weight"].shape
    forward = 2.0 * n * ho * wo * cout * cg * kh * kw
    return forward, forward * (2 if layer.compute_input_grad else 1)


def measure_layers(batch_size, repeats, warmup, seed) -> list[dict]:
    """Forward/backward times of the model's conv and pool layers on real activations."""
    x, _ = make_batch(batch_size, seed)
    model = make_model(seed)
    rows = []
    rng = np.random.default_rng(seed + 1)
    for index, layer in enumerate(model.layers):
        y = layer.forward(x)
        if isinstance(layer, (Conv2D, MaxPool2D)):
            # dy in NHWC memory, as the layer above would hand it back.
            dy = np.ascontiguousarray(
                rng.standard_normal(y.shape, dtype=np.float32).transpose(0, 2, 3, 1)
            ).transpose(0, 3, 1, 2)
            fwd = _time(lambda layer=layer, x=x: layer.forward(x), repeats, warmup)
            layer.forward(x)
            bwd = _time(lambda layer=layer, dy=dy: layer.backward(dy), repeats, warmup)
            row = {"index": index, "layer": describe(layer), "kind": type(layer).__name__,
                   "input_shape": list(x.shape), "output_shape": list(y.shape),
                   "forward": _summary(fwd), "backward": _summary(bwd)}
            if isinstance(layer, Conv2D):
                row["compute_input_grad"] = layer.compute_input_grad
                row["strategy"] = layer._cache.strategy  # what "auto" resolved to
                row.update(_rates(*conv_flops(layer, x.shape, y.shape), fwd, bwd))
            rows.append(row)
        x = y
    return rows


def describe(layer) -> str:
    """Short name of a conv, pool or Linear layer for the table, e.g. ``conv 1->32 5x5
    pad 2``."""
    if isinstance(layer, Linear):
        return f"linear {layer.in_features}->{layer.out_features}"
    g = layer.geometry
    kernel = f"{g.kernel[0]}x{g.kernel[1]}"
    if isinstance(layer, Conv2D):
        pad = g.padding[0] if len(set(g.padding)) == 1 else list(g.padding)
        return f"conv {layer.in_channels}->{layer.out_channels} {kernel} pad {pad}"
    return f"{type(layer).__name__.replace('2D', '').lower()} {kernel}"


def _rates(flops_fwd, flops_bwd, fwd, bwd) -> dict:
    """GFLOP/s from the median times, and (``*_best``) from the fastest repeat: the
    median is the headline; the best shows what the code does when no other process
    takes a core or memory bandwidth during the call (this machine is shared)."""
    rates = {"gflop_forward": flops_fwd / 1e9, "gflop_backward": flops_bwd / 1e9}
    for suffix, stat in (("", np.median), ("_best", np.min)):
        t_f, t_b = float(stat(fwd)), float(stat(bwd))
        rates[f"gflops_forward{suffix}"] = flops_fwd / t_f / 1e9
        rates[f"gflops_backward{suffix}"] = flops_bwd / t_b / 1e9
        rates[f"gflops_total{suffix}"] = (flops_fwd + flops_bwd) / (t_f + t_b) / 1e9
    return rates


def _add_roof_fractions(row: dict, roof: float) -> None:
    """A conv row's GFLOP/s as fractions of the roof (pool rows have no rates)."""
    for part in ("forward", "backward", "total"):
        for suffix in ("", "_best"):
            if f"gflops_{part}{suffix}" in row:
                row[f"roof_fraction_{part}{suffix}"] = row[f"gflops_{part}{suffix}"] / roof


def layer_plans(batch_size, seed) -> list[dict]:
    """Each conv and Linear layer's plan for its input shape (what the timed steps ran,
    from the planner's per-process cache), with the candidates' times when measured
    (a conv's forward + backward, a Linear's forward)."""
    model = make_model(seed)
    shape = (batch_size,) + INPUT_SHAPE
    rows = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            plan = layer.plan(shape)
            rows.append({"index": index, "layer": describe(layer), "input_shape": list(shape),
                         "compute_input_grad": layer.compute_input_grad, **plan.to_dict()})
        elif isinstance(layer, Linear):
            plan = F.linear_plan(shape[0], layer.params["weight"], layer.params.get("bias"))
            rows.append({"index": index, "layer": describe(layer), "input_shape": list(shape),
                         "compute_input_grad": True, **plan.to_dict()})
        shape = layer.output_shape(shape)
    return rows


def measure_strategies(batch_size, repeats, warmup, seed) -> list[dict]:
    """Every applicable algorithm on each conv layer's shape (forward + the backward the
    model runs); ``auto_choice`` marks the one the planner picks (``strategy="auto"``)."""
    model = make_model(seed)
    x, _ = make_batch(batch_size, seed)
    rows = []
    rng = np.random.default_rng(seed + 2)
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Conv2D):
            w, b = layer.params["weight"], layer.params.get("bias")
            auto = layer.plan(x.shape).algorithm
            problem = conv_problem(x.shape, w.shape, layer.geometry, groups=layer.groups,
                                   dtype=x.dtype, has_bias=b is not None)
            for strategy in planner.ALGORITHM_NAMES:
                if conv_algorithms.supported(strategy, problem):
                    continue
                kwargs = dict(stride=tuple(layer.geometry.stride),
                              padding=tuple(layer.geometry.padding), strategy=strategy)
                y, cache = conv2d_forward(x, w, b, **kwargs)
                dy = rng.standard_normal(y.shape, dtype=np.float32)
                fwd = _time(lambda x=x, w=w, b=b, kw=kwargs: conv2d_forward(x, w, b, **kw),
                            repeats, warmup)
                need_dx = layer.compute_input_grad
                bwd = _time(lambda dy=dy, c=cache, d=need_dx:
                            conv2d_backward(dy, c, need_input_grad=d), repeats, warmup)
                row = {"index": index, "strategy": strategy, "auto_choice": strategy == auto,
                       "input_shape": list(x.shape),
                       "weight_shape": list(w.shape), "compute_input_grad": need_dx,
                       "forward": _summary(fwd), "backward": _summary(bwd)}
                row.update(_rates(*conv_flops(layer, x.shape, y.shape), fwd, bwd))
                rows.append(row)
        x = layer.forward(x)
    return rows


def measure_reference_speedup(repeats, seed) -> dict:
    """Forward + backward of a small conv: reference loops vs. the fast path."""
    from .. import reference

    rng = np.random.default_rng(seed + 3)
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    dy = rng.standard_normal((2, 4, 8, 8), dtype=np.float32)

    def ours():
        _, cache = conv2d_forward(x, w, b, stride=1, padding=1)
        conv2d_backward(dy, cache)

    def loops():
        reference.conv2d_forward(x, w, b, stride=1, padding=1)
        reference.conv2d_backward(x, w, dy, stride=1, padding=1)

    t_ref = _time(loops, min(repeats, 3), 0)
    t_ours = _time(ours, repeats, 1)
    return {"case": {"x": list(x.shape), "weight": list(w.shape), "padding": 1},
            "reference": _summary(t_ref), "ours": _summary(t_ours),
            "speedup": float(np.median(t_ref)) / float(np.median(t_ours))}


# -- memory --------------------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM on Linux, else getrusage)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _memory_probe(batch_size: int, threads, seed: int, steps: int = 3) -> dict:
    """Run in the subprocess: peak RSS after imports and after ``steps`` training steps."""
    with _blas_threads(threads) if threads else nullcontext():
        x, labels = make_batch(batch_size, seed)
        model = make_model(seed)
        before = peak_rss_bytes()
        step = make_step(model, x, labels)
        for _ in range(steps):
            step()
    return {"baseline_rss_bytes": before, "peak_rss_bytes": peak_rss_bytes()}


def measure_step_memory(batch_size, threads, seed) -> dict:
    """Peak RSS of training steps, measured in a fresh Python process."""
    code = ("import json, sys; from im2col_net.app.bench import _memory_probe; "
            "print(json.dumps(_memory_probe(*json.loads(sys.argv[1]))))")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps([batch_size, threads, seed])],
                              capture_output=True, text=True, env=env, timeout=600, check=True)
        probe = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        return {"status": f"failed: {exc}", "method": "subprocess"}
    return dict(probe, status="ok", method="subprocess, VmHWM", steps=3)


# -- report ----------------------------------------------------------------------------------
def _ms(summary) -> str:
    return f"{summary['median_s'] * 1e3:9.2f}"


def blas_owner(filepath) -> str:
    """Which package loaded a BLAS library, from its file's path (wheels keep their
    bundled libraries in ``<package>.libs``): "NumPy", "SciPy", "PyTorch" or the file."""
    text = os.path.normcase(str(filepath or ""))
    parts = text.replace("\\", "/").split("/")
    for package, name in (("numpy", "NumPy"), ("scipy", "SciPy"), ("torch", "PyTorch")):
        if any(part in (package, f"{package}.libs") for part in parts):
            return name
    return os.path.basename(text) or "an unknown library"


def format_machine(mach: dict, threads) -> list[str]:
    """The report's lines naming the machine: CPU, cores, BLAS libraries and kernels."""
    d = mach.get("cpu_details") or {}
    ident = ", ".join(f"{key} {d[key]}" for key in ("family", "model") if d.get(key) is not None)
    isa = "AVX-512" if d.get("avx512f") else ("AVX2" if d.get("avx2") else "")
    extra = "; ".join(part for part in (ident, isa) if part)
    lines = [f"machine: {mach['cpu']}" + (f" ({extra})" if extra else "")
             + f", {mach['logical_cpus']} logical CPUs"
             + (f", {d['cores_per_socket']} cores per socket" if d.get("cores_per_socket")
                else "") + f"; numpy {mach['numpy']}, threads {threads}"]
    for lib in mach["blas"]:
        lines.append(f"BLAS of {blas_owner(lib.get('filepath'))}: {lib['internal_api']} "
                     f"{lib['version']} kernel "
                     f"{lib['architecture']} ({lib['threading_layer']}, "
                     f"{lib['num_threads']} threads)")
    if not mach["blas"]:
        lines.append("BLAS: unknown (install threadpoolctl to report it)")
    env = ", ".join(f"{k}={v}" for k, v in mach["env"].items() if v is not None)
    lines.append(f"env: {env or '(no BLAS/OpenMP variables set)'}")
    return lines


def format_breakdown(breakdown: dict, memory_roof: dict) -> list[str]:
    """The step's rows: time per part, share of the step, and the roof of each part."""
    lines = [f"the step, row by row (in place inside {breakdown['repeats']} real steps, mean; "
             f"rows + rest = step)",
             "  row                                       fwd ms    bwd ms  total ms  "
             "of step  roof fwd / bwd (GEMM: % of roof; memory: x the copy of its bytes)"]

    def roof_text(row, part):
        roof = row.get("roof", {}).get(part)
        if roof is None:
            return "-"
        if roof["kind"] == "gemm":
            return f"{roof['fraction']:.0%} GEMM"
        return f"{roof['multiple']:.1f}x copy"

    for row in breakdown["rows"]:
        t = row["times_s"]
        first = t.get("forward", t.get("update", t.get("rest")))
        second = t.get("backward")
        parts = [p for p in ("forward", "update", "backward") if p in row.get("roof", {})]
        roofs = " / ".join(roof_text(row, p) for p in parts) or "-"
        lines.append(f"  {row['name'][:40]:<40} {first * 1e3:9.2f} "
                     + (f"{second * 1e3:9.2f}" if second is not None else f"{'':9}")
                     + f" {row['seconds'] * 1e3:9.2f}  {row['fraction_of_step']:6.1%}  {roofs}")
    lines.append(f"  {'step (sum of the rows)':<40} {'':9} {'':9} "
                 f"{breakdown['step_s'] * 1e3:9.2f}  100.0%")
    if memory_roof.get("gbytes_per_s"):
        lines.append(f"memory roof: streaming copy {memory_roof['gbytes_per_s']:.1f} GB/s "
                     f"at best ({memory_roof['method']})")
    return lines


def format_report(result: dict) -> str:
    """Human-readable tables of a :func:`run_benchmark` result."""
    cfg, mach, step = result["config"], result["machine"], result["train_step"]
    lines = [f"im2col_net benchmark: convnet, batch {cfg['batch_size']}, float32, Adam; "
             f"median of {cfg['repeats']} after {cfg['warmup']} warm-up"]
    lines += format_machine(mach, cfg["threads"])
    roof = result["gemm_roof"]
    runs = ", ".join(f"{g:.1f}" for g in roof.get("runs_gflops", []))
    lines += [f"GEMM roof: {roof['gflops']:.1f} GFLOP/s (float32 {roof['size']}^3 matmul, best"
              + (f"; start, end: {runs})" if runs else ")"),
              "", "training step          ms/step    images/s"]
    for name in ("ours", "torch"):
        if name in step:
            s = step[name]
            lines.append(f"  {name:<18} {_ms(s)}  {s['images_per_s']:10.1f}")
    if step["ratio"] is not None:
        lines.append(f"  ratio ours/torch: {step['ratio']:.2f}x  "
                     f"(first-step loss ours {step['first_loss']['ours']:.6f}, "
                     f"torch {step['first_loss']['torch']:.6f})")
    else:
        lines.append(f"  torch: {step['torch_status']}")
    lines += [""] + format_breakdown(result["breakdown"], result["memory_roof"])
    lines += ["", "layer (alone, on its real input)        fwd ms    bwd ms  GFLOP/s fwd/bwd"
              "   roof fwd/bwd  (best repeat)"]
    for row in result["layers"]:
        text = f"  {row['index']:>2} {row['layer']:<33} {_ms(row['forward'])} " \
               f"{_ms(row['backward'])}"
        if "gflops_forward" in row:
            text += (f"  {row['gflops_forward']:6.1f}/{row['gflops_backward']:<6.1f}"
                     f"  {row['roof_fraction_forward']:5.0%}/{row['roof_fraction_backward']:<5.0%}"
                     f" ({row['roof_fraction_forward_best']:.0%}/"
                     f"{row['roof_fraction_backward_best']:.0%})")
            text += f" {row['strategy']}" + ("" if row["compute_input_grad"] else ", no dx")
        lines.append(text)
    lines += ["", f"plans (mode {mach['plan_mode']})  layer  algorithm  block KiB  "
                  "blocks  planning ms  candidates, ms (conv: fwd+bwd, linear: fwd)"]
    for row in result["plans"]:
        times = ", ".join(f"{name} {t * 1e3:.1f}" for name, t in
                          sorted(row["timings"].items(), key=lambda item: item[1]))
        blocks = f">={row['min_blocks']}" if row["block_bytes"] else "-"
        lines.append(f"  {row['source']:<17} {row['index']:>5}  {row['algorithm']:<9} "
                     f"{row['block_bytes'] / 1024:9.0f}  {blocks:>6}  "
                     f"{row['seconds'] * 1e3:11.1f}  {times or '(not timed)'}")
    lines += ["", "algorithm           layer    fwd ms    bwd ms  GFLOP/s  roof"
              "   (* = the plan's choice; GFLOP/s counts direct-convolution FLOPs)"]
    for row in result["strategies"]:
        mark = "*" if row["auto_choice"] else " "
        lines.append(f"  {row['strategy'] + mark:<17} {row['index']:>5} {_ms(row['forward'])} "
                     f"{_ms(row['backward'])}  {row['gflops_total']:7.1f} "
                     f"{row['roof_fraction_total']:5.0%}")
    if result.get("batch_sweep"):
        lines += ["", "training step by batch size   ours ms   torch ms   ours img/s"
                      "   ratio ours/torch"]
        for row in result["batch_sweep"]:
            torch_ms = f"{row['torch']['median_s'] * 1e3:10.2f}" if "torch" in row else \
                f"{'-':>10}"
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
            lines.append(f"  batch {row['batch_size']:<20} {row['ours']['median_s'] * 1e3:9.2f}"
                         f" {torch_ms}   {row['ours']['images_per_s']:10.1f}   {ratio:>8}")
    ref = result["reference"]
    lines += ["", f"reference loops vs fast path (conv {ref['case']['x']} * "
                  f"{ref['case']['weight']}, forward + backward): "
                  f"{ref['reference']['median_s'] * 1e3:.1f} ms vs "
                  f"{ref['ours']['median_s'] * 1e3:.3f} ms, {ref['speedup']:.0f}x"]
    mem = result["memory"]
    if mem.get("status") == "ok":
        lines.append(f"peak RSS of training steps: {mem['peak_rss_bytes'] / 2**20:.0f} MiB "
                     f"(process after imports and data: {mem['baseline_rss_bytes'] / 2**20:.0f}"
                     " MiB)")
    else:
        lines.append(f"peak RSS: {mem.get('status')}")
    return "\n".join(lines)
