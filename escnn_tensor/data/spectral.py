r"""Spectral calculus on the periodic grid, shared by every data set of :mod:`escnn_tensor.data`.

All functions work in the *grid layout* (array axis ``i`` along :math:`+x_i`, see :mod:`escnn_tensor.groups`):
a scalar field is ``(..., N, ..., N)`` (``d`` spatial axes), a vector field ``(..., N, ..., N, d)`` and an
order-``k`` tensor field carries ``k`` trailing axes of size ``d``.

Derivatives are spectral, :math:`\partial_j \leftrightarrow i k_j`, with :math:`k_j = 2\pi\,\mathrm{fftfreq}(N)
/ h` (``h`` = grid spacing, 1 pixel unless given) and **the Nyquist wavenumber set to 0**: for even ``N`` the mode
:math:`k=-\pi/h` is its own mirror image, so :math:`i k` cannot be odd under a reflection there; with it zeroed
every operator here (gradient, divergence, curl, Hessian, inverse Laplacian) commutes exactly with all
symmetries of the square / cubic grid (and with translations), and they are mutually consistent
(``divergence(gradient(f)) == laplacian``, ``curl(gradient(f)) == 0``, ``divergence(curl(v)) == 0`` to
round-off). Fields without Nyquist content (:func:`nyquist_free`) lose nothing by this.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from ..groups import check_dimension, escnn_to_grid, grid_to_escnn, is_integer

__all__ = [
    "derivative_wavenumbers",
    "wavevectors",
    "wavenumber_squared",
    "inverse_wavenumber_squared",
    "nyquist_free",
    "fft",
    "ifft",
    "gradient",
    "divergence",
    "curl",
    "hessian",
    "solve_poisson",
    "periodic_gaussian_kernel",
    "random_field",
    "check_field",
    "to_escnn",
    "from_escnn",
]


def _check_size(size, name: str = "size") -> int:
    if not is_integer(size) or size < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {size!r}")
    return int(size)


def derivative_wavenumbers(size: int, dtype: torch.dtype = torch.float64, spacing: float = 1.0) -> torch.Tensor:
    r"""The 1D wavenumbers of the spectral derivative, :math:`2\pi\,\mathrm{fftfreq}(size) / spacing`, Nyquist 0.

    Returns a tensor of shape ``(size,)`` in FFT order: :math:`\partial_x f = \mathrm{ifft}(i k\, \hat f)`.
    """
    size = _check_size(size)
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0, got {spacing!r}")
    k = 2 * math.pi * torch.fft.fftfreq(size, dtype=dtype) / spacing
    if size % 2 == 0:
        k[size // 2] = 0.0
    return k


def wavevectors(size: int, d: int, dtype: torch.dtype = torch.float64, spacing: float = 1.0) -> List[torch.Tensor]:
    """The ``d`` components of the derivative wavevector, each broadcastable to ``(size,) * d`` (grid layout).

    Component ``j`` varies along array axis ``j`` (the axis of :math:`x_j`); see :func:`derivative_wavenumbers`.
    """
    d = check_dimension(d)
    k = derivative_wavenumbers(size, dtype, spacing)
    return [k.reshape((1,) * j + (size,) + (1,) * (d - 1 - j)) for j in range(d)]


def wavenumber_squared(size: int, d: int, dtype: torch.dtype = torch.float64, spacing: float = 1.0) -> torch.Tensor:
    r""":math:`|k|^2 = \sum_j k_j^2` of :func:`wavevectors` as a ``(size,) * d`` tensor (the symbol of :math:`-\nabla^2`)."""
    return sum(kj**2 for kj in wavevectors(size, d, dtype, spacing))


def inverse_wavenumber_squared(
    size: int, d: int, dtype: torch.dtype = torch.float64, spacing: float = 1.0
) -> torch.Tensor:
    r""":math:`1/|k|^2` of :func:`wavenumber_squared`, and 0 where :math:`|k| = 0` (the symbol of :math:`-\nabla^{-2}`
    on fields without those modes: the mean and, for even ``N``, the all-Nyquist corner)."""
    k2 = wavenumber_squared(size, d, dtype, spacing)
    return torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)


def nyquist_free(size: int, d: int) -> torch.Tensor:
    """Boolean ``(size,) * d`` mask of the Fourier modes with no Nyquist index on any axis (all, for odd size)."""
    size, d = _check_size(size), check_dimension(d)
    ok = torch.ones(size, dtype=torch.bool)
    if size % 2 == 0:
        ok[size // 2] = False
    mask = ok
    for _ in range(d - 1):
        mask = mask[..., None] & ok
    return mask


def _spatial_dims(d: int, n_trailing: int) -> Tuple[int, ...]:
    return tuple(range(-d - n_trailing, -n_trailing)) if n_trailing else tuple(range(-d, 0))


def fft(x: torch.Tensor, d: int, n_trailing: int = 0) -> torch.Tensor:
    """The ``d``-dimensional FFT over the spatial axes that end ``n_trailing`` axes before the end of ``x``."""
    return torch.fft.fftn(x, dim=_spatial_dims(d, n_trailing))


def ifft(x: torch.Tensor, d: int, n_trailing: int = 0) -> torch.Tensor:
    """Real part of the inverse of :func:`fft` (the fields here are real)."""
    return torch.fft.ifftn(x, dim=_spatial_dims(d, n_trailing)).real


def check_field(x: torch.Tensor, d: int, n_trailing: int, name: str) -> int:
    """Validate a real grid-layout field with ``n_trailing`` axes of size ``d``; return its side ``N``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() < d + n_trailing:
        raise ValueError(
            f"{name} must have at least {d + n_trailing} axes ({d} spatial + {n_trailing} of size {d}), got shape "
            f"{tuple(x.shape)}"
        )
    if n_trailing and tuple(x.shape[x.dim() - n_trailing :]) != (d,) * n_trailing:
        raise ValueError(
            f"{name} must end in {n_trailing} axes of size {d} (tensor components), got shape {tuple(x.shape)}"
        )
    spatial = tuple(x.shape[x.dim() - n_trailing - d : x.dim() - n_trailing])
    if len(set(spatial)) != 1:
        raise ValueError(f"{name} must have {d} equal spatial sides (N,)*{d}, got spatial shape {spatial}")
    return int(spatial[0])


