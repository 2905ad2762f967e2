r"""2D incompressible Navier-Stokes in a periodic box: a pseudo-spectral vorticity solver (vector -> vector task).

The equations, in the box :math:`[0, 1)^2` (box units: the box side is 1, a pixel is :math:`1/N`), for the
vorticity :math:`\omega = \partial_x u_y - \partial_y u_x` (a **pseudoscalar**: it changes sign under
reflections):

.. math::

    \partial_t \omega + u\cdot\nabla\omega = \nu \nabla^2 \omega + f, \qquad
    u = (\partial_y\psi, -\partial_x\psi),\quad \nabla^2\psi = -\omega.

Numerics: spectral derivatives (:mod:`escnn_tensor.data.spectral`, Nyquist wavenumber zeroed); the advection
term is computed in real space and **dealiased by the 2/3 rule** (Fourier modes with :math:`|m_x| \ge N/3` or
:math:`|m_y| \ge N/3` removed; the mask is a square, so it is invariant under every symmetry of the grid);
time stepping by the integrating-factor Runge-Kutta 4 scheme (viscosity exact, advection RK4) with a fixed step.

Symmetry and forcing. Every operator above commutes with the symmetries of the square grid, so the solver map
:math:`\omega(t) \mapsto \omega(t + \Delta t)` is D4-equivariant **provided the forcing is invariant as a
pseudoscalar** about the grid centre, :math:`f(Mx) = \det(M) f(x)` for all 8 elements: the forcing is the curl
of a force field, so it flips sign under reflections with the vorticity. A forcing invariant as a *scalar*, such
as :math:`\cos 4\pi x + \cos 4\pi y`, breaks the reflections. The forcing used here is the lowest-mode
pseudoscalar one,

.. math::

    f = A\,[\sin(2\pi X)\sin(4\pi Y) - \sin(4\pi X)\sin(2\pi Y)],

with :math:`(X, Y)` measured from the centre of the grid (array index :math:`(N-1)/2`): odd under
:math:`X \to -X`, :math:`Y \to -Y` and :math:`X \leftrightarrow Y`, even under rotations by 90 degrees. It is the
curl of the D4-invariant force :math:`F = (-\partial_y\chi, \partial_x\chi)` with :math:`\nabla^2\chi = f`.
``forcing_amplitude=0`` gives decaying turbulence (no forcing needed for equivariance).

The velocity is recovered from :math:`\omega` with zero mean (a D4-invariant vector must vanish, so the mean flow
of symmetric data is zero anyway); as a map of velocities, the solver first takes the curl, so only the
divergence-free, zero-mean part of an input velocity matters.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..groups import is_integer
from . import spectral

__all__ = ["dealias_mask", "forcing", "VorticitySolver", "initial_vorticity", "project_velocity"]


def dealias_mask(size: int, rfft: bool = False) -> torch.Tensor:
    """The 2/3-rule mask: ``True`` for the Fourier modes with ``|m_x| < N/3`` and ``|m_y| < N/3``.

    Shape ``(N, N)`` in FFT order (``(N, N//2 + 1)`` for ``rfft=True``, the half-spectrum of ``torch.fft.rfft2``).
    Products of two fields restricted to this set alias only onto modes outside it.
    """
    m = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64).abs()
    keep = m < size / 3
    return keep[:, None] & (keep[: size // 2 + 1] if rfft else keep)[None, :]


def forcing(size: int, amplitude: float = 0.1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The pseudoscalar forcing :math:`A[\sin 2\pi X \sin 4\pi Y - \sin 4\pi X \sin 2\pi Y]`, ``(N, N)`` grid layout.

    :math:`X = (i - (N-1)/2)/N` along array axis 0 (x), :math:`Y` likewise along axis 1 (y); see the module docs.
    """
    c = (torch.arange(size, dtype=dtype) - (size - 1) / 2) / size
    x, y = c[:, None], c[None, :]
    s = torch.sin
    return amplitude * (s(2 * math.pi * x) * s(4 * math.pi * y) - s(4 * math.pi * x) * s(2 * math.pi * y))


def project_velocity(v: torch.Tensor) -> torch.Tensor:
    r"""The divergence-free, zero-mean part of periodic 2D velocity fields (the Helmholtz projection, by FFT, with
    the solver's spectral derivative: :mod:`escnn_tensor.data.spectral`, Nyquist wavenumber 0).

    ``v``: ``(..., 2, N_y, N_x)`` in escnn's layout (channels :math:`(v_x, v_y)`; the last array axis along +x, the
    second-last along -y). Returns :math:`\hat v - k (k\cdot\hat v)/|k|^2` transformed back, with the mean removed:
    the set every state of this task lies in (the solver works with the vorticity). It is a linear orthogonal
    projection that commutes with the grid's symmetries, so applying it to a model's predictions keeps an
    equivariant rollout equivariant (used by ``comparisons/rollout_diagnosis.py``). Computed in float64; returned
    in ``v``'s dtype, on its device.
    """
    if v.dim() < 3 or v.shape[-3] != 2:
        raise ValueError(f"v must have shape (..., 2, N_y, N_x) (a 2D vector field in escnn's layout), got "
                         f"{tuple(v.shape)}")
    n_y, n_x = v.shape[-2:]
    opts = {"dtype": torch.float64, "device": v.device}
    # the solver's spectral derivative (Nyquist wavenumber 0, so the projection keeps real fields real); the array
    # axis -2 runs along -y
    ky = -spectral.derivative_wavenumbers(n_y).to(**opts)[:, None].expand(n_y, n_x)
    kx = spectral.derivative_wavenumbers(n_x).to(**opts)[None, :].expand(n_y, n_x)
    vx, vy = torch.fft.fft2(v[..., 0, :, :].double()), torch.fft.fft2(v[..., 1, :, :].double())
    k2 = kx**2 + ky**2
    dot = (kx * vx + ky * vy) / torch.where(k2 > 0, k2, torch.ones_like(k2))  # k = 0: nothing to remove
    keep = torch.ones(n_y, n_x, **opts)
    keep[0, 0] = 0.0  # the mean
    px, py = (vx - kx * dot) * keep, (vy - ky * dot) * keep
    return torch.stack([torch.fft.ifft2(px).real, torch.fft.ifft2(py).real], dim=-3).to(v.dtype)


def initial_vorticity(
    n_samples: int,
    size: int,
    generator: Optional[torch.Generator] = None,
    peak: float = 4.0,
    rms: float = 2 * math.pi,
    cutoff: Optional[float] = None,
    spectral_slope: float = 1.0,
) -> torch.Tensor:
    r"""Random band-limited vorticity fields, ``(n_samples, N, N)`` grid layout, box units.

    Gaussian random fields with Fourier amplitude :math:`|m|^{s} \exp(-(|m|/m_0)^2)` (``s = spectral_slope``,
    :math:`m_0` = ``peak``) for :math:`1 \le |m| <` ``cutoff`` (default :math:`N/3`, inside the dealiasing
    mask), each rescaled to root-mean-square ``rms``. One draw per sample from ``generator``, in order, so the
    samples do not depend on how many are made.
    """
    cutoff = size / 3 if cutoff is None else cutoff

    def amplitude(m: torch.Tensor) -> torch.Tensor:
        band = (m >= 1) & (m < cutoff)
        return torch.where(band, m.clamp(min=1) ** spectral_slope * torch.exp(-((m / peak) ** 2)), 0.0)

    w = torch.cat([spectral.random_field((1,), size, 2, amplitude, generator) for _ in range(n_samples)])
    return w * (rms / (w * w).mean(dim=(-2, -1), keepdim=True).sqrt())


class VorticitySolver:
    r"""Pseudo-spectral solver of the forced 2D Navier-Stokes equations (see the module docs), box units.

    Args:
        size: grid side ``N``.
        viscosity: :math:`\nu` (box units; ``1e-3`` is the usual benchmark value).
        forcing_amplitude: :math:`A` of :func:`forcing` (``0``: unforced).
        dt: the solver's time step; default ``0.25 / N`` (a CFL number ``|u| dt N`` of 0.25 at ``|u| = 1``).
        max_cfl: :meth:`evolve` raises if ``max |u| dt N`` exceeds it (the run would be inaccurate or unstable).

    All fields are in grid layout (axis 0 = x, axis 1 = y) with any leading batch shape, real floating point.
    """

    def __init__(
        self,
        size: int,
        viscosity: float = 1e-3,
        forcing_amplitude: float = 0.1,
        dt: Optional[float] = None,
        max_cfl: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not is_integer(size) or size < 4:
            raise ValueError(f"size must be an integer >= 4, got {size!r}")
        if not (isinstance(viscosity, (int, float)) and viscosity >= 0):
            raise ValueError(f"viscosity must be a number >= 0, got {viscosity!r}")
        if not isinstance(forcing_amplitude, (int, float)) or not math.isfinite(forcing_amplitude):
            raise ValueError(f"forcing_amplitude must be a finite number, got {forcing_amplitude!r}")
        dt = 0.25 / size if dt is None else dt
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ValueError(f"dt must be a positive number, got {dt!r}")
        self.size, self.viscosity, self.forcing_amplitude = int(size), float(viscosity), float(forcing_amplitude)
        self.dt, self.max_cfl, self.dtype = float(dt), float(max_cfl), dtype
        h = 1.0 / size
        k = spectral.derivative_wavenumbers(size, dtype, spacing=h)
        self._kx = k[:, None]
        self._ky = k[: size // 2 + 1][None, :]  # rfft half-spectrum along y (index N/2 is the zeroed Nyquist)
        half = size // 2 + 1
        self._k2 = spectral.wavenumber_squared(size, 2, dtype, spacing=h)[:, :half]
        self._inv_k2 = spectral.inverse_wavenumber_squared(size, 2, dtype, spacing=h)[:, :half]
        self._mask = dealias_mask(size, rfft=True)
        self._force_hat = torch.fft.rfft2(forcing(size, forcing_amplitude, dtype))

    # ------------------------------------------------------------------------------------------- conversions
    def velocity(self, omega: torch.Tensor) -> torch.Tensor:
        r"""The zero-mean velocity with vorticity ``omega``: ``(..., N, N)`` -> ``(..., N, N, 2)`` (u_x, u_y)."""
        psi = torch.fft.rfft2(omega) * self._inv_k2
        uv = torch.fft.irfft2(torch.stack([1j * self._ky * psi, -1j * self._kx * psi]), s=(self.size, self.size))
        return uv.movedim(0, -1)

    def vorticity(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`\partial_x u_y - \partial_y u_x` (box units) of ``(..., N, N, 2)`` -> ``(..., N, N)``."""
        return spectral.curl(u, spacing=1.0 / self.size)

    # ------------------------------------------------------------------------------------------- time stepping
    def _rhs(self, w_hat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Advection (dealiased) + forcing in Fourier space, and max |u| of this state."""
        psi = w_hat * self._inv_k2
        four = torch.stack(
            [1j * self._ky * psi, -1j * self._kx * psi, 1j * self._kx * w_hat, 1j * self._ky * w_hat]
        )
        u, v, wx, wy = torch.fft.irfft2(four, s=(self.size, self.size))
        adv = torch.fft.rfft2(u * wx + v * wy)
        speed = (u * u + v * v).amax().sqrt()
        return -adv * self._mask + self._force_hat, speed

    def evolve(self, omega: torch.Tensor, time: float) -> torch.Tensor:
        """The vorticity after ``time`` (box units): ``ceil(time / dt)`` equal steps of integrating-factor RK4.

        ``omega``: ``(..., N, N)``. Raises ``RuntimeError`` if the CFL number exceeds ``max_cfl`` or the state
        stops being finite.
        """
        if omega.shape[-2:] != (self.size, self.size):
            raise ValueError(f"omega must end in ({self.size}, {self.size}), got shape {tuple(omega.shape)}")
        if not (isinstance(time, (int, float)) and time >= 0):
            raise ValueError(f"time must be a number >= 0, got {time!r}")
        n_steps = math.ceil(time / self.dt - 1e-9)
        if n_steps == 0:
            return omega.clone()
        dt = time / n_steps
        e_half = torch.exp(-self.viscosity * self._k2 * dt / 2)
        e_full = e_half * e_half
        w = torch.fft.rfft2(omega.to(self.dtype))
        top = torch.zeros((), dtype=self.dtype)
        for _ in range(n_steps):
            k1, s = self._rhs(w)
            k2, _ = self._rhs(e_half * (w + dt / 2 * k1))
            k3, _ = self._rhs(e_half * w + dt / 2 * k2)
            k4, _ = self._rhs(e_full * w + dt * e_half * k3)
            w = e_full * w + dt / 6 * (e_full * k1 + 2 * e_half * (k2 + k3) + k4)
            top = torch.maximum(top, s)
        out = torch.fft.irfft2(w, s=(self.size, self.size))
        cfl = float(top) * dt * self.size
        if not torch.isfinite(out).all() or not cfl <= self.max_cfl:
            raise RuntimeError(
                f"Navier-Stokes solver: CFL number max|u| dt N = {cfl:.3g} exceeds max_cfl={self.max_cfl:g} (or the "
                f"state blew up) with dt={dt:.3g}, N={self.size}; use a smaller dt or a smaller initial vorticity"
            )
        return out

    def step_velocity(self, u: torch.Tensor, time: float) -> torch.Tensor:
        """The velocity map ``u(t) -> u(t + time)``: curl, :meth:`evolve`, back to the velocity. ``(..., N, N, 2)``."""
        return self.velocity(self.evolve(self.vorticity(u), time))
