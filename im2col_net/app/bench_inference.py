"""Inference benchmark behind ``im2col-net bench --inference``.

The default ``convnet`` in eval mode predicting one batch of fixed random float32 images
(default 1000) through the library's predict path
(:func:`im2col_net.training.evaluation.predict_logits`, one batch), side by side with the
same model in PyTorch under ``torch.inference_mode()`` (the weights copied through
:mod:`im2col_net.interop`) and, when onnx and onnxruntime are installed, with
onnxruntime running the model exported by :mod:`im2col_net.onnx`; all on the same thread
count, timed interleaved (so that load from other processes hits every engine alike;
each timed run follows untimed ones of the same engine, see
:func:`im2col_net.app.bench.time_interleaved`),
with the ratios of images per second in the same run. Each engine's logits are compared
with ours (the largest absolute difference), so a ratio always compares the same
computation.
"""

from __future__ import annotations

import numpy as np

from .. import runtime
from ..functional import planner
from ..training.evaluation import predict_logits
from . import bench, bench_torch

__all__ = ["run_inference_benchmark", "format_inference_report", "ENGINES"]

ENGINES = ("ours", "torch", "onnxruntime")


def _onnxruntime_predict(model, x, threads):
    try:
        from ..onnx import make_onnxruntime_predict
    except Exception as exc:  # noqa: BLE001 - onnx itself missing means "not available"
        return None, f"not available ({type(exc).__name__}: {exc})"
    return make_onnxruntime_predict(model, x, threads)


def run_inference_benchmark(batch_size: int = 1000, repeats: int = 7, warmup: int = 2,
                            threads: int | None = None, include_torch: bool = True,
                            include_onnx: bool = True, quick: bool = False,
                            seed: int = 0) -> dict:
    """Time the eval-mode forward pass of every available engine; a JSON-able dict.

    ``threads``: BLAS threads for our engine, ``torch.set_num_threads`` and onnxruntime's
    intra-op threads (None: the BLAS thread count in effect). ``quick``: one warm-up and
    two repeats (a smoke test).
    """
    for name, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1),
                             ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"run_inference_benchmark: {name} must be an int >= {low}, "
                             f"got {value!r}")
    if quick:
        repeats, warmup = min(repeats, 2), min(warmup, 1)
    with bench._blas_threads(threads), planner.training_planning():
        threads_used = runtime.worker_count() if threads is None else threads
        x, _ = bench.make_batch(batch_size, seed)
        model = bench.make_model(seed)
        model.eval()
        runs = {"ours": lambda: predict_logits(model, x, batch_size=batch_size)}
        status = {"ours": "ok (im2col_net predict_logits, eval mode, no_grad)"}
        for name, wanted, make in (("torch", include_torch, bench_torch.make_torch_predict),
                                   ("onnxruntime", include_onnx, _onnxruntime_predict)):
            run, status[name] = (make(model, x, threads_used) if wanted
                                 else (None, "disabled (--no-" + name.replace("runtime", "")
                                       + ")"))
            if run is not None:
                runs[name] = run
        reference = runs["ours"]()
        agreement = {}
        for name, run in runs.items():
            if name != "ours":
                agreement[name] = float(np.max(np.abs(np.asarray(run()) - reference)))
        for _ in range(warmup):
            for run in runs.values():
                run()
        times = bench.time_interleaved(runs, repeats)
        result = {
            "config": dict(mode="inference", model="convnet", dtype="float32",
                           batch_size=batch_size, repeats=repeats, warmup=warmup,
                           threads=threads_used, quick=quick, seed=seed),
            "machine": bench.machine_info(),
            "status": status,
            "max_abs_diff_vs_ours": agreement,
        }
        engines = {}
        for name, ts in times.items():
            engines[name] = dict(bench._summary(ts),
                                 images_per_s=batch_size / float(np.median(ts)))
        result["engines"] = engines
        result["ratios"] = {f"ours/{name}": engines["ours"]["images_per_s"]
                            / engines[name]["images_per_s"]
                            for name in engines if name != "ours"}
    return result


def format_inference_report(result: dict) -> str:
    """Human-readable table of a :func:`run_inference_benchmark` result."""
    cfg = result["config"]
    lines = [f"im2col_net inference benchmark: convnet, eval mode, batch {cfg['batch_size']}, "
             f"float32; median of {cfg['repeats']} after {cfg['warmup']} warm-up"]
    lines += bench.format_machine(result["machine"], cfg["threads"])
    lines += ["", "engine                 ms/batch    images/s   max |logits - ours|"]
    for name in ENGINES:
        if name in result["engines"]:
            e = result["engines"][name]
            diff = result["max_abs_diff_vs_ours"].get(name)
            lines.append(f"  {name:<18} {bench._ms(e)}  {e['images_per_s']:10.1f}   "
                         + (f"{diff:.2e}" if diff is not None else "-"))
    for name in ENGINES[1:]:
        if name in result["engines"]:
            lines.append(f"  ratio ours/{name}: {result['ratios'][f'ours/{name}']:.2f}x "
                         f"({result['status'][name]})")
        else:
            lines.append(f"  {name}: {result['status'][name]}")
    return "\n".join(lines)
