r"""Magnetostatics in a periodic 3D box: current density -> magnetic field (a vector -> pseudovector task).

Units with :math:`\mu_0 = 1` and unit pixel spacing. For a divergence-free current density :math:`J` (a true
vector field) the magnetic field :math:`B` (a **pseudovector** field: ``tensor_rep(gspace, 1, -1)``) solves

.. math::

    \nabla\times B = J,\qquad \nabla\cdot B = 0 \quad\Longleftrightarrow\quad
    \hat B(k) = \frac{i k \times \hat J(k)}{|k|^2}

(Biot-Savart in Fourier space; the mean of :math:`B` is set to 0). The derivatives are those of
:mod:`escnn_tensor.data.spectral` (Nyquist wavenumber zeroed), so with :math:`J = \nabla\times W` made by the same
operators, :math:`\nabla\cdot J = 0`, :math:`\nabla\times B = J` and :math:`\nabla\cdot B = 0` hold to round-off.
The map is a Fourier multiplier built from :math:`k` by a cross product, so it commutes with all 48 elements of
:math:`O_h`, with :math:`B` picking up :math:`\det M` (the reason it is a pseudovector).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from . import spectral

__all__ = ["random_current", "magnetic_field", "field_from_escnn_current"]


def random_current(
    n_samples: int, size: int, generator: Optional[torch.Generator] = None, smoothing: float = 1.5
) -> torch.Tensor:
    r"""Random smooth divergence-free currents :math:`J = \nabla\times W`, ``(n_samples, N, N, N, 3)`` grid layout.

    :math:`W` is white noise smoothed by a Gaussian of ``smoothing`` pixels (Fourier amplitude
    :math:`\exp(-\tfrac12 (2\pi\,\mathrm{smoothing}\,|m|/N)^2)`), one draw per sample from ``generator``; each
    :math:`J` is rescaled to unit root-mean-square.
    """

    def amplitude(m: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * (2 * math.pi * smoothing * m / size) ** 2)

    w = torch.cat([spectral.random_field((1, 3), size, 3, amplitude, generator) for _ in range(n_samples)])
    j = spectral.curl(w)
    return j / (j * j).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt()


def magnetic_field(current: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat B = i k\times\hat J / |k|^2` (zero mean), ``(..., N, N, N, 3)`` -> ``(..., N, N, N, 3)``, grid layout.

    For a divergence-free ``current`` this is the periodic solution of :math:`\nabla\times B = J`,
    :math:`\nabla\cdot B = 0`; for any input it is :math:`B = \nabla\times(-\nabla^{-2} J)`.
    """
    n = spectral.check_field(current, 3, 1, "current")
    k = spectral.wavevectors(n, 3, current.dtype)
    inv_k2 = spectral.inverse_wavenumber_squared(n, 3, current.dtype)
    jh = spectral.fft(current, 3, n_trailing=1)
    cyc = [(1, 2), (2, 0), (0, 1)]  # (k x J)_i = k_a J_b - k_b J_a for cyclic (i, a, b)
    return torch.stack([spectral.ifft(1j * (k[a] * jh[..., b] - k[b] * jh[..., a]) * inv_k2, 3) for a, b in cyc], -1)


def field_from_escnn_current(current: torch.Tensor) -> torch.Tensor:
    """:func:`magnetic_field` on escnn layout: ``(B, 3, N, N, N)`` (axes -z, -y, x) -> ``(B, 3, N, N, N)``."""
    return spectral.to_escnn(magnetic_field(spectral.from_escnn(current, 3, 1)), 3, 1)
