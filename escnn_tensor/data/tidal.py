r"""The tidal tensor of a mass density in a periodic box (a scalar -> symmetric 2-tensor task).

With the potential of :mod:`escnn_tensor.data.gravity` (:math:`\nabla^2\phi = \rho - \bar\rho`, unit pixel
spacing, spectral derivatives with the Nyquist wavenumber zeroed), the tidal tensor is the Hessian

.. math::

    T_{ij} = \partial_i \partial_j \phi = -\partial_i g_j, \qquad \mathrm{tr}\, T = \rho - \bar\rho,

a symmetric true 2-tensor field (``tensor_rep(gspace, 2, +1)``; escnn channels ``(T_xx, T_xy, T_yx, T_yy)``).
The densities are :func:`escnn_tensor.data.gravity.point_mass_density` (band limited, so the trace identity
holds to round-off).
"""
from __future__ import annotations

import torch

from ..groups import escnn_to_grid
from . import spectral

__all__ = ["tidal_tensor", "tidal_from_escnn_density"]


def tidal_tensor(density: torch.Tensor) -> torch.Tensor:
    r""":math:`T_{ij} = \partial_i\partial_j\phi` with :math:`\nabla^2\phi = \rho - \bar\rho`, 2D periodic.

    Args:
        density: ``(..., N, N)`` in grid layout (axis -2 = x, axis -1 = y), real floating point.

    Returns:
        ``(..., N, N, 2, 2)`` in grid layout, ``[..., i, j]`` = :math:`T_{ij}`, same dtype.
    """
    return spectral.hessian(spectral.solve_poisson(density, 2), 2)


def tidal_from_escnn_density(density: torch.Tensor) -> torch.Tensor:
    """:func:`tidal_tensor` on escnn layout: ``(B, 1, N, N)`` (axes -y, x) -> ``(B, 4, N, N)`` (xx, xy, yx, yy)."""
    if not isinstance(density, torch.Tensor) or density.dim() != 4 or density.shape[1] != 1:
        shape = tuple(density.shape) if isinstance(density, torch.Tensor) else type(density).__name__
        raise ValueError(f"density must have shape (B, 1, N, N) in escnn layout, got {shape}")
    return spectral.to_escnn(tidal_tensor(escnn_to_grid(density[:, 0], 2)), 2, 2)
