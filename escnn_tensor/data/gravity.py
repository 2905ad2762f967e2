r"""Gravity in a periodic box: point-mass densities and their gravitational fields (a scalar -> vector task).

The task: from a scalar mass-density image :math:`\rho` predict the vector gravitational field :math:`g`
(registered as ``escnn_tensor.data.get_task("gravity")``).

Physics and conventions
-----------------------
* The box is periodic, ``size x size`` pixels, unit pixel spacing, in 2D.
* Units are chosen so that Poisson's equation reads :math:`\nabla^2 \phi = \rho - \bar\rho` (the mean is
  removed, as it must be in a periodic box) and the field is :math:`g = -\nabla \phi`; so Gauss's law is
  :math:`\nabla \cdot g = -(\rho - \bar\rho)` and :math:`g` is curl free.
* The derivatives are *spectral*: :math:`\partial_j \leftrightarrow i\,k_j` with
  :math:`k_j = 2\pi\,\mathrm{fftfreq}(size)`, **with the Nyquist wavenumber set to 0**. (For even ``size`` the
  Nyquist mode :math:`k = -\pi` is its own mirror image, so ``i k`` there cannot be odd under reflection;
  zeroing it makes the operators commute with every symmetry of the square grid. Taking the real part of the
  inverse FFT of a real field would drop that term too; zeroing it says so explicitly.) Poisson is solved with the
  same operators, :math:`\hat\phi = -\hat\rho / (k_x^2 + k_y^2)`, so divergence, curl and Laplacian are exactly
  consistent. The densities made here are band limited (their Nyquist modes are zero), so Gauss's law holds to
  round-off. These operators are those of :mod:`escnn_tensor.data.spectral`, shared by every task.
* Density: a few point masses on random pixels with random positive masses, smoothed by a periodic Gaussian
  of width ``smoothing`` pixels (applied in Fourier space), then projected off the Nyquist modes.

Array layouts
-------------
Two layouts appear (see :mod:`escnn_tensor.groups`):

* *grid layout* (the physics functions here): a density is ``(..., N, N)`` with array axis ``-2`` along
  **+x** and axis ``-1`` along **+y**; a vector field is ``(..., N, N, 2)`` with component 0 = :math:`g_x`,
  component 1 = :math:`g_y`.
* *escnn layout* (the network; :func:`make_dataset`): ``(B, C, N, N)`` with spatial axes ``(-y, x)``
  (row index grows downwards, column index to the right). The density is one channel (``C = 1``, the trivial
  representation); the field is a vector field, ``C = 2`` with channel 0 = :math:`g_x` and channel 1 =
  :math:`g_y`, which is ``tensor_rep(gspace, 1, +1)`` and transforms by ``group_matrix``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch
from escnn.gspaces import GSpace
from escnn.nn import FieldType

from ..groups import escnn_to_grid, grid_to_escnn
from ..representations import tensor_type
from . import spectral
from .spectral import derivative_wavenumbers, gradient, nyquist_free, solve_poisson

__all__ = [
    "derivative_wavenumbers",
    "point_mass_density",
    "gravitational_field",
    "divergence",
    "curl",
    "GravityData",
    "make_dataset",
    "density_type",
    "field_type",
    "field_from_escnn_density",
]


# ----------------------------------------------------------------------------------------------------------------
# physics (grid layout, float64)
# ----------------------------------------------------------------------------------------------------------------


def _check_image(x: torch.Tensor, n_trailing: int, name: str) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() < 2 + n_trailing:
        raise ValueError(f"{name} must have at least {2 + n_trailing} axes, got shape {tuple(x.shape)}")
    n1, n2 = x.shape[x.dim() - n_trailing - 2 : x.dim() - n_trailing]
    if n1 != n2:
        raise ValueError(f"{name} must be a square image (N, N), got spatial shape ({n1}, {n2})")
    if n_trailing == 1 and x.shape[-1] != 2:
        raise ValueError(f"{name} must be a 2D vector field with a last axis of size 2, got shape {tuple(x.shape)}")
    return int(n1)


def point_mass_density(
    n_samples: int,
    size: int = 32,
    n_masses: Tuple[int, int] = (3, 8),
    mass_range: Tuple[float, float] = (0.5, 1.5),
    smoothing: Union[float, Tuple[float, float]] = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""Random smoothed point-mass densities, shape ``(n_samples, size, size)``, grid layout, float64.

    Each sample has between ``n_masses[0]`` and ``n_masses[1]`` (inclusive) point masses on random pixels
    (repeats add up), with masses uniform in ``mass_range``; the image is convolved with a periodic Gaussian of
    standard deviation ``smoothing`` pixels (``0`` for none; a pair ``(s_x, s_y)`` for an elongated Gaussian,
    which gives data with a preferred orientation) and its Nyquist modes are removed (so that it is in the range
    of the spectral operators, see the module docs). Total mass is conserved.
    """
    lo, hi = n_masses
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not (1 <= lo <= hi):
        raise ValueError(f"n_masses must be (min, max) with 1 <= min <= max, got {n_masses!r}")
    sx, sy = (smoothing, smoothing) if np.isscalar(smoothing) else tuple(smoothing)
    if not (sx >= 0 and sy >= 0):
        raise ValueError(f"smoothing must be >= 0 pixels (or a pair of them), got {smoothing!r}")
    counts = torch.randint(lo, hi + 1, (n_samples,), generator=generator)
    points = torch.zeros(n_samples, size * size, dtype=torch.float64)
    for b in range(n_samples):
        pix = torch.randint(0, size * size, (int(counts[b]),), generator=generator)
        m = mass_range[0] + (mass_range[1] - mass_range[0]) * torch.rand(
            int(counts[b]), dtype=torch.float64, generator=generator
        )
        points[b].index_add_(0, pix, m)
    rho_hat = torch.fft.fft2(points.reshape(n_samples, size, size))
    k2 = (2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64)) ** 2
    gauss = torch.exp(-0.5 * (sx**2 * k2[:, None] + sy**2 * k2[None, :]))  # grid layout: axis -2 is x
    rho_hat = rho_hat * gauss * nyquist_free(size, 2)
    return torch.fft.ifft2(rho_hat).real


