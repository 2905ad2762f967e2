"""escnn_tensor.data.gravity: the gravity data are right physics (Gauss's law, no curl, 1/r law, layouts) and the
generator is equivariant."""
import math

import numpy as np
import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import escnn_to_grid, hyperoctahedral_gspace
from escnn_tensor.data import gravity as G
from escnn_tensor.testing import assert_equivariant, random_input


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(2)


def _field_map(gspace):
    """density GeometricTensor (B, 1, N, N) -> field GeometricTensor (B, 2, N, N), the data generator."""
    return lambda x: GeometricTensor(G.field_from_escnn_density(x.tensor), G.field_type(gspace))


# ------------------------------------------------------------------------------------------------ physics


@pytest.mark.parametrize("size", [16, 15])
def test_field_is_d4_equivariant(gspace, size):
    """rho -> g commutes with all 8 elements of D4 (escnn's transform: scalar in, vector out), even and odd N."""
    gen = torch.Generator().manual_seed(1)
    noise = random_input(G.density_type(gspace), spatial=size, batch=3, generator=gen)  # no symmetry at all
    assert_equivariant(_field_map(gspace), noise)  # float64: rtol 1e-10
    masses = G.make_dataset(3, size, generator=gen)
    assert_equivariant(_field_map(gspace), GeometricTensor(masses.density, G.density_type(gspace)))


def test_gauss_law_and_zero_curl():
    """div g = -(rho - mean rho) and curl g = 0 with the same spectral operators, to round-off."""
    gen = torch.Generator().manual_seed(2)
    rho = G.point_mass_density(4, 32, generator=gen)
    g = G.gravitational_field(rho)
    source = rho - rho.mean(dim=(-2, -1), keepdim=True)
    scale = source.abs().max()
    assert (G.divergence(g) + source).abs().max() <= 1e-10 * scale
    assert G.curl(g).abs().max() <= 1e-10 * scale
    assert g.abs().max() > 1e-3  # the field is not trivially zero


def test_point_mass_matches_inverse_r_law():
    """Independent check of sign, scale and layout: one smoothed unit mass at the centre of a 64x64 box.

    In 2D with lap(phi) = rho - mean, Gauss's theorem gives g(r) = (-1/(2 pi r) + r / (2 N^2)) r_hat (attraction
    plus the uniform negative background); outside the smoothing radius and far from the box edge the periodic
    images change it by O((r/N)^3) and the band limit by about 1e-3, hence the 5e-3 tolerance. Positions are read
    in escnn layout: the pixel [row, col] is at x = col - c, y = c - row; channel 0 is g_x, channel 1 is g_y.
    """
    n, c = 64, 32
    point = torch.zeros(1, 1, n, n, dtype=torch.float64)
    point[0, 0, c, c] = 1.0
    k2 = (2 * math.pi * torch.fft.fftfreq(n, dtype=torch.float64)) ** 2
    smooth = torch.exp(-0.5 * (k2[:, None] + k2[None, :]))
    rho = torch.fft.ifft2(torch.fft.fft2(point) * smooth).real
    g = G.field_from_escnn_density(rho)[0]
    for dr, dc in [(0, 4), (0, -6), (-5, 0), (8, 0), (3, 4), (-6, -6), (2, -7)]:
        x, y = dc, -dr
        r = math.hypot(x, y)
        radial = -1 / (2 * math.pi * r) + r / (2 * n * n)
        expected = np.array([radial * x / r, radial * y / r])
        got = g[:, c + dr, c + dc].numpy()
        assert np.linalg.norm(got - expected) <= 5e-3 * abs(radial), (x, y, got, expected)


def test_density_masses_and_band_limit():
    """Total mass = sum of the point masses in range; no Nyquist content; same seed -> same data."""
    gen = torch.Generator().manual_seed(3)
    rho = G.point_mass_density(50, 16, n_masses=(1, 1), mass_range=(0.5, 1.5), generator=gen)
    total = rho.sum(dim=(-2, -1))
    assert ((total > 0.5 - 1e-12) & (total < 1.5 + 1e-12)).all()
    assert total.std() > 0.1  # masses differ between samples
    spectrum = torch.fft.fft2(rho)
    assert spectrum[:, 8, :].abs().max() < 1e-12 and spectrum[:, :, 8].abs().max() < 1e-12
    a = G.make_dataset(4, 16, generator=torch.Generator().manual_seed(7))
    b = G.make_dataset(4, 16, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.density, b.density) and torch.equal(a.field, b.field)


def test_elongated_smoothing_is_along_x():
    """smoothing=(s_x, s_y): one mass spreads with standard deviations s_x along x and s_y along y (grid layout)."""
    n = 33
    rho = G.point_mass_density(1, n, n_masses=(1, 1), smoothing=(2.0, 0.7), generator=torch.Generator().manual_seed(8))
    rho = rho[0] / rho[0].sum()
    ix = int(rho.sum(dim=1).argmax())
    iy = int(rho.sum(dim=0).argmax())
    d = torch.arange(n, dtype=torch.float64)
    dx = (d - ix + n // 2) % n - n // 2  # periodic offsets from the mass
    dy = (d - iy + n // 2) % n - n // 2
    sx = (rho.sum(dim=1) * dx**2).sum().sqrt().item()
    sy = (rho.sum(dim=0) * dy**2).sum().sqrt().item()
    assert abs(sx - 2.0) < 0.05 and abs(sy - 0.7) < 0.05, (sx, sy)


def test_escnn_and_grid_layouts_agree():
    """make_dataset's escnn-layout field is gravitational_field of the grid-layout density, re-laid."""
    data = G.make_dataset(2, 12, generator=torch.Generator().manual_seed(4))
    rho_grid = escnn_to_grid(data.density[:, 0], 2)
    g_grid = G.gravitational_field(rho_grid)
    assert torch.allclose(escnn_to_grid(data.field.movedim(1, -1), 2, n_trailing=1), g_grid, rtol=0, atol=1e-15)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="square"):
        G.gravitational_field(torch.zeros(8, 9, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating"):
        G.gravitational_field(torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="size 2"):
        G.divergence(torch.zeros(8, 8, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_masses"):
        G.point_mass_density(2, 8, n_masses=(3, 1))
    with pytest.raises(ValueError, match=r"\(B, 1, N, N\)"):
        G.field_from_escnn_density(torch.zeros(2, 2, 8, 8, dtype=torch.float64))


def test_registered_task_wraps_this_generator():
    """The registry's ``gravity`` task is make_dataset with a generator seeded by ``seed`` (same numbers), and its
    solve() is field_from_escnn_density (the map tested for equivariance above)."""
    from escnn_tensor.data import get_task

    data = get_task("gravity").make(3, 12, seed=9)
    direct = G.make_dataset(3, 12, generator=torch.Generator().manual_seed(9))
    assert torch.equal(data.inputs, direct.density) and torch.equal(data.targets, direct.field)
    assert torch.equal(get_task("gravity").solve(direct.density), G.field_from_escnn_density(direct.density))
