"""Convolution through the discrete Fourier transform: the transforms behind the ``fft``
algorithm (:mod:`.conv_algorithms.fft`).

For stride 1, no dilation and no groups, the ``(Hp, Wp)`` DFT of the padded input
``xp`` turns the convolution into one small complex matrix product per frequency:

* forward (cross-correlation): ``Y = X conj(K)``, ``y = irfft2(Y)[:Ho, :Wo]``, where
  ``K`` is the DFT of the kernel zero-padded to ``(Hp, Wp)``; outputs past ``Ho, Wo``
  would wrap around and are cut off;
* weight gradient: ``dW = irfft2(sum_n X conj(DY))[:kh, :kw]`` with ``dy`` zero-padded
  to ``(Hp, Wp)``; the sum over the batch happens inside one GEMM per frequency;
* input gradient: ``dxp = irfft2(DY K)`` (the full convolution; nothing wraps).

``(Hp, Wp)`` is the transform grid. It may be shorter than the padded input when the
input is zero-padded: then the products wrap around, but only onto the zeros of the
padding and onto the border of ``dxp`` that zero padding drops.

Per frequency these are ``(n, C) @ (C, Cout)`` products, so a 5x5 kernel costs about
``2*Hp*Wp / (Ho*Wo*kh*kw)`` (~0.1 for 14x14 images) of the im2col GEMM work, plus
the transforms. Arrays are NHWC (channels last, as in :mod:`im2col_net.lowering`).

**Split spectra.** Every spectrum here is real, ``(n, Hp, Wp//2+1, 2, C)``: per
frequency the real parts of the ``C`` channels, then their imaginary parts. A complex
product ``X · M`` per frequency is then one real GEMM ``[Xr Xi] · [[Mr, Mi], [-Mi,
Mr]]`` (the same multiply-adds as the complex one), and the transforms are real GEMMs
as well:

* Small grids (:func:`uses_matrices`) are transformed by DFT-matrix products, one along
  H for each image, then one along W for each image row, with only the columns of the
  nonzero input (the zero padding is never built or read) and only the output rows and
  columns that are kept; the matrix rows are ordered so that each product writes the
  layout the next one reads, and no pass reorders data between them.
* Larger grids use ``scipy.fft`` and convert to and from the split layout.

Spectra are float32 for float32 inputs and float64 for float64, so no precision is
lost or gained against the GEMM path beyond rounding.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft as sfft

from ..geometry import WindowGeometry
from ..runtime import scratch

__all__ = ["FFT_DTYPES", "MATRIX_DFT_MAX", "fft_supported", "uses_matrices", "spectrum",
           "inverse", "kernel_matrix", "forward_block",
           "backward_products", "input_gradient_block", "weight_gradient"]

FFT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Longest transform (padded height or width) done as a DFT-matrix product (the measured
# crossover with scipy.fft is between 48 and 64 points, docs/performance.md).
MATRIX_DFT_MAX = 48


def fft_supported(geometry: WindowGeometry, groups: int, dtype) -> str | None:
    """None when the FFT path can run this convolution, else the reason it cannot."""
    if geometry.stride != (1, 1):
        return f"stride 1 (got stride {geometry.stride})"
    if geometry.dilation != (1, 1):
        return f"dilation 1 (got dilation {geometry.dilation})"
    if groups != 1:
        return f"groups=1 (got groups={groups})"
    if np.dtype(dtype) not in FFT_DTYPES:
        return f"float32 or float64 (got {np.dtype(dtype)})"
    return None


def uses_matrices(padded_size) -> bool:
    """Whether transforms of this ``(Hp, Wp)`` grid run as DFT-matrix products (GEMMs)
    rather than through ``scipy.fft``.

    A length-``L`` DFT as a matrix product costs ``L`` multiply-adds per point against
    about ``log2(L)`` for an FFT, but it runs at GEMM speed, while an FFT of a short line
    pays a fixed cost per line (small transforms are also what FFTW leaves to its
    straight-line DFT codelets). The extra arithmetic grows with ``L``, so above
    :data:`MATRIX_DFT_MAX` points the FFT wins.
    """
    return max(padded_size) <= MATRIX_DFT_MAX


def _angles(rows, cols, size) -> np.ndarray:
    """``2 pi (r * c mod size) / size`` for the index vectors ``rows`` and ``cols``
    (reduced first, so that the angle stays small and exact in float64)."""
    r = np.asarray(rows).reshape(-1, 1)
    c = np.asarray(cols).reshape(1, -1)
    return 2 * np.pi * ((r * c) % size) / size


def _frozen(matrix, dtype) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=dtype)
    matrix.flags.writeable = False
    return matrix


# -- the DFT matrices (cached, read-only: a few constants per layer shape) ---------------
@functools.lru_cache(maxsize=128)
def _dft_matrix(size: int, taps: int, dtype, *, half: bool = False) -> np.ndarray:
    """``E[f, t] = exp(-2 pi i f t / size)`` for ``t < taps`` and ``f < size`` (``f <=
    size // 2`` when ``half``), complex: the DFT of a signal nonzero in its first
    ``taps`` entries only (the kernel's transforms)."""
    rows = size // 2 + 1 if half else size
    return _frozen(np.exp(-1j * _angles(np.arange(rows), np.arange(taps), size)), dtype)


def _irfft_weights(size: int) -> np.ndarray:
    """How often ``irfft`` counts each bin of a half spectrum: 0 and ``size/2`` once,
    the others twice (for their mirror images)."""
    weights = np.full(size // 2 + 1, 2.0)
    weights[0] = 1.0
    if size % 2 == 0:
        weights[-1] = 1.0
    return weights


@functools.lru_cache(maxsize=128)
def _forward_h(size: int, taps: int, offset: int, dtype) -> np.ndarray:
    """``(2*size, taps)``: the DFT along H of ``taps`` real rows at ``offset``, rows in
    ``(frequency, real/imaginary)`` order."""
    angle = _angles(np.arange(size), np.arange(offset, offset + taps), size)
    return _frozen(np.stack([np.cos(angle), -np.sin(angle)], axis=1).reshape(2 * size, taps),
                   dtype)


@functools.lru_cache(maxsize=128)
def _forward_w(size: int, taps: int, offset: int, dtype) -> np.ndarray:
    """``(2*Fw, 2*taps)``: along W, the half-spectrum DFT of a complex line given as
    ``taps`` real parts then ``taps`` imaginary parts at ``offset``; rows in ``(bin,
    real/imaginary)`` order."""
    angle = _angles(np.arange(size // 2 + 1), np.arange(offset, offset + taps), size)
    cos = np.cos(angle)
    sin = -np.sin(angle)
    # (a + ib) (cos + i sin) = (a cos - b sin) + i (a sin + b cos)
    matrix = np.stack([np.concatenate([cos, -sin], axis=1),
                       np.concatenate([sin, cos], axis=1)], axis=1)
    return _frozen(matrix.reshape(-1, 2 * taps), dtype)


@functools.lru_cache(maxsize=128)
def _inverse_w(size: int, start: int, stop: int, dtype) -> np.ndarray:
    """``(2*q, 2*Fw)``, ``q = stop - start``: along W, the inverse DFT of a half spectrum
    (rows of ``(bin, real/imaginary)`` pairs) at the columns ``start:stop``, weighted as
    ``irfft`` does, scaled by ``1/size``; output rows are ``q`` real parts, then ``q``
    imaginary parts."""
    angle = _angles(np.arange(start, stop), np.arange(size // 2 + 1), size)
    weights = _irfft_weights(size) / size
    cos, sin = np.cos(angle) * weights, np.sin(angle) * weights
    # (a + ib) (cos + i sin) for each bin, the pair (a, b) adjacent in the input.
    matrix = np.stack([np.stack([cos, -sin], axis=2), np.stack([sin, cos], axis=2)])
    return _frozen(matrix.reshape(2 * (stop - start), -1), dtype)


@functools.lru_cache(maxsize=128)
def _inverse_h(size: int, start: int, stop: int, dtype) -> np.ndarray:
    """``(stop - start, 2*size)``: the real part of the inverse DFT along H at rows
    ``start:stop``, scaled by ``1/size``, of lines given as ``(frequency,
    real/imaginary)`` rows. (The real part is exact: the 2-D spectrum is that of a real
    array, the W inverse having already counted each mirror image.)"""
    angle = _angles(np.arange(start, stop), np.arange(size), size)
    matrix = np.stack([np.cos(angle), -np.sin(angle)], axis=2) / size
    return _frozen(matrix.reshape(stop - start, 2 * size), dtype)


@functools.lru_cache(maxsize=128)
def _weight_inverse_h(size: int, taps: int, dtype) -> np.ndarray:
    """``(2*taps, 2*size)`` real: for the weight gradient, the inverse DFT along H at the
    first ``taps`` rows (the conjugate DFT matrix), scaled by ``1/size``, of lines given
    as ``size`` real parts then ``size`` imaginary parts; output rows in ``(tap,
    real/imaginary)`` order."""
    h = _dft_matrix(size, taps, np.complex128).T / size           # (taps, size)
    matrix = np.stack([np.concatenate([h.real, -h.imag], axis=1),
                       np.concatenate([h.imag, h.real], axis=1)], axis=1)
    return _frozen(matrix.reshape(2 * taps, 2 * size), dtype)


@functools.lru_cache(maxsize=128)
def _weight_inverse_w(size: int, taps: int, dtype) -> np.ndarray:
    """``(taps, 2*Fw)`` real: for the weight gradient, the real part of the inverse real
    DFT along W (conjugated) at the first ``taps`` points, bins weighted as ``irfft``
    does, scaled by ``1/size``, of lines given as ``Fw`` real parts then ``Fw``
    imaginary parts."""
    w = _dft_matrix(size, taps, np.complex128, half=True).T * (_irfft_weights(size) / size)
    return _frozen(np.concatenate([w.real, -w.imag], axis=1), dtype)


# -- split spectra ------------------------------------------------------------------------
def _per_frequency(a: np.ndarray) -> np.ndarray:
    """``(n, Hp, Fw, 2, C)`` split spectrum -> ``(F, n, 2C)`` view, one ``[real imag]``
    row per image and frequency."""
    n, hp, fw, _, c = a.shape
    return a.reshape(n, hp * fw, 2 * c).transpose(1, 0, 2)


def _matmul_into(a, b, out, shape) -> None:
    """``out[...] = (a @ b)`` with the product computed as ``shape``: straight into
    ``out`` when it reshapes to that as a view, else through a temporary."""
    target = out.reshape(shape)
    if np.may_share_memory(target, out):
        np.matmul(a, b, out=target)
    else:
        np.copyto(out, np.matmul(a, b).reshape(out.shape))


def _to_split(full: np.ndarray, out: np.ndarray) -> np.ndarray:
    out[..., 0, :] = full.real
    out[..., 1, :] = full.imag
    return out


def spectrum(a: np.ndarray, padded_size, offset=(0, 0), *,
             out: np.ndarray | None = None) -> np.ndarray:
    """The split ``rfft2`` (over H and W) of the ``(n, h, w, C)`` real block ``a`` placed
    at ``offset`` in a zero ``(Hp, Wp)`` grid: ``(n, Hp, Wp//2+1, 2, C)`` real, written
    into ``out`` when given.
    """
    n, h, w, c = a.shape
    hp, wp = padded_size
    fw = wp // 2 + 1
    if out is None:
        out = np.empty((n, hp, fw, 2, c), dtype=a.dtype)
    if not uses_matrices(padded_size):
        if (h, w) != (hp, wp):
            grid = np.zeros((n, hp, wp, c), dtype=a.dtype)
            grid[:, offset[0]:offset[0] + h, offset[1]:offset[1] + w] = a
            a = grid
        full = sfft.rfft2(a, axes=(1, 2))
        return _to_split(full, out)
    # Along H, per image: (2*Hp, h) @ (h, w*C) -> rows (frequency, real/imaginary).
    lines = np.matmul(_forward_h(hp, h, offset[0], a.dtype), a.reshape(n, h, w * c))
    # Along W, per image row: those rows as (real/imaginary, w) x C matrices.
    _matmul_into(_forward_w(wp, w, offset[1], a.dtype),
                 lines.reshape(n * hp, 2 * w, c), out, (n * hp, 2 * fw, c))
    return out


def inverse(spec: np.ndarray, width: int, rows: slice, cols: slice,
            out: np.ndarray | None = None) -> np.ndarray:
    """``irfft2(S, s=(Hp, width), axes=(1, 2))[:, rows, cols]`` for the split half
    spectrum ``spec (n, Hp, width//2+1, 2, C)`` of ``S``, written into ``out (n, rows,
    cols, C)`` when given (which may be a strided view, such as the interior of a padded
    array). Only the rows and columns asked for are computed."""
    n, hp, fw, _, c = spec.shape
    r0, r1, _ = rows.indices(hp)
    c0, c1, _ = cols.indices(width)
    if out is None:
        out = np.empty((n, r1 - r0, c1 - c0, c), dtype=spec.dtype)
    if not uses_matrices((hp, width)):
        full = spec[..., 0, :] + 1j * spec[..., 1, :]
        along_h = sfft.ifft(full, axis=1, overwrite_x=True)
        np.copyto(out, sfft.irfft(along_h[:, r0:r1], n=width, axis=2)[:, :, c0:c1])
        return out
    q = c1 - c0
    # Along W, per frequency row of each image: (2q, 2*Fw) @ (2*Fw, C).
    lines = np.matmul(_inverse_w(width, c0, c1, spec.dtype), spec.reshape(n * hp, 2 * fw, c))
    # Along H, per image: the rows (frequency, real/imaginary) -> the kept rows.
    _matmul_into(_inverse_h(hp, r0, r1, spec.dtype), lines.reshape(n, 2 * hp, q * c),
                 out, (n, r1 - r0, q * c))
    return out


@functools.lru_cache(maxsize=64)
def _kernel_dft(padded_size, kernel, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(Re E, Im E)``, each ``(F, kh*kw)``: the 2-D real DFT of a kernel's taps zero-padded
    to ``padded_size``, as the two real matrices of one GEMM each."""
    (hp, wp), (kh, kw) = padded_size, kernel
    e = (_dft_matrix(hp, kh, np.complex128)[:, None, :, None]
         * _dft_matrix(wp, kw, np.complex128, half=True)[None, :, None, :])
    e = e.reshape(hp * (wp // 2 + 1), kh * kw)
    return _frozen(e.real, dtype), _frozen(e.imag, dtype)


def kernel_matrix(w_taps: np.ndarray, padded_size: tuple[int, int], channels=slice(None),
                  out: np.ndarray | None = None) -> np.ndarray:
    """``(F, 2C, 2Cout)`` real, ``F = Hp * (Wp//2 + 1)``: per frequency the block matrix
    ``[[Kr, -Ki], [Ki, Kr]]`` of ``conj(K)``, where ``K`` is the 2-D real DFT of the
    ``(kh, kw, C, Cout)`` kernel taps zero-padded to ``(Hp, Wp)``. A split spectrum
    times it is ``X conj(K)`` (the forward); times its transpose, ``DY K^T`` (the input
    gradient).

    Only ``kh*kw`` taps are nonzero: per input channel, ``Kr`` and ``Ki`` are one
    ``(F, kh*kw) @ (kh*kw, Cout)`` GEMM each, written into their blocks in place. With
    ``out``, only the input ``channels`` are computed (blocks of channels are
    independent).
    """
    kh, kw, c, cout = w_taps.shape
    hp, wp = padded_size
    freqs = hp * (wp // 2 + 1)
    if out is None:
        out = np.empty((freqs, 2 * c, 2 * cout), dtype=w_taps.dtype)
    lo, hi, _ = channels.indices(c)
    e_real, e_imag = _kernel_dft((hp, wp), (kh, kw), w_taps.dtype)
    taps = w_taps[:, :, lo:hi].reshape(kh * kw, hi - lo, cout).transpose(1, 0, 2)
    blocks = out.reshape(freqs, 2, c, 2, cout)[:, :, lo:hi]
    real, imag = blocks[:, 0, :, 0], blocks[:, 1, :, 0]
    # (C', F, Cout) views of the left blocks: one GEMM per channel into each.
    np.matmul(e_real, taps, out=real.transpose(1, 0, 2))
    np.matmul(e_imag, taps, out=imag.transpose(1, 0, 2))
    blocks[:, 1, :, 1] = real
    np.negative(imag, out=blocks[:, 0, :, 1])
    return out


def forward_block(x_b: np.ndarray, padded_size, offset, k_matrix: np.ndarray, bias,
                  y_b: np.ndarray, x_spectrum: np.ndarray | None = None) -> None:
    """Write ``y_b (n, Ho, Wo, Cout)`` (plus ``bias (Cout,)`` unless None) for the images
    ``x_b (n, h, w, C)`` at ``offset`` in their zero-padded ``padded_size`` grid (the
    padded block itself, offset 0, for other padding modes); ``k_matrix`` is
    :func:`kernel_matrix`'s. The images' split spectrum goes to ``x_spectrum`` when
    given (the backward reads it there).
    """
    n, _, _, _ = x_b.shape
    out_h, out_w, cout = y_b.shape[1:]
    hp, wp = padded_size
    spec = spectrum(x_b, padded_size, offset, out=x_spectrum)
    product = np.empty((n, hp, wp // 2 + 1, 2, cout), dtype=spec.dtype)
    np.matmul(_per_frequency(spec), k_matrix, out=_per_frequency(product))
    inverse(product, wp, slice(0, out_h), slice(0, out_w), out=y_b)
    if bias is not None:
        y_b += bias


def backward_products(x_spectrum: np.ndarray, d_spectrum: np.ndarray, k_matrix: np.ndarray,
                      freqs: slice, g: np.ndarray, dx_spectrum: np.ndarray | None) -> None:
    """Backward, second phase, the frequencies ``freqs`` of the whole batch, from the
    split spectra of the input (the forward's) and of ``dy`` zero-padded to the grid:
    ``g[f] = [Xr Xi]^T [Dr Di]`` into ``g (F, 2C, 2Cout)``, one GEMM per frequency with
    the batch as its inner dimension (its four blocks combine into ``conj(X)^T DY`` in
    :func:`weight_gradient`); unless ``dx_spectrum`` is None, its frequencies ``freqs``
    are then set to the split ``DY K^T``, the padded input gradient's spectrum."""
    x_f = _per_frequency(x_spectrum)[freqs]          # (f, N, 2C)
    d_f = _per_frequency(d_spectrum)[freqs]          # (f, N, 2Cout)
    np.matmul(x_f.transpose(0, 2, 1), d_f, out=g[freqs])
    if dx_spectrum is not None:
        np.matmul(d_f, k_matrix[freqs].transpose(0, 2, 1),
                  out=_per_frequency(dx_spectrum)[freqs])


def input_gradient_block(dx_spectrum_b: np.ndarray, width: int, dxp_b: np.ndarray,
                         rows: slice = slice(None), cols: slice = slice(None)) -> None:
    """Backward, third phase, one block of images: the padded input gradient ``dxp_b (n,
    Hp, Wp, C)`` from its split spectrum on a grid ``width`` columns wide. ``rows``,
    ``cols``: the part of ``dxp_b`` that is needed (zero padding drops the border), at
    the same positions in the grid; only that is written."""
    inverse(dx_spectrum_b, width, rows, cols, out=dxp_b[:, rows, cols])


def weight_gradient(g: np.ndarray, padded_size, kernel, channels=slice(None),
                    out: np.ndarray | None = None) -> np.ndarray:
    """``(kh, kw, C, Cout)`` weight taps from :func:`backward_products`' summed ``g (F,
    2C, 2Cout)``; with ``out``, only the input ``channels`` are computed, into its slice.

    ``g``'s blocks give ``P = conj(X)^T DY = (g00 + g11) + i (g01 - g10)`` per frequency,
    and ``dW = irfft2(conj(P))`` evaluated only at the ``kh*kw`` taps kept: an inverse
    DFT matrix along H, then along W the half spectrum weighted as ``irfft`` does, real
    part only. Since ``Re(z) = Re(conj(z))``, conjugated matrices applied to ``P`` give
    the taps of ``conj(P)`` without a pass over it. ``P`` stays split (real parts, then
    imaginary parts) and both inverse DFTs are real GEMMs on it
    (:func:`_weight_inverse_h`, :func:`_weight_inverse_w`): no complex array is built.
    """
    hp, wp = padded_size
    kh, kw = kernel
    freqs, c2, cout2 = g.shape
    c, cout = c2 // 2, cout2 // 2
    fw = wp // 2 + 1
    lo, hi, _ = channels.indices(c)
    if out is None:
        out = np.empty((kh, kw, c, cout), dtype=g.dtype)
    blocks = g.reshape(freqs, 2, c, 2, cout)[:, :, lo:hi]
    # Work arrays of the calling thread (fresh ones would fault in their pages each call).
    split = scratch("fft.weight_split", (2, freqs, hi - lo, cout), g.dtype)
    np.add(blocks[:, 0, :, 0], blocks[:, 1, :, 1], out=split[0])
    np.subtract(blocks[:, 0, :, 1], blocks[:, 1, :, 0], out=split[1])
    # Along H: rows (tap, real/imaginary), so that each tap's W line reshapes for free.
    along_h = scratch("fft.weight_along_h", (2 * kh, fw * (hi - lo) * cout), g.dtype)
    np.matmul(_weight_inverse_h(hp, kh, g.dtype), split.reshape(2 * hp, -1), out=along_h)
    along_h = along_h.reshape(kh, 2 * fw, (hi - lo) * cout)
    target = out.reshape(kh, kw, c * cout)[:, :, lo * cout:hi * cout]
    np.matmul(_weight_inverse_w(wp, kw, g.dtype), along_h, out=target)
    return out