def gravitational_field(density: torch.Tensor) -> torch.Tensor:
    r"""The field :math:`g = -\nabla\phi` with :math:`\nabla^2\phi = \rho - \bar\rho` in the periodic box.

    Args:
        density: ``(..., N, N)`` in grid layout (axis -2 = x, axis -1 = y), real floating point.

    Returns:
        ``(..., N, N, 2)`` in grid layout, last axis ``(g_x, g_y)``, same dtype. Spectral solve, see the
        module docs (modes that the derivative cannot see, i.e. the mean and the Nyquist modes, give no field).
    """
    _check_image(density, 0, "density")
    return -gradient(solve_poisson(density, 2), 2)


def divergence(field: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_x g_x + \partial_y g_y` of a ``(..., N, N, 2)`` grid-layout field, spectrally."""
    _check_image(field, 1, "field")
    return spectral.divergence(field)


def curl(field: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_x g_y - \partial_y g_x` of a ``(..., N, N, 2)`` grid-layout field, spectrally."""
    _check_image(field, 1, "field")
    return spectral.curl(field)


# ----------------------------------------------------------------------------------------------------------------
# data set in escnn layout
# ----------------------------------------------------------------------------------------------------------------


def density_type(gspace: GSpace) -> FieldType:
    """The input type: one scalar field (the trivial representation)."""
    return tensor_type(gspace, [(0, 1, 1)])


def field_type(gspace: GSpace) -> FieldType:
    """The output type: one vector field (``tensor_rep(gspace, 1, +1)``; channel 0 = x, channel 1 = y)."""
    return tensor_type(gspace, [(1, 1, 1)])


def field_from_escnn_density(density: torch.Tensor) -> torch.Tensor:
    """:func:`gravitational_field` on escnn layout: ``(B, 1, N, N)`` (axes -y, x) -> ``(B, 2, N, N)`` (gx, gy)."""
    if density.dim() != 4 or density.shape[1] != 1:
        raise ValueError(f"density must have shape (B, 1, N, N) in escnn layout, got {tuple(density.shape)}")
    rho = escnn_to_grid(density[:, 0], 2)
    return spectral.to_escnn(gravitational_field(rho), 2, 1)


@dataclass
class GravityData:
    """A data set in escnn layout, float64.

    Attributes:
        density: ``(B, 1, N, N)``, axes ``(-y, x)``.
        field: ``(B, 2, N, N)``, channel 0 = :math:`g_x`, channel 1 = :math:`g_y`.
    """

    density: torch.Tensor
    field: torch.Tensor

    def __len__(self) -> int:
        return self.density.shape[0]


def make_dataset(n_samples: int, size: int = 32, generator: Optional[torch.Generator] = None, **density_kwargs) -> GravityData:
    """``n_samples`` densities (:func:`point_mass_density`) and their fields, in escnn layout, float64."""
    rho = point_mass_density(n_samples, size, generator=generator, **density_kwargs)
    density = grid_to_escnn(rho, 2)[:, None].contiguous()
    return GravityData(density=density, field=field_from_escnn_density(density))

