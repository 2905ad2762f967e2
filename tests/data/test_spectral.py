"""escnn_tensor.data.spectral: the shared spectral calculus is exact on band-limited fields, consistent (vector
identities to round-off), commutes with the grid symmetries, and the layout helpers are the package's layouts."""
import math

import numpy as np
import pytest
import torch

from escnn_tensor import escnn_to_grid, group_matrices, hyperoctahedral_gspace
from escnn_tensor.data import spectral as S

from tests.reference import rho


def _mode(size, d, m, phase=0.3):
    """sin(2 pi m . x / N + phase) on the grid (grid layout) and its exact gradient, for an integer vector m."""
    axes = torch.meshgrid(*[torch.arange(size, dtype=torch.float64)] * d, indexing="ij")
    arg = sum(2 * math.pi * mj * xj / size for mj, xj in zip(m, axes)) + phase
    grad = torch.stack([2 * math.pi * mj / size * torch.cos(arg) for mj in m], dim=-1)
    return torch.sin(arg), grad


@pytest.mark.parametrize("d, size, m", [(2, 12, (2, -3)), (2, 11, (5, 1)), (3, 8, (1, -2, 3))])
def test_derivatives_of_a_fourier_mode_are_exact(d, size, m):
    f, grad = _mode(size, d, m)
    assert torch.allclose(S.gradient(f, d), grad, rtol=0, atol=1e-12)
    lap = -sum((2 * math.pi * mj / size) ** 2 for mj in m) * f
    assert torch.allclose(S.divergence(S.gradient(f, d)), lap, rtol=0, atol=1e-12)
    h = S.hessian(f, d)
    assert torch.allclose(torch.diagonal(h, dim1=-2, dim2=-1).sum(-1), lap, rtol=0, atol=1e-12)
    assert torch.allclose(S.solve_poisson(lap, d), f, rtol=0, atol=1e-12)


def test_nyquist_is_removed_and_box_units():
    k = S.derivative_wavenumbers(8)
    assert k[4] == 0 and torch.allclose(k[:4], 2 * math.pi * torch.arange(4.0, dtype=torch.float64) / 8)
    assert torch.equal(S.derivative_wavenumbers(8, spacing=1 / 8), k * 8)
    mask = S.nyquist_free(6, 3)
    assert mask.shape == (6, 6, 6) and mask.sum() == 5**3 and not mask[3].any() and not mask[:, :, 3].any()
    assert S.nyquist_free(5, 2).all()
    f, grad = _mode(16, 2, (1, 2))
    assert torch.allclose(S.gradient(f, 2, spacing=1 / 16), 16 * grad, rtol=0, atol=1e-11)


@pytest.mark.parametrize("d, size", [(2, 10), (3, 6)])
def test_vector_identities_hold_to_round_off(d, size):
    """curl grad = 0, div curl = 0 (3D), div grad phi = f - mean for Nyquist-free f: on random fields."""
    gen = torch.Generator().manual_seed(0)
    flat = lambda m: torch.ones_like(m)
    f = S.random_field((3,), size, d, flat, gen)
    v = S.random_field((3, d), size, d, flat, gen)
    assert v.shape == (3,) + (size,) * d + (d,)
    scale = f.abs().max()
    assert S.curl(S.gradient(f, d)).abs().max() < 1e-12 * scale * size
    if d == 3:
        assert S.divergence(S.curl(v)).abs().max() < 1e-12 * v.abs().max() * size**2
    lap = S.divergence(S.gradient(S.solve_poisson(f, d), d))
    assert (lap - (f - f.mean(dim=tuple(range(1, d + 1)), keepdim=True))).abs().max() < 1e-12 * scale


