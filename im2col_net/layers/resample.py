"""Upsampling and pixel (un)shuffle layers (torch.nn.Upsample, UpsamplingNearest2d,
UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle) over
:mod:`im2col_net.functional.resample`."""

from __future__ import annotations

import math

import numpy as np

from ..functional import resample as F
from .base import Layer, check_count, check_float_input, check_input_shape

__all__ = ["Upsample", "UpsamplingNearest2D", "UpsamplingBilinear2D", "PixelShuffle",
           "PixelUnshuffle"]

# torch's other modes (linear, bicubic, trilinear, area, nearest-exact) are not offered.
_TORCH_ONLY_MODES = ("linear", "bicubic", "trilinear", "area", "nearest-exact")


def _size_pair(owner, size):
    values = size if isinstance(size, (tuple, list)) else (size, size)
    if len(values) != 2:
        raise ValueError(f"{owner}: size must be an int or a pair of ints (H, W), got {size!r}")
    return tuple(check_count(owner, "size", v) for v in values)


def _scale_pair(owner, scale_factor):
    values = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
    ok = len(values) == 2 and all(
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_)) and math.isfinite(v) and v > 0 for v in values)
    if not ok:
        raise ValueError(f"{owner}: scale_factor must be a positive finite number or a pair of "
                         f"them, got {scale_factor!r}")
    return tuple(float(v) for v in values)


