r"""Subgrid-scale stress of filtered 2D incompressible velocity fields (a vector -> symmetric 2-tensor task).

A high-resolution velocity :math:`u` on an ``N_f = factor * N`` periodic grid is filtered and sampled on the
``N`` grid:

.. math::

    \bar f = \overline{f}(X) = \sum_y K(X - y)\, f(y), \qquad
    \tau_{ij} = \overline{u_i u_j} - \bar u_i\, \bar u_j,

where the filter :math:`K` is a Gaussian followed by the average over the ``factor x factor`` fine cells of each
coarse cell. The input of the task is :math:`\bar u` (a vector field on the coarse grid), the target the full
subgrid stress :math:`\tau` (a symmetric true 2-tensor field, escnn channels ``(xx, xy, yx, yy)``).

Filter. The Gaussian is the sampled, periodically wrapped kernel of
:func:`escnn_tensor.data.spectral.periodic_gaussian_kernel` (applied by FFT; its transfer function is the
periodised Gaussian :math:`\approx e^{-\sigma^2 k^2/2}`), with :math:`\sigma = \Delta/\sqrt{12}` (the LES
convention: the variance of a top hat of width :math:`\Delta`), :math:`\Delta` = ``filter_width`` coarse pixels.
Both factors have **non-negative weights summing to 1**, so :math:`a^T\tau a` is the variance of
:math:`a\cdot u` under the weights :math:`K(X - \cdot)`: :math:`\tau` is positive semi-definite exactly (up to
round-off). (A Gaussian *truncated* in Fourier space to the grid's wavenumbers has slightly negative tails in
real space, and would give PSD only approximately.) Both factors are invariant under the symmetries of the grid,
and the coarse cells (fine pixels ``factor*I ... factor*I + factor - 1``) are centred so that the coarse grid
centre is the fine grid centre: the map fine :math:`u` -> :math:`(\bar u, \tau)` is D4-equivariant for every
``factor`` (a plain subsampling at every ``factor``-th fine pixel would not be, for even ``factor``).

Sources of the high-resolution fields (``source``):

* ``"random"``: Gaussian random divergence-free fields :math:`u = (\partial_y\psi, -\partial_x\psi)` with a
  turbulent-like energy spectrum :math:`E(m) \propto m^{s}` (``energy_slope`` :math:`s`, default Kolmogorov's
  :math:`-5/3`) for :math:`1 \le |m| \le N_f/2`, unit rms.
* ``"navier-stokes"``: such a field (band-limited to the 2/3 dealiasing mask) evolved by the unforced
  :class:`escnn_tensor.data.navier_stokes.VorticitySolver` on the fine grid for ``ns_time`` box time units, which
  makes the field non-Gaussian (vortices, filaments); about 100x slower.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..groups import is_integer
from . import spectral
from .navier_stokes import VorticitySolver

__all__ = [
    "gaussian_sigma",
    "coarse_filter",
    "subgrid_stress",
    "random_velocity",
    "navier_stokes_velocity",
    "stress_from_escnn_velocity",
]


def _check_factor(factor) -> int:
    if not is_integer(factor) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1 (fine pixels per coarse pixel), got {factor!r}")
    return int(factor)


def gaussian_sigma(filter_width: float, factor: int) -> float:
    r"""The Gaussian's standard deviation in *fine* pixels: :math:`\Delta\cdot\mathrm{factor}/\sqrt{12}`."""
    if not (isinstance(filter_width, (int, float)) and filter_width > 0):
        raise ValueError(f"filter_width must be a positive number of coarse pixels, got {filter_width!r}")
    return float(filter_width) * _check_factor(factor) / math.sqrt(12)


def coarse_filter(f: torch.Tensor, factor: int, filter_width: float = 2.0) -> torch.Tensor:
    r"""The filter :math:`\bar f` of scalar fields ``(..., N_f, N_f)`` (grid layout) on the coarse grid.

    Periodic Gaussian (:func:`gaussian_sigma`) then the mean over each ``factor x factor`` cell. Returns
    ``(..., N_f / factor, N_f / factor)``; ``N_f`` must be a multiple of ``factor``.
    """
    factor = _check_factor(factor)
    n = spectral.check_field(f, 2, 0, "f")
    if n % factor:
        raise ValueError(f"the fine grid side {n} must be a multiple of factor={factor}")
    kernel = spectral.periodic_gaussian_kernel(n, 2, gaussian_sigma(filter_width, factor), f.dtype)
    smooth = spectral.ifft(spectral.fft(f, 2) * spectral.fft(kernel, 2).real, 2)
    nc = n // factor
    return smooth.reshape(smooth.shape[:-2] + (nc, factor, nc, factor)).mean(dim=(-3, -1))