@pytest.mark.parametrize("d, size", [(2, 8), (2, 7), (3, 6)])
def test_operators_commute_with_every_grid_symmetry(d, size):
    """gradient/hessian/curl of (f moved by M) equal (the result moved by M), with vectors transformed by M, curls
    (pseudo) by det(M) M, tensors by M (x) M: for all 8 / 48 signed permutations about the array centre (grid
    layout). Even sizes include the Nyquist modes that the zeroed wavenumber makes harmless."""
    gen = torch.Generator().manual_seed(1)
    f = torch.randn((size,) * d, dtype=torch.float64, generator=gen)
    v = torch.randn((size,) * d + (d,), dtype=torch.float64, generator=gen)

    def move(x, M, k, parity):
        """x(M^-1 p) with the k tensor axes transformed by rho_{k,parity}(M) (from tests.reference)."""
        perm = [int(np.nonzero(M[:, j])[0][0]) for j in range(d)]  # M e_j = sign[j] e_perm[j]
        sign = [int(M[perm[j], j]) for j in range(d)]
        y = x
        for j in range(d):
            if sign[j] < 0:
                y = y.flip(j)
        inv = [perm.index(i) for i in range(d)]
        y = y.permute(inv + list(range(d, d + k)))
        flat = y.reshape(y.shape[:d] + (d**k,))
        r = torch.as_tensor(rho(M, k, parity))
        return (flat @ r.T).reshape(y.shape)

    for M in group_matrices(hyperoctahedral_gspace(d)):
        Mf = move(f, M, 0, 1)
        assert torch.allclose(S.gradient(Mf, d), move(S.gradient(f, d), M, 1, 1), rtol=0, atol=1e-12)
        assert torch.allclose(S.hessian(Mf, d), move(S.hessian(f, d), M, 2, 1), rtol=0, atol=1e-12)
        Mv = move(v, M, 1, 1)
        kc = 0 if d == 2 else 1
        assert torch.allclose(S.curl(Mv), move(S.curl(v), M, kc, -1), rtol=0, atol=1e-12)
        assert torch.allclose(S.divergence(Mv), move(S.divergence(v), M, 0, 1), rtol=0, atol=1e-12)


def test_periodic_gaussian_kernel_is_positive_symmetric_and_gaussian():
    g = S.periodic_gaussian_kernel(16, 2, 1.5)
    assert (g > 0).all() and abs(g.sum().item() - 1) < 1e-14
    assert torch.equal(g, g.T) and torch.equal(g[1:], g[1:].flip(0))  # symmetric about index 0, periodically
    one = S.periodic_gaussian_kernel(32, 2, 2.0)[:, 0]
    n = torch.arange(32, dtype=torch.float64)
    dist = torch.minimum(n, 32 - n)
    var = (one / one.sum() * dist**2).sum()
    assert abs(var.item() - 4.0) < 1e-6  # the standard deviation is sigma
    transfer = S.fft(S.periodic_gaussian_kernel(32, 2, 2.0), 2)
    assert transfer.imag.abs().max() < 1e-14
    k = 2 * math.pi * torch.fft.fftfreq(32, dtype=torch.float64)  # all wavenumbers, Nyquist included
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    assert torch.allclose(transfer.real, torch.exp(-0.5 * 4.0 * k2), rtol=0, atol=1e-6)


def test_layout_helpers_match_the_package_layouts():
    """to_escnn puts component (i, j) of a grid-layout tensor at channel i*d + j, spatially as grid_to_escnn."""
    x = torch.randn(2, 5, 5, 2, 2, dtype=torch.float64)
    e = S.to_escnn(x, 2, 2)
    assert e.shape == (2, 4, 5, 5)
    for i in range(2):
        for j in range(2):
            assert torch.equal(escnn_to_grid(e[:, 2 * i + j], 2), x[..., i, j])
    assert torch.equal(S.from_escnn(e, 2, 2), x)
    y = torch.randn(1, 4, 4, 4, 3, dtype=torch.float64)
    assert torch.equal(S.from_escnn(S.to_escnn(y, 3, 1), 3, 1), y)


def test_bad_input_is_rejected():
    with pytest.raises(TypeError, match="floating"):
        S.gradient(torch.zeros(4, 4, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="equal spatial sides"):
        S.hessian(torch.zeros(4, 5, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="d = 2 or 3"):
        S.divergence(torch.zeros(4, 4, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="size must be an integer >= 2"):
        S.derivative_wavenumbers(1)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        S.periodic_gaussian_kernel(8, 2, 0.0)
    with pytest.raises(ValueError, match=r"order-1 tensor field of shape \(B, 2, N, N\)"):
        S.from_escnn(torch.zeros(1, 3, 4, 4), 2, 1)