class Upsample(Layer):
    """Resampling ``(N, C, H, W) -> (N, C, Ho, Wo)`` (torch.nn.Upsample, 2-D).

    Exactly one of ``size`` (int or ``(Ho, Wo)``) and ``scale_factor`` (positive number
    or pair; ``Ho = floor(H * scale)``). ``mode``: ``"nearest"`` or ``"bilinear"``;
    ``align_corners`` (bilinear only, default False); ``recompute_scale_factor=True``
    computes the source positions from ``in / out`` instead of ``1 / scale_factor``.
    The index rules are PyTorch's (:mod:`im2col_net.functional.resample`).
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        owner = type(self).__name__
        if mode in _TORCH_ONLY_MODES:
            raise ValueError(f"{owner}: mode {mode!r} is not supported; supported modes: "
                             f"{', '.join(F.UPSAMPLE_MODES)}")
        if mode not in F.UPSAMPLE_MODES:
            raise ValueError(f"{owner}: mode must be one of {F.UPSAMPLE_MODES}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{owner}: give exactly one of size and scale_factor, got "
                             f"size={size!r}, scale_factor={scale_factor!r}")
        if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
            raise ValueError(f"{owner}: align_corners must be None, True or False, got "
                             f"{align_corners!r}")
        if mode == "nearest" and align_corners is not None:
            # torch refuses it too: nearest has no corners to align.
            raise ValueError(f"{owner}: align_corners can only be set with mode 'bilinear', "
                             f"got align_corners={align_corners!r} with mode 'nearest'")
        if recompute_scale_factor not in (None, False, True):
            raise ValueError(f"{owner}: recompute_scale_factor must be None, True or False, "
                             f"got {recompute_scale_factor!r}")
        if recompute_scale_factor and size is not None:
            raise ValueError(f"{owner}: recompute_scale_factor is not meaningful with an "
                             f"explicit size")
        self.size = None if size is None else _size_pair(owner, size)
        self.scale_factor = None if scale_factor is None else _scale_pair(owner, scale_factor)
        self.mode = mode
        self.align_corners = None if align_corners is None else bool(align_corners)
        self.recompute_scale_factor = (None if recompute_scale_factor is None
                                       else bool(recompute_scale_factor))
        # The shape of the last forward input: the ONNX exporter runs the model once on
        # the declared shape and reads it to fix the index tables of the graph.
        self.last_input_shape = None

    def get_config(self):
        return dict(size=None if self.size is None else list(self.size),
                    scale_factor=None if self.scale_factor is None else list(self.scale_factor),
                    mode=self.mode, align_corners=self.align_corners,
                    recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self):
        parts = [f"size={self.size}" if self.size is not None
                 else f"scale_factor={self.scale_factor}", f"mode={self.mode!r}"]
        if self.align_corners is not None:
            parts.append(f"align_corners={self.align_corners}")
        if self.recompute_scale_factor is not None:
            parts.append(f"recompute_scale_factor={self.recompute_scale_factor}")
        return ", ".join(parts)

    # -- geometry ----------------------------------------------------------------
    def _out_hw(self, shape):
        out = F.upsample_output_size(shape[2:], self.size, self.scale_factor)
        if min(out) < 1 or min(shape[2:]) < 1:
            raise ValueError(f"{self!r}: input and output sizes must be positive, got input "
                             f"{shape[2]}x{shape[3]} and output {out[0]}x{out[1]}")
        return out

    def tables(self, input_shape, dtype):
        """``(out_hw, per-axis tables)`` of :func:`im2col_net.functional.resample`
        (None: identity axis) for an input of ``input_shape``."""
        shape = check_input_shape(self, input_shape, 4)
        out = self._out_hw(shape)
        return out, F.resample_tables(self.mode, shape[2:], out, bool(self.align_corners),
                                      self.scales, dtype)

    @property
    def scales(self):
        """Per-axis scale factors used as such in the source-index formula (None: the
        ratio of sizes is used)."""
        if self.scale_factor is None or self.recompute_scale_factor:
            return (None, None)
        return self.scale_factor

    def output_shape(self, input_shape):
        shape = check_input_shape(self, input_shape, 4)
        return shape[:2] + self._out_hw(shape)

    def forward(self, x):
        x = check_float_input(self, x, 4)
        out = self._out_hw(x.shape)
        self.last_input_shape = x.shape
        y, cache = F.upsample_forward(x, out, self.mode, bool(self.align_corners), self.scales)
        self._cache = (cache, y.shape, y.dtype)
        return y

    def backward(self, dy):
        cache, shape, dtype = self._require_cache()
        return F.upsample_backward(self._check_dy(dy, shape, dtype), cache)

    def reference_pair(self):
        from .. import reference as ref

        def fwd(x):
            out = self._out_hw(np.shape(x))
            return ref.upsample_forward(x, out, self.mode, bool(self.align_corners),
                                        self.scales)

        def bwd(x, dy):
            return ref.upsample_backward(x, dy, self.mode, bool(self.align_corners),
                                         self.scales)

        return fwd, bwd


class UpsamplingNearest2D(Upsample):
    """``Upsample(size, scale_factor, mode="nearest")`` (torch.nn.UpsamplingNearest2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")

    def get_config(self):
        config = super().get_config()
        return dict(size=config["size"], scale_factor=config["scale_factor"])


class UpsamplingBilinear2D(Upsample):
    """``Upsample(size, scale_factor, mode="bilinear", align_corners=True)``
    (torch.nn.UpsamplingBilinear2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)

    def get_config(self):
        config = super().get_config()
        return dict(size=config["size"], scale_factor=config["scale_factor"])


class _Shuffle(Layer):
    _arg = ""

    def __init__(self, factor):
        super().__init__()
        self.factor = check_count(type(self).__name__, self._arg, factor)

    def get_config(self):
        return {self._arg: self.factor}

    def forward(self, x):
        x = check_float_input(self, x, 4)
        out = self.output_shape(x.shape)
        y, _ = self._forward(x, self.factor)
        self._cache = (x.shape, out, y.dtype)
        return y

    def backward(self, dy):
        shape, out, dtype = self._require_cache()
        return self._backward(self._check_dy(dy, out, dtype), self.factor)


class PixelShuffle(_Shuffle):
    """``(N, C*r*r, H, W) -> (N, C, H*r, W*r)`` (torch.nn.PixelShuffle): ``y[n, c, h*r + i,
    w*r + j] = x[n, c*r*r + i*r + j, h, w]``, ``r = upscale_factor``."""

    _arg = "upscale_factor"
    _forward = staticmethod(F.pixel_shuffle_forward)

    def __init__(self, upscale_factor):
        super().__init__(upscale_factor)
    _backward = staticmethod(F.pixel_shuffle_backward)

    def output_shape(self, input_shape):
        n, c, h, w = check_input_shape(self, input_shape, 4)
        r = self.factor
        if c % (r * r):
            raise ValueError(f"{self!r}: the input's {c} channels are not divisible by "
                             f"upscale_factor**2 = {r * r}")
        return (n, c // (r * r), h * r, w * r)

    def reference_pair(self):
        from .. import reference as ref

        return (lambda x: ref.pixel_shuffle(x, self.factor),
                lambda x, dy: ref.pixel_unshuffle(dy, self.factor))


class PixelUnshuffle(_Shuffle):
    """``(N, C, H*r, W*r) -> (N, C*r*r, H, W)`` (torch.nn.PixelUnshuffle), the inverse
    of :class:`PixelShuffle`, ``r = downscale_factor``."""

    _arg = "downscale_factor"
    _forward = staticmethod(F.pixel_unshuffle_forward)

    def __init__(self, downscale_factor):
        super().__init__(downscale_factor)
    _backward = staticmethod(F.pixel_unshuffle_backward)

    def output_shape(self, input_shape):
        n, c, h, w = check_input_shape(self, input_shape, 4)
        r = self.factor
        if h % r or w % r:
            raise ValueError(f"{self!r}: the input's spatial size {h}x{w} is not divisible by "
                             f"downscale_factor = {r}")
        return (n, c * r * r, h // r, w // r)

    def reference_pair(self):
        from .. import reference as ref

        return (lambda x: ref.pixel_unshuffle(x, self.factor),
                lambda x, dy: ref.pixel_shuffle(dy, self.factor))