def _vector_dimension(v: torch.Tensor, name: str) -> int:
    if not isinstance(v, torch.Tensor) or v.dim() < 1 or v.shape[-1] not in (2, 3):
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{name} must be a vector field (..., N, ..., N, d) with d = 2 or 3, got {shape}")
    return int(v.shape[-1])


def gradient(f: torch.Tensor, d: int, spacing: float = 1.0) -> torch.Tensor:
    r""":math:`\nabla f` of a scalar field ``(..., N^d)``: returns ``(..., N^d, d)``, component ``j`` = :math:`\partial_j f`."""
    n = check_field(f, d, 0, "f")
    ks = wavevectors(n, d, f.dtype, spacing)
    fh = fft(f, d)
    return torch.stack([ifft(1j * kj * fh, d) for kj in ks], dim=-1)


def divergence(v: torch.Tensor, spacing: float = 1.0) -> torch.Tensor:
    r""":math:`\nabla\cdot v = \sum_j \partial_j v_j` of a vector field ``(..., N^d, d)`` (``d`` from the last axis)."""
    d = _vector_dimension(v, "v")
    n = check_field(v, d, 1, "v")
    ks = wavevectors(n, d, v.dtype, spacing)
    vh = fft(v, d, n_trailing=1)
    return ifft(sum(1j * kj * vh[..., j] for j, kj in enumerate(ks)), d)


def curl(v: torch.Tensor, spacing: float = 1.0) -> torch.Tensor:
    r"""The curl of a vector field ``(..., N^d, d)``.

    ``d = 2``: the pseudoscalar :math:`\partial_x v_y - \partial_y v_x`, shape ``(..., N, N)``.
    ``d = 3``: the pseudovector :math:`\nabla \times v`, shape ``(..., N, N, N, 3)``.
    """
    d = _vector_dimension(v, "v")
    n = check_field(v, d, 1, "v")
    ks = wavevectors(n, d, v.dtype, spacing)
    vh = fft(v, d, n_trailing=1)
    if d == 2:
        return ifft(1j * ks[0] * vh[..., 1] - 1j * ks[1] * vh[..., 0], 2)
    comps = [(1, 2), (2, 0), (0, 1)]  # (curl v)_i = d_j v_l - d_l v_j for cyclic (i, j, l)
    return torch.stack([ifft(1j * ks[j] * vh[..., l] - 1j * ks[l] * vh[..., j], 3) for j, l in comps], dim=-1)


def hessian(f: torch.Tensor, d: int, spacing: float = 1.0) -> torch.Tensor:
    r""":math:`\partial_i \partial_j f` of a scalar field ``(..., N^d)``: returns ``(..., N^d, d, d)`` (symmetric)."""
    n = check_field(f, d, 0, "f")
    ks = wavevectors(n, d, f.dtype, spacing)
    fh = fft(f, d)
    rows = []
    for i in range(d):
        rows.append(torch.stack([ifft(-ks[i] * ks[j] * fh, d) for j in range(d)], dim=-1))
    return torch.stack(rows, dim=-2)


def solve_poisson(f: torch.Tensor, d: int, spacing: float = 1.0) -> torch.Tensor:
    r"""The periodic solution :math:`\phi` of :math:`\nabla^2\phi = f - \bar f` with :math:`\bar\phi = 0`.

    ``f`` is ``(..., N^d)`` in grid layout. The Laplacian is :math:`-|k|^2` of :func:`wavevectors`, so
    ``divergence(gradient(phi)) == f - mean(f)`` to round-off whenever ``f`` has no Nyquist content; modes with
    :math:`|k| = 0` (the mean, and for even ``N`` the all-Nyquist corner) get :math:`\hat\phi = 0`.
    """
    n = check_field(f, d, 0, "f")
    return ifft(-fft(f, d) * inverse_wavenumber_squared(n, d, f.dtype, spacing), d)


