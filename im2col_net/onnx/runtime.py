"""onnxruntime on an exported model: a CPU session and a benchmark closure.

onnxruntime is optional and used only here (tests and the inference benchmark); the
rest of :mod:`im2col_net.onnx` needs only ``onnx``.
"""

from __future__ import annotations

import numpy as np

from .exporter import INPUT_NAME, to_model_proto

__all__ = ["onnxruntime_session", "make_onnxruntime_predict"]


def onnxruntime_session(model, input_shape=(1, 28, 28), *, opset=None, threads=None):
    """An ``onnxruntime.InferenceSession`` (CPU provider) running the ONNX export of
    ``model``; feed it ``{"input": x}``. ``threads`` sets the intra-op thread count.
    Raises ImportError without onnxruntime."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("onnxruntime_session needs onnxruntime: pip install onnxruntime") \
            from exc
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    data = to_model_proto(model, input_shape, opset).SerializeToString()
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def make_onnxruntime_predict(model, x, threads=None):
    """``(run, status)`` where ``run()`` is one onnxruntime forward pass over the batch
    ``x (N, C, H, W)`` returning the outputs, and ``status`` is ``"ok (...)"``; or
    ``(None, reason)`` when onnx/onnxruntime are missing or the model cannot be
    exported (the same contract as :func:`im2col_net.app.bench_torch.make_torch_step`)."""
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return None, f"not available ({type(exc).__name__}: {exc})"
    x = np.ascontiguousarray(x)
    try:
        session = onnxruntime_session(model, x.shape[1:], threads=threads)
    except (ImportError, ValueError) as exc:
        return None, f"not available ({type(exc).__name__}: {exc})"
    feed = {INPUT_NAME: x}

    def run():
        return session.run(None, feed)[0]

    count = "default" if threads is None else str(int(threads))
    return run, f"ok (onnxruntime {onnxruntime.__version__}, {count} threads)"
