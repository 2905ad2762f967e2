r"""2D Boussinesq turbulence and its coarse-grained fluxes (task ``boussinesq-flux``: scalar + vector -> vector +
2-tensor).

The equations, in the periodic box :math:`[0, 1)^2` (box units, as :mod:`escnn_tensor.data.navier_stokes`), for
the vorticity :math:`\omega = \partial_x u_y - \partial_y u_x` (a pseudoscalar) and the buoyancy :math:`b` (a
scalar; :math:`b > 0` is light fluid):

.. math::

    \partial_t \omega + u\cdot\nabla\omega &= \nu \nabla^2 \omega
        + \underbrace{\partial_y b\, g_x - \partial_x b\, g_y}_{\nabla\times(-b\,g)} + f_\omega, \\
    \partial_t b + u\cdot\nabla b &= \kappa \nabla^2 b + f_b, \qquad
    u = (\partial_y\psi, -\partial_x\psi),\quad \nabla^2\psi = -\omega,

i.e. the momentum equation :math:`\partial_t u + u\cdot\nabla u = -\nabla p + \nu\nabla^2 u - b\,g` with the
gravitational acceleration :math:`g`, whose curl is the baroclinic torque above (:math:`\nabla\times g = 0`).

Gravity and the symmetry. The textbook system has a *uniform* gravity :math:`g = (0, -G)`, torque
:math:`G\,\partial_x b`. It singles out a direction: under a reflection :math:`y \to -y` the vorticity flips sign
but :math:`\partial_x b` does not, and a rotation by 90 degrees turns :math:`\partial_x b` into
:math:`\partial_y b`. Uniform gravity breaks D4 down to the one reflection :math:`x \to -x`, so a generator with it
is **not** D4-equivariant (``gravity="uniform"`` of :class:`BoussinesqSolver`, kept as the control of the tests).
The task uses a gravity field that *is* D4-equivariant instead (``gravity="central"``, the default): the periodic
analogue of a central mass,

.. math::

    g = -\nabla\Phi = -G\,(\sin 2\pi X,\ \sin 2\pi Y), \qquad \Phi = -\frac{G}{2\pi}(\cos 2\pi X + \cos 2\pi Y),

with :math:`(X, Y)` measured from the centre of the grid (array index :math:`(N-1)/2`, as the Navier-Stokes
forcing): it points towards the centre near it, and :math:`g(Mx) = M g(x)` for all 8 elements :math:`M` of D4, so
the torque :math:`\nabla\times(-b g)` is a pseudoscalar whenever :math:`b` is a scalar. The buoyancy stays active
(it drives the flow), and the system is a genuine Boussinesq system (any potential :math:`\Phi` is), only not
translation-invariant (neither is the forced Navier-Stokes task). ``gravity="none"`` makes :math:`b` a passive
scalar (also D4-equivariant).

Forcing. :math:`f_\omega` is the pseudoscalar forcing of :func:`escnn_tensor.data.navier_stokes.forcing`
(amplitude ``forcing_amplitude``, 0 by default: the flow is driven by the buoyancy); :math:`f_b = H(\cos 2\pi X +
\cos 2\pi Y)/2` (``heating`` :math:`H`) heats the centre and cools the corners, a D4-invariant scalar. With
central gravity this puts light fluid at the bottom of the potential well: the state at rest is unstable and the
fluid convects. Invariants: with :math:`\nu = \kappa = f = 0`, the energy :math:`E = \tfrac12\int|u|^2 - \int
b\,\Phi` and :math:`\int b^2` are conserved (the dealiased scheme keeps them exactly up to RK4's error); any
:math:`b = F(\Phi)` at rest is a steady state (hydrostatic balance).

Numerics as :class:`~escnn_tensor.data.navier_stokes.VorticitySolver`: spectral derivatives with the Nyquist
wavenumber zeroed, the products (advection and torque) computed in real space and dealiased by the 2/3 rule (a
square mask, D4-invariant), integrating-factor RK4 (viscosity and diffusivity exact). The mean flow is held at
zero (the velocity comes from the vorticity), which is itself a D4-equivariant projection. Every operator
commutes with the 8 symmetries of the grid, so :math:`(\omega, b)(t) \mapsto (\omega, b)(t + \Delta t)` is
D4-equivariant (tested for all 8 elements, with the uniform-gravity control failing).

Coarse-graining (as :mod:`escnn_tensor.data.subgrid`): the fine fields on ``factor * N`` are filtered by
:func:`escnn_tensor.data.subgrid.coarse_filter` (periodic Gaussian of width ``filter_width`` coarse pixels, then
the mean over each ``factor x factor`` cell; non-negative weights summing to 1, centred), giving

.. math::

    \bar u,\quad \bar b,\quad \tau_{ij} = \overline{u_i u_j} - \bar u_i \bar u_j,\quad
    \sigma_i = \overline{u_i b} - \bar u_i \bar b,

:math:`\tau` symmetric and positive semi-definite, :math:`\sigma` a true vector. The map (fine :math:`u, b`) ->
:math:`(\bar b, \bar u, \sigma, \tau)` is D4-equivariant for every ``factor`` (tested).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..groups import is_integer
from . import spectral, subgrid
from .navier_stokes import dealias_mask, forcing, initial_vorticity

__all__ = [
    "GRAVITIES",
    "gravity_field",
    "heating",
    "BoussinesqSolver",
    "initial_buoyancy",
    "coarse_fluxes",
    "fluxes_from_escnn",
]

GRAVITIES = ("central", "uniform", "none")
"""The gravity fields of :func:`gravity_field`; ``"uniform"`` breaks D4 (see the module docs)."""


def _centred(size: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(size, dtype=dtype) - (size - 1) / 2) / size
    return c[:, None], c[None, :]


def gravity_field(size: int, kind: str = "central", strength: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The gravitational acceleration :math:`g`, ``(N, N, 2)`` grid layout, box units.

    ``"central"``: :math:`-G(\sin 2\pi X, \sin 2\pi Y)` (D4-equivariant, towards the centre); ``"uniform"``:
    :math:`(0, -G)` (breaks D4); ``"none"``: zero. :math:`G` = ``strength``; :math:`(X, Y)` from the grid centre.
    """
    if kind not in GRAVITIES:
        raise ValueError(f"gravity must be one of {list(GRAVITIES)}, got {kind!r}")
    x, y = _centred(size, dtype)
    zero = torch.zeros(size, size, dtype=dtype)
    if kind == "central":
        gx, gy = -strength * torch.sin(2 * math.pi * x) + zero, -strength * torch.sin(2 * math.pi * y) + zero
    elif kind == "uniform":
        gx, gy = zero, zero - strength
    else:
        gx, gy = zero, zero
    return torch.stack([gx, gy], dim=-1)


