"""The optional ``onnx`` dependency, imported only when an ONNX function is called."""

from __future__ import annotations

INSTALL_HINT = "pip install im2col_net[onnx]"


class OnnxError(ValueError):
    """A model cannot be exported to ONNX, or an ONNX file cannot be imported."""


def require_onnx():
    """The ``onnx`` module, or ImportError telling how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX support needs the onnx package: {INSTALL_HINT}") from exc
    return onnx


def opset_range(onnx) -> tuple[int, int]:
    """``(oldest, newest)`` default-domain opset that export writes."""
    return 13, int(onnx.defs.onnx_opset_version())