def periodic_gaussian_kernel(size: int, d: int, sigma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The sampled, periodically wrapped Gaussian :math:`\propto \exp(-|n|^2 / 2\sigma^2)`, centred at index 0.

    Shape ``(size,) * d``, entries >= 0 summing to 1; ``|n|`` is the periodic distance (``min(n, size - n)`` per axis),
    so the kernel is invariant under every symmetry of the grid that fixes the origin. Convolving with it (by FFT)
    is a positive, D4 / :math:`O_h`-symmetric filter; its transfer function ``fft(kernel).real`` is the
    periodised Gaussian :math:`\approx \exp(-\sigma^2 |k|^2 / 2)`. ``sigma`` is in pixels.
    """
    size, d = _check_size(size), check_dimension(d)
    if not (isinstance(sigma, (int, float, np.floating)) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    n = torch.arange(size, dtype=dtype)
    dist2 = torch.minimum(n, size - n) ** 2
    g1 = torch.exp(-0.5 * dist2 / float(sigma) ** 2)
    g = g1
    for _ in range(d - 1):
        g = g[..., None] * g1
    return g / g.sum()


def random_field(
    shape: Tuple[int, ...],
    size: int,
    d: int,
    amplitude: Callable[[torch.Tensor], torch.Tensor],
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Gaussian random fields with an isotropic spectrum: white noise filtered by ``amplitude(|m|)``.

    Args:
        shape: leading shape (e.g. ``(B,)`` or ``(B, d)`` for the components of a vector field, which are then the
            *last* axis of the result).
        size, d: grid side and dimension.
        amplitude: maps the integer wavenumber magnitude :math:`|m|` (a float tensor, ``|m| = |k| N / 2\pi``) to
            the Fourier amplitude (0 removes a mode). Depending on :math:`|m|` only, the filter is invariant under
            the symmetries of the grid, so the distribution of the fields is too.
        generator: a ``torch.Generator`` (the only source of randomness).

    Returns:
        ``shape + (size,) * d`` for ``shape = (B,)``; with ``len(shape) == 2`` the second entry is moved last,
        ``(B,) + (size,) * d + (shape[1],)``. Nyquist modes are removed (see the module docs).
    """
    size, d = _check_size(size), check_dimension(d)
    if len(shape) not in (1, 2):
        raise ValueError(f"shape must be (B,) or (B, components), got {tuple(shape)}")
    noise = torch.randn(tuple(shape) + (size,) * d, dtype=dtype, generator=generator)
    m = torch.fft.fftfreq(size, d=1.0 / size, dtype=dtype)
    m2 = sum((m.reshape((1,) * j + (size,) + (1,) * (d - 1 - j))) ** 2 for j in range(d))
    filt = amplitude(m2.sqrt()) * nyquist_free(size, d)
    out = ifft(fft(noise, d) * filt, d)
    if len(shape) == 2:
        out = out.movedim(1, -1)
    return out.contiguous()


def to_escnn(x: torch.Tensor, d: int, k: int) -> torch.Tensor:
    """An order-``k`` tensor field ``(B, N^d, d^k)`` in grid layout -> escnn layout ``(B, d**k, N^d)``.

    The ``d**k`` channels are the tensor components in row-major order over ``(x, y[, z])`` (the natural basis of
    :func:`escnn_tensor.tensor_rep`); spatial axes become ``(-y, x)`` / ``(-z, -y, x)``. Exact (re-indexing).
    """
    if x.dim() != 1 + d + k or tuple(x.shape[1 + d :]) != (d,) * k:
        raise ValueError(
            f"expected an order-{k} tensor field of shape (B,) + (N,)*{d} + ({d},)*{k} in grid layout, got "
            f"{tuple(x.shape)}"
        )
    B = x.shape[0]
    spatial = tuple(x.shape[1 : 1 + d])
    flat = x.reshape((B,) + spatial + (d**k,))
    return grid_to_escnn(flat, d, n_trailing=1).movedim(-1, 1).contiguous()


def from_escnn(x: torch.Tensor, d: int, k: int) -> torch.Tensor:
    """The inverse of :func:`to_escnn`: ``(B, d**k, N^d)`` in escnn layout -> ``(B, N^d, d^k)`` in grid layout."""
    if x.dim() != 2 + d or x.shape[1] != d**k:
        raise ValueError(
            f"expected an order-{k} tensor field of shape (B, {d**k}, N{', N' * (d - 1)}) in escnn layout, got "
            f"{tuple(x.shape)}"
        )
    g = escnn_to_grid(x.movedim(1, -1), d, n_trailing=1)
    return g.reshape(g.shape[:-1] + (d,) * k)
