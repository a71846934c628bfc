"""ONNX in and out: export a model of this engine to an ONNX file, and import an ONNX
graph of supported operators as an ordinary model (Sequential / Parallel / Residual /
Graph) that can be evaluated, summarised, gradient-checked, trained and saved.

Needs the optional ``onnx`` package (``pip install im2col_net[onnx]``); it is imported
only when one of these functions is called, never when ``im2col_net`` is imported.
``onnxruntime`` is needed only by :func:`onnxruntime_session` (tests and benchmark).
See ``docs/interop.md`` for the operator table and what is refused.
"""

from __future__ import annotations

from .deps import INSTALL_HINT, OnnxError

__all__ = ["export", "to_model_proto", "load", "from_model_proto", "OnnxError", "INSTALL_HINT",
           "onnxruntime_session", "make_onnxruntime_predict", "Limits"]


def export(model, path, input_shape=(1, 28, 28), opset=None):
    """Write ``model`` to the ONNX file ``path``; see :func:`im2col_net.onnx.exporter.export`."""
    from .exporter import export as _export

    return _export(model, path, input_shape=input_shape, opset=opset)


def to_model_proto(model, input_shape=(1, 28, 28), opset=None):
    """The checked ``onnx.ModelProto`` of ``model``; see :mod:`im2col_net.onnx.exporter`."""
    from .exporter import to_model_proto as _to_proto

    return _to_proto(model, input_shape, opset)


def load(path, *, input_shape=None, limits=None, allow_nonfinite=False):
    """Import the ONNX file ``path`` as a model; see :func:`im2col_net.onnx.importer.load`."""
    from .importer import load as _load

    return _load(path, input_shape=input_shape, limits=limits, allow_nonfinite=allow_nonfinite)


def from_model_proto(proto, *, input_shape=None, limits=None, base_dir=None):
    """Import an in-memory ``onnx.ModelProto``; see :mod:`im2col_net.onnx.importer`."""
    from .importer import from_model_proto as _from_proto

    return _from_proto(proto, input_shape=input_shape, limits=limits, base_dir=base_dir)


def onnxruntime_session(model, input_shape=(1, 28, 28), *, opset=None, threads=None):
    """An onnxruntime CPU session of the exported ``model``; see :mod:`.runtime`."""
    from .runtime import onnxruntime_session as _session

    return _session(model, input_shape, opset=opset, threads=threads)


def make_onnxruntime_predict(model, x, threads=None):
    """``(run, status)`` for a benchmark column; see :mod:`im2col_net.onnx.runtime`."""
    from .runtime import make_onnxruntime_predict as _make

    return _make(model, x, threads)


def __getattr__(name):
    if name == "Limits":
        from .importer import Limits

        return Limits
    raise AttributeError(f"module 'im2col_net.onnx' has no attribute {name!r}")
