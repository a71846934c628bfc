"""Output-size and padding arithmetic, in one place.

Everything that turns (input size, kernel, stride, padding, dilation) into an output
size or a padded size lives here; the fast path, the reference loops, the layers and
the model summary all call these functions instead of repeating the formula.

Padding is always resolved to four numbers ``(top, bottom, left, right)`` so that
asymmetric padding (``padding="same"`` with an even kernel) needs no special case.
"""

from __future__ import annotations

from dataclasses import dataclass

# torch.nn.Conv2d's names; "edge" (this engine's earlier name for replicate) stays an alias.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_MODE_ALIASES = {"edge": "replicate"}


def canonical_padding_mode(mode, *, owner: str = "") -> str:
    """``mode`` under its torch name (``"edge"`` -> ``"replicate"``); ``ValueError`` naming
    ``owner`` for anything else than :data:`PADDING_MODES` and the aliases."""
    if isinstance(mode, str):
        mode = PADDING_MODE_ALIASES.get(mode, mode)
        if mode in PADDING_MODES:
            return mode
    where = f"{owner}: " if owner else ""
    raise ValueError(f"{where}padding_mode must be one of {PADDING_MODES} (or 'edge', an alias "
                     f"of 'replicate'), got {mode!r}")


MAX_EXTENT = 2 ** 31 - 1  # kernel, stride, padding and dilation bound