def heating(size: int, amplitude: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The buoyancy source :math:`H(\cos 2\pi X + \cos 2\pi Y)/2`, ``(N, N)`` grid layout (a D4-invariant scalar)."""
    x, y = _centred(size, dtype)
    return amplitude * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y)) / 2


def initial_buoyancy(
    n_samples: int,
    size: int,
    generator: Optional[torch.Generator] = None,
    peak: float = 4.0,
    rms: float = 1.0,
    cutoff: Optional[float] = None,
) -> torch.Tensor:
    r"""Random band-limited buoyancy fields ``(n_samples, N, N)`` (grid layout): the spectrum of
    :func:`~escnn_tensor.data.navier_stokes.initial_vorticity` (peak ``peak``, :math:`1 \le |m| <` ``cutoff``,
    default :math:`N/3`), zero mean, root-mean-square ``rms``. One draw per sample from ``generator``, in order."""
    return initial_vorticity(n_samples, size, generator, peak=peak, rms=rms, cutoff=cutoff)


def _number(name: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


class BoussinesqSolver:
    r"""Pseudo-spectral solver of the 2D Boussinesq equations of the module docs, box units.

    Args:
        size: grid side ``N`` (>= 4).
        viscosity, diffusivity: :math:`\nu`, :math:`\kappa` (box units, >= 0).
        gravity: ``"central"`` (D4-equivariant), ``"uniform"`` (breaks D4; for comparison) or ``"none"``.
        gravity_strength: :math:`G`.
        heating_amplitude: :math:`H` of :func:`heating`.
        forcing_amplitude: :math:`A` of the vorticity forcing :func:`~escnn_tensor.data.navier_stokes.forcing`.
        dt: time step; default ``0.25 / N`` (CFL number 0.25 at ``|u| = 1``).
        max_cfl: :meth:`evolve` raises ``RuntimeError`` if ``max |u| dt N`` exceeds it or the state blows up.

    Fields are grid layout (axis 0 = x, axis 1 = y), any leading batch shape: ``omega`` and ``b`` ``(..., N, N)``.
    """

    def __init__(
        self,
        size: int,
        viscosity: float = 2e-4,
        diffusivity: float = 2e-4,
        gravity: str = "central",
        gravity_strength: float = 4.0,
        heating_amplitude: float = 1.0,
        forcing_amplitude: float = 0.0,
        dt: Optional[float] = None,
        max_cfl: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not is_integer(size) or size < 4:
            raise ValueError(f"size must be an integer >= 4, got {size!r}")
        self.size = int(size)
        self.viscosity = _number("viscosity", viscosity)
        self.diffusivity = _number("diffusivity", diffusivity)
        self.gravity_strength = _number("gravity_strength", gravity_strength, -math.inf)
        self.heating_amplitude = _number("heating_amplitude", heating_amplitude, -math.inf)
        self.forcing_amplitude = _number("forcing_amplitude", forcing_amplitude, -math.inf)
        self.dt = 0.25 / self.size if dt is None else _number("dt", dt, strict=True)
        self.max_cfl, self.dtype, self.gravity = float(max_cfl), dtype, gravity
        n, half, h = self.size, self.size // 2 + 1, 1.0 / self.size
        k = spectral.derivative_wavenumbers(n, dtype, spacing=h)
        self._kx, self._ky = k[:, None], k[:half][None, :]
        self._k2 = spectral.wavenumber_squared(n, 2, dtype, spacing=h)[:, :half]
        self._inv_k2 = spectral.inverse_wavenumber_squared(n, 2, dtype, spacing=h)[:, :half]
        self._mask = dealias_mask(n, rfft=True)
        self._g = gravity_field(n, gravity, self.gravity_strength, dtype)  # validates ``gravity``
        self._active = gravity != "none" and self.gravity_strength != 0
        self._force_w = torch.fft.rfft2(forcing(n, self.forcing_amplitude, dtype))
        self._force_b = torch.fft.rfft2(heating(n, self.heating_amplitude, dtype))

    def velocity(self, omega: torch.Tensor) -> torch.Tensor:
        r"""The zero-mean velocity of ``omega``: ``(..., N, N)`` -> ``(..., N, N, 2)``."""
        psi = torch.fft.rfft2(omega) * self._inv_k2
        uv = torch.fft.irfft2(torch.stack([1j * self._ky * psi, -1j * self._kx * psi]), s=(self.size, self.size))
        return uv.movedim(0, -1)

    def potential(self) -> torch.Tensor:
        r"""The potential :math:`\Phi` of the gravity (:math:`g = -\nabla\Phi`, zero mean), ``(N, N)``.

        Central: :math:`-(G/2\pi)(\cos 2\pi X + \cos 2\pi Y)`; uniform: not periodic, refused; none: zero."""
        if self.gravity == "uniform":
            raise ValueError("uniform gravity has no periodic potential")
        x, y = _centred(self.size, self.dtype)
        if not self._active:
            return torch.zeros(self.size, self.size, dtype=self.dtype)
        return -self.gravity_strength / (2 * math.pi) * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y))

    def _rhs(self, w_hat: torch.Tensor, b_hat: torch.Tensor):
        """Dealiased advection, torque and forcing of both fields in Fourier space, and max |u|."""
        psi = w_hat * self._inv_k2
        kx, ky = self._kx, self._ky
        six = torch.stack(
            [1j * ky * psi, -1j * kx * psi, 1j * kx * w_hat, 1j * ky * w_hat, 1j * kx * b_hat, 1j * ky * b_hat]
        )
        u, v, wx, wy, bx, by = torch.fft.irfft2(six, s=(self.size, self.size))
        terms = [u * wx + v * wy, u * bx + v * by]
        if self._active:
            terms[0] = terms[0] - (by * self._g[..., 0] - bx * self._g[..., 1])
        adv_w, adv_b = torch.fft.rfft2(torch.stack(terms))
        speed = (u * u + v * v).amax().sqrt()
        return -adv_w * self._mask + self._force_w, -adv_b * self._mask + self._force_b, speed

    def evolve(self, omega: torch.Tensor, b: torch.Tensor, time: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(omega, b)`` after ``time``: ``ceil(time / dt)`` equal steps of integrating-factor RK4.

        Both ``(..., N, N)`` with the same shape. Raises ``RuntimeError`` if the CFL number exceeds ``max_cfl``
        or the state stops being finite."""
        n = self.size
        for name, f in (("omega", omega), ("b", b)):
            if not isinstance(f, torch.Tensor) or f.shape[-2:] != (n, n):
                raise ValueError(f"{name} must be a tensor ending in ({n}, {n}), got {getattr(f, 'shape', f)!r}")
        if omega.shape != b.shape:
            raise ValueError(f"omega and b must have the same shape, got {tuple(omega.shape)} and {tuple(b.shape)}")
        if not (isinstance(time, (int, float)) and time >= 0):
            raise ValueError(f"time must be a number >= 0, got {time!r}")
        steps = math.ceil(time / self.dt - 1e-9)
        if steps == 0:
            return omega.clone(), b.clone()
        dt = time / steps
        ew = torch.exp(-self.viscosity * self._k2 * dt / 2)
        eb = torch.exp(-self.diffusivity * self._k2 * dt / 2)
        w, c = torch.fft.rfft2(omega.to(self.dtype)), torch.fft.rfft2(b.to(self.dtype))
        top = torch.zeros((), dtype=self.dtype)
        for _ in range(steps):
            k1w, k1b, s = self._rhs(w, c)
            k2w, k2b, _ = self._rhs(ew * (w + dt / 2 * k1w), eb * (c + dt / 2 * k1b))
            k3w, k3b, _ = self._rhs(ew * w + dt / 2 * k2w, eb * c + dt / 2 * k2b)
            k4w, k4b, _ = self._rhs(ew * ew * w + dt * ew * k3w, eb * eb * c + dt * eb * k3b)
            w = ew * ew * w + dt / 6 * (ew * ew * k1w + 2 * ew * (k2w + k3w) + k4w)
            c = eb * eb * c + dt / 6 * (eb * eb * k1b + 2 * eb * (k2b + k3b) + k4b)
            top = torch.maximum(top, s)
        out_w = torch.fft.irfft2(w, s=(n, n))
        out_b = torch.fft.irfft2(c, s=(n, n))
        cfl = float(top) * dt * n
        if not (torch.isfinite(out_w).all() and torch.isfinite(out_b).all()) or not cfl <= self.max_cfl:
            raise RuntimeError(
                f"Boussinesq solver: CFL number max|u| dt N = {cfl:.3g} exceeds max_cfl={self.max_cfl:g} (or the "
                f"state blew up) with dt={dt:.3g}, N={n}; use a smaller dt, gravity_strength or initial state"
            )
        return out_w, out_b


def coarse_fluxes(
    u: torch.Tensor, b: torch.Tensor, factor: int, filter_width: float = 2.0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Filtered fields and subgrid fluxes of fine ``u`` ``(..., N_f, N_f, 2)`` and ``b`` ``(..., N_f, N_f)``.

    Returns ``(b_bar, u_bar, sigma, tau)`` on the coarse grid ``N = N_f / factor`` (grid layout): ``(..., N, N)``,
    ``(..., N, N, 2)``, ``(..., N, N, 2)`` with :math:`\sigma_i = \overline{u_i b} - \bar u_i \bar b` and
    ``(..., N, N, 2, 2)`` with :math:`\tau_{ij} = \overline{u_i u_j} - \bar u_i \bar u_j` (symmetric, PSD); the
    filter is :func:`escnn_tensor.data.subgrid.coarse_filter`.
    """
    spectral.check_field(u, 2, 1, "u")
    spectral.check_field(b, 2, 0, "b")
    if b.shape != u.shape[:-1]:
        raise ValueError(f"b must have the shape of u without its last axis, got {tuple(b.shape)} and {tuple(u.shape)}")
    ux, uy = u[..., 0], u[..., 1]
    products = torch.stack([ux, uy, b, ux * ux, ux * uy, uy * uy, ux * b, uy * b])
    fx, fy, fb, fxx, fxy, fyy, fxb, fyb = subgrid.coarse_filter(products, factor, filter_width)
    txx, txy, tyy = fxx - fx * fx, fxy - fx * fy, fyy - fy * fy
    tau = torch.stack([torch.stack([txx, txy], -1), torch.stack([txy, tyy], -1)], -2)
    sigma = torch.stack([fxb - fx * fb, fyb - fy * fb], -1)
    return fb, torch.stack([fx, fy], -1), sigma, tau


def fluxes_from_escnn(
    fine: torch.Tensor, factor: int, filter_width: float = 2.0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`coarse_fluxes` on escnn layout: fine ``(B, 3, N_f, N_f)`` (channels ``b, u_x, u_y``) -> inputs
    ``(B, 3, N, N)`` (``b_bar, u_bar``) and targets ``(B, 6, N, N)`` (``sigma_x, sigma_y, tau_xx, tau_xy, tau_yx,
    tau_yy``), the field order of the task (scalar then vector; vector then 2-tensor)."""
    if fine.dim() != 4 or fine.shape[1] != 3:
        raise ValueError(f"fine must be (B, 3, N_f, N_f) (channels b, u_x, u_y), got {tuple(fine.shape)}")
    b = spectral.from_escnn(fine[:, :1], 2, 0)
    u = spectral.from_escnn(fine[:, 1:], 2, 1)
    b_bar, u_bar, sigma, tau = coarse_fluxes(u, b, factor, filter_width)
    inputs = torch.cat([spectral.to_escnn(b_bar, 2, 0), spectral.to_escnn(u_bar, 2, 1)], 1)
    targets = torch.cat([spectral.to_escnn(sigma, 2, 1), spectral.to_escnn(tau, 2, 2)], 1)
    return inputs, targets