def subgrid_stress(u: torch.Tensor, factor: int, filter_width: float = 2.0) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Filtered velocity and subgrid stress of a fine velocity ``(..., N_f, N_f, 2)`` (grid layout).

    Returns ``(u_bar, tau)``: ``(..., N, N, 2)`` and ``(..., N, N, 2, 2)`` with ``N = N_f / factor``,
    :math:`\tau_{ij} = \overline{u_i u_j} - \bar u_i \bar u_j` (symmetric, positive semi-definite).
    """
    spectral.check_field(u, 2, 1, "u")
    ux, uy = u[..., 0], u[..., 1]
    f = coarse_filter(torch.stack([ux, uy, ux * ux, ux * uy, uy * uy]), factor, filter_width)
    bx, by, bxx, bxy, byy = f
    txx, txy, tyy = bxx - bx * bx, bxy - bx * by, byy - by * by
    tau = torch.stack([torch.stack([txx, txy], -1), torch.stack([txy, tyy], -1)], -2)
    return torch.stack([bx, by], -1), tau


def random_velocity(
    n_samples: int,
    size: int,
    generator: Optional[torch.Generator] = None,
    energy_slope: float = -5.0 / 3.0,
    cutoff: Optional[float] = None,
) -> torch.Tensor:
    r"""Random divergence-free velocities with :math:`E(m)\propto m^{s}`, ``(n_samples, N, N, 2)`` grid layout.

    :math:`s` = ``energy_slope`` (default :math:`-5/3`; :math:`-3` is the 2D enstrophy-cascade range). In 2D
    :math:`E(m) \sim 2\pi m |\hat u|^2`, so the stream function gets Fourier amplitude :math:`|m|^{(s-3)/2}` for
    :math:`1 \le |m| \le` ``cutoff`` (default ``N/2``); :math:`u = (\partial_y\psi, -\partial_x\psi)`, rescaled
    to unit rms (:math:`\langle |u|^2 \rangle = 1`). One draw per sample, in order.
    """
    cutoff = size / 2 if cutoff is None else cutoff
    exponent = (energy_slope - 3.0) / 2.0

    def amplitude(m: torch.Tensor) -> torch.Tensor:
        return torch.where((m >= 1) & (m <= cutoff), m.clamp(min=1) ** exponent, 0.0)

    psi = torch.cat([spectral.random_field((1,), size, 2, amplitude, generator) for _ in range(n_samples)])
    g = spectral.gradient(psi, 2)
    u = torch.stack([g[..., 1], -g[..., 0]], dim=-1)
    return u / (u * u).sum(-1).mean(dim=(-2, -1))[..., None, None, None].sqrt()


def navier_stokes_velocity(
    n_samples: int,
    size: int,
    generator: Optional[torch.Generator] = None,
    energy_slope: float = -5.0 / 3.0,
    viscosity: float = 1e-4,
    time: float = 0.25,
) -> torch.Tensor:
    """:func:`random_velocity` (cut inside the dealiasing mask, box units) evolved by the unforced solver."""
    solver = VorticitySolver(size, viscosity=viscosity, forcing_amplitude=0.0, dt=0.1 / size)
    u0 = random_velocity(n_samples, size, generator, energy_slope, cutoff=size / 3 - 1e-9)
    return solver.velocity(solver.evolve(solver.vorticity(u0), time))


def stress_from_escnn_velocity(
    u: torch.Tensor, factor: int, filter_width: float = 2.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`subgrid_stress` on escnn layout: ``(B, 2, N_f, N_f)`` -> ``(B, 2, N, N)``, ``(B, 4, N, N)``."""
    u_bar, tau = subgrid_stress(spectral.from_escnn(u, 2, 1), factor, filter_width)
    return spectral.to_escnn(u_bar, 2, 1), spectral.to_escnn(tau, 2, 2)
