"""escnn_tensor.data.subgrid (task ``subgrid-stress``): the stress is symmetric and positive semi-definite, the
filter conserves the mean of every product, the random fields have the stated spectrum and no divergence, and the
generator (fine velocity -> filtered velocity and stress) is D4-equivariant for every factor. The task's target is a
symmetric field (coordinates (xx, sqrt(2) xy, yy)), which cannot be asymmetric by construction: the symmetry of the
stress itself is checked on subgrid.subgrid_stress's full tensors."""
import math

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import hyperoctahedral_gspace, tensor_type
from escnn_tensor.data import get_task, spectral
from escnn_tensor.data import subgrid as SG
from escnn_tensor.representations import to_full_tensor
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(2)


def _maps(task, gspace):
    ub = lambda x: GeometricTensor(task.from_fine(x.tensor)[0], task.in_type(gspace))
    tau = lambda x: GeometricTensor(task.from_fine(x.tensor)[1], task.out_type(gspace))
    return ub, tau


@pytest.mark.parametrize("factor, size", [(4, 8), (2, 9), (3, 5)])
def test_generator_is_d4_equivariant(gspace, factor, size):
    """fine u -> u_bar (vector) and fine u -> tau (2-tensor) commute with all 8 elements, on the task's fine
    fields and on noise, for even and odd factors and coarse sizes (the coarse cells are centred)."""
    task = get_task("subgrid-stress", factor=factor)
    fine_type = task.in_type(gspace)
    u = task.fine_velocity(2, size, torch.Generator().manual_seed(0))
    x = GeometricTensor(spectral.to_escnn(u, 2, 1), fine_type)
    noise = random_input(fine_type, factor * size, 2, generator=torch.Generator().manual_seed(1))
    for f in _maps(task, gspace):
        assert_equivariant(f, x)
        assert_equivariant(f, noise)


def test_plain_subsampling_would_not_be_equivariant(gspace):
    """Control for the centring: sampling every 2nd fine pixel (instead of averaging each coarse cell) puts the
    coarse grid off the fine grid's centre, and the same check fails."""
    u = get_task("subgrid-stress", factor=2).fine_velocity(2, 8, torch.Generator().manual_seed(2))
    x = GeometricTensor(spectral.to_escnn(u, 2, 1), tensor_type(gspace, [(1, 1, 1)]))

    def subsampled(x):
        grid = spectral.from_escnn(x.tensor, 2, 1)
        kernel = spectral.periodic_gaussian_kernel(16, 2, SG.gaussian_sigma(2.0, 2))
        smooth = spectral.ifft(spectral.fft(grid, 2, 1) * spectral.fft(kernel, 2).real[..., None], 2, 1)
        return GeometricTensor(spectral.to_escnn(smooth[:, ::2, ::2].contiguous(), 2, 1), x.type)

    assert max(equivariance_errors(subsampled, x).values()) > 1e-2


def test_stress_is_symmetric_and_positive_semidefinite():
    """tau = tau^T exactly; its eigenvalues are >= 0 up to round-off (the filter is a positive kernel: the
    sampled periodic Gaussian times the cell average, whose weights are checked to be >= 0 here), and for these
    fields it is far from zero."""
    task = get_task("subgrid-stress", factor=4)
    u = task.fine_velocity(3, 16, torch.Generator().manual_seed(3))
    u_bar, tau = SG.subgrid_stress(u, 4)
    assert u_bar.shape == (3, 16, 16, 2) and tau.shape == (3, 16, 16, 2, 2)
    assert torch.equal(tau[..., 0, 1], tau[..., 1, 0])
    eig = torch.linalg.eigvalsh(tau)
    scale = eig.abs().max()
    assert eig.min() >= -1e-12 * scale and eig.max() > 1e-2
    kernel = spectral.periodic_gaussian_kernel(64, 2, SG.gaussian_sigma(2.0, 4))
    assert kernel.min() >= 0 and abs(kernel.sum().item() - 1) < 1e-14