def as_pair(value, name: str, *, minimum: int = 1, owner: str = "") -> tuple[int, int]:
    """Return ``value`` as a pair of ints, each at least ``minimum``.

    Accepts an int or a sequence of two ints (as torch.nn does).
    """
    where = f"{owner}: " if owner else ""
    if isinstance(value, bool):
        raise ValueError(f"{where}{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or _is_integer_scalar(value):
        pair = (int(value), int(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(
                f"{where}{name} must be an int or a pair of ints, got {value!r}"
            ) from None
        if len(items) != 2 or not all(
            (isinstance(v, int) or _is_integer_scalar(v)) and not isinstance(v, bool)
            for v in items
        ):
            raise ValueError(f"{where}{name} must be an int or a pair of ints, got {value!r}")
        pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        raise ValueError(
            f"{where}{name} must be >= {minimum} in both directions, got {value!r}"
        )
    if max(pair) > MAX_EXTENT:
        # Larger values are typos that would fail inside NumPy, naming no layer.
        raise ValueError(f"{where}{name} must be at most {MAX_EXTENT}, got {value!r}")
    return pair


def _is_integer_scalar(value) -> bool:
    # numpy integer scalars are accepted wherever an int is.
    return hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu" and not hasattr(
        value, "__len__"
    )


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    """Number of window positions along one axis.

    ``floor((size + pad_total - dilation * (kernel - 1) - 1) / stride) + 1``; may be
    <= 0 when the (dilated) kernel does not fit into the padded input.
    """
    span = dilation * (kernel - 1) + 1
    return (size + pad_total - span) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Number of pooling windows along one axis, PyTorch's rule (may be <= 0).

    Floor mode is :func:`conv_output_size`. ``ceil_mode`` rounds the division up, but a
    window is kept only if it starts inside the input or the left/top padding: torch's
    ``pooling_output_shape`` drops a last window that would start in the right padding.
    """
    span = dilation * (kernel - 1) + 1
    total = size + pad_before + pad_after - span
    out = (total + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and out > 0 and (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def ceil_overhang(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                  dilation: int = 1, ceil_mode: bool = False) -> int:
    """How far the last window of :func:`pool_output_size` reaches past the padded input
    (0 in floor mode): extra bottom/right padding that turns ceil mode into floor mode."""
    out = pool_output_size(size, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    span = dilation * (kernel - 1) + 1
    return max(0, (out - 1) * stride + span - (size + pad_before + pad_after)) if out > 0 else 0


def conv_transpose_output_size(size: int, kernel: int, stride: int, pad_total: int,
                                dilation: int = 1, output_padding: int = 0) -> int:
    """Output length of a transposed convolution along one axis (may be <= 0).

    ``(size - 1) * stride - pad_total + dilation * (kernel - 1) + output_padding + 1``:
    the input length of the direct convolution whose adjoint it is.
    """
    return (size - 1) * stride - pad_total + dilation * (kernel - 1) + output_padding + 1


def resolve_padding(padding, kernel: tuple[int, int], stride: tuple[int, int],
                    dilation: tuple[int, int], *, owner: str = "") -> tuple[int, int, int, int]:
    """Turn a padding argument into ``(top, bottom, left, right)``.

    ``padding`` may be an int, a pair ``(ph, pw)``, a 4-tuple ``(top, bottom, left,
    right)``, ``"valid"`` (no padding) or ``"same"`` (output size equals input size;
    only for stride 1; an odd total goes one extra row/column to the bottom/right, as
    in PyTorch).
    """
    where = f"{owner}: " if owner else ""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"{where}padding='same' needs stride 1, got stride={stride}"
                )
            pads = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                pads.extend([total // 2, total - total // 2])
            return tuple(pads)  # type: ignore[return-value]
        raise ValueError(
            f"{where}padding must be an int, a pair, a 4-tuple, 'same' or 'valid', got {padding!r}"
        )
    if not isinstance(padding, int) and not _is_integer_scalar(padding):
        try:
            items = tuple(padding)
        except TypeError:
            items = None
        if items is not None and len(items) == 4:
            if not all((isinstance(v, int) or _is_integer_scalar(v))
                       and not isinstance(v, bool) and v >= 0 for v in items):
                raise ValueError(
                    f"{where}padding must be non-negative ints, got {padding!r}"
                )
            return tuple(int(v) for v in items)  # type: ignore[return-value]
    ph, pw = as_pair(padding, "padding", minimum=0, owner=owner)
    return (ph, ph, pw, pw)


@dataclass(frozen=True)
class WindowGeometry:
    """Where the sliding windows of a conv or pooling layer fall.

    Attributes are pairs ``(along H, along W)``; ``padding`` is ``(top, bottom, left,
    right)``.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    @classmethod
    def make(cls, kernel_size, stride=1, padding=0, dilation=1, *,
             owner: str = "") -> WindowGeometry:
        """Validate torch-style arguments and build the geometry."""
        kernel = as_pair(kernel_size, "kernel_size", owner=owner)
        stride_ = as_pair(stride, "stride", owner=owner)
        dilation_ = as_pair(dilation, "dilation", owner=owner)
        pads = resolve_padding(padding, kernel, stride_, dilation_, owner=owner)
        return cls(kernel, stride_, pads, dilation_)

    @property
    def span(self) -> tuple[int, int]:
        """Extent of one dilated window: ``dilation * (kernel - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True))  # type: ignore

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """``(Hp, Wp)``: the input size plus the padding on both sides."""
        top, bottom, left, right = self.padding
        return height + top + bottom, width + left + right

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(Ho, Wo)`` for an input of ``height x width`` (may be <= 0)."""
        top, bottom, left, right = self.padding
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return (
            conv_output_size(height, kh, sh, top + bottom, dh),
            conv_output_size(width, kw, sw, left + right, dw),
        )

    def checked_output_size(self, height: int, width: int, *, owner: str = "") -> tuple[int, int]:
        """Like :meth:`output_size` but raise ``ValueError`` when no window fits."""
        ho, wo = self.output_size(height, width)
        if ho <= 0 or wo <= 0:
            ph, pw = self.padded_size(height, width)
            where = f"{owner}: " if owner else ""
            raise ValueError(
                f"{where}kernel {self.kernel} with dilation {self.dilation} spans {self.span}, "
                f"larger than the padded input {ph}x{pw} (input {height}x{width}, "
                f"padding {self.padding})"
            )
        return ho, wo

    @property
    def tiles_exactly(self) -> bool:
        """True when windows are disjoint, touching and unpadded (kernel == stride)."""
        return (
            self.kernel == self.stride
            and self.dilation == (1, 1)
            and self.padding == (0, 0, 0, 0)
        )


def adaptive_output_size(output_size, height: int, width: int, *,
                         owner: str = "") -> tuple[int, int]:
    """``(Ho, Wo)`` of an adaptive pool: ``output_size`` is an int, or a pair whose
    ``None`` entries keep that input size (as ``torch.nn.AdaptiveAvgPool2d``)."""
    where = f"{owner}: " if owner else ""
    if output_size is None or isinstance(output_size, (int,)) or _is_integer_scalar(output_size):
        items = (output_size, output_size)
    else:
        try:
            items = tuple(output_size)
        except TypeError:
            items = ()
    if len(items) != 2 or not all(
            v is None or ((isinstance(v, int) or _is_integer_scalar(v))
                          and not isinstance(v, bool) and 1 <= v <= MAX_EXTENT)
            for v in items):
        raise ValueError(f"{where}output_size must be a positive int or a pair of positive "
                         f"ints or None, got {output_size!r}")
    return (height if items[0] is None else int(items[0]),
            width if items[1] is None else int(items[1]))


def adaptive_windows(size: int, out: int):
    """PyTorch's adaptive windows along one axis: ``(start, length)`` int64 arrays of
    ``out`` entries, ``start = floor(i*size/out)``, ``end = ceil((i+1)*size/out)``."""
    import numpy as np

    i = np.arange(out, dtype=np.int64)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end - start


def unpool_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Default output length of max unpooling: the input length of the max pooling
    it inverts, ``(size - 1) * stride - 2 * pad + kernel``."""
    return (size - 1) * stride - 2 * pad + kernel