def test_filter_conserves_means_and_constants():
    """mean over the coarse grid of (tau_ij + u_bar_i u_bar_j) = mean over the fine grid of u_i u_j, and the mean
    of u_bar is the mean of u (the filter weights sum to 1); a constant field has u_bar = u and tau = 0."""
    u = torch.randn(2, 24, 24, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    u_bar, tau = SG.subgrid_stress(u, 3, filter_width=1.5)
    lhs = (tau + u_bar[..., :, None] * u_bar[..., None, :]).mean(dim=(1, 2))
    rhs = (u[..., :, None] * u[..., None, :]).mean(dim=(1, 2))
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-13)
    assert torch.allclose(u_bar.mean(dim=(1, 2)), u.mean(dim=(1, 2)), rtol=0, atol=1e-14)
    const = torch.tensor([0.3, -1.2], dtype=torch.float64).expand(1, 12, 12, 2)
    c_bar, c_tau = SG.subgrid_stress(const, 4)
    assert torch.allclose(c_bar, const[:, :3, :3], rtol=0, atol=1e-14) and c_tau.abs().max() < 1e-14


def test_cell_average_and_width_conventions():
    """With a vanishing Gaussian the filter is the plain cell average (fine pixels factor*I .. factor*I+factor-1);
    sigma = width * factor / sqrt(12)."""
    f = torch.randn(1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    avg = SG.coarse_filter(f, 3, filter_width=1e-3)
    assert torch.allclose(avg[0, 1, 2], f[0, 3:6, 6:9].mean(), rtol=0, atol=1e-14)
    assert math.isclose(SG.gaussian_sigma(2.0, 4), 8 / math.sqrt(12))


@pytest.mark.parametrize("slope", [-5 / 3, -3.0])
def test_random_velocity_is_divergence_free_with_the_stated_spectrum(slope):
    """div u = 0 to round-off, <|u|^2> = 1, and the shell-averaged energy spectrum E(m) ~ m^slope (log-log fit
    over 2 <= m <= 20)."""
    n = 64
    u = SG.random_velocity(16, n, torch.Generator().manual_seed(6), energy_slope=slope)
    assert spectral.divergence(u).abs().max() < 1e-12 * n
    assert torch.allclose((u * u).sum(-1).mean(dim=(1, 2)), torch.ones(16, dtype=torch.float64), atol=1e-12)
    uh = spectral.fft(u, 2, n_trailing=1)
    power = (uh.abs() ** 2).sum(-1).mean(0)
    m = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    shell = (m[:, None] ** 2 + m[None, :] ** 2).sqrt().round().long()
    energy = torch.zeros(n, dtype=torch.float64).index_add_(0, shell.flatten(), power.flatten())
    ms = torch.arange(2, 21, dtype=torch.float64)
    fit = torch.linalg.lstsq(torch.stack([ms.log(), torch.ones_like(ms)], 1), energy[2:21].log()[:, None]).solution
    assert abs(fit[0].item() - slope) < 0.15, fit[0].item()


def test_navier_stokes_source():
    """The Navier-Stokes source (fine grid, unforced) gives divergence-free fields, PSD stress, and differs from
    the Gaussian source."""
    task = get_task("subgrid-stress", source="navier-stokes", factor=2, ns_time=0.05)
    u = task.fine_velocity(2, 8, torch.Generator().manual_seed(7))
    assert spectral.divergence(u, spacing=1 / 16).abs().max() < 1e-10 * u.abs().max() * 16
    data = task.make(2, 8, seed=7)
    assert data.targets.shape == (2, 3, 8, 8)  # a symmetric field: (xx, sqrt(2) xy, yy)
    tau = spectral.from_escnn(to_full_tensor(data.targets, 2, 2, "symmetric", dim=1), 2, 2)
    assert torch.linalg.eigvalsh(tau).min() >= -1e-12 * tau.abs().max()
    other = get_task("subgrid-stress", factor=2).make(2, 8, seed=7)
    assert not torch.allclose(data.inputs, other.inputs)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="multiple of factor=3"):
        SG.coarse_filter(torch.zeros(1, 16, 16, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        SG.subgrid_stress(torch.zeros(1, 8, 8, 2, dtype=torch.float64), 0)
    with pytest.raises(ValueError, match="filter_width must be a positive"):
        SG.gaussian_sigma(-1.0, 2)
    with pytest.raises(ValueError, match="end in 1 axes of size 2"):
        SG.subgrid_stress(torch.zeros(1, 8, 8, 3, dtype=torch.float64), 2)
