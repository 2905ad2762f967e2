"""escnn_tensor.data.tidal (task ``tidal``): the tidal tensor is the right physics (symmetric, trace = density
contrast, minus the gradient of the gravitational field, a point mass's analytic tides) and the generator is
D4-equivariant (scalar in, 2-tensor out). The task's target is a symmetric field (coordinates (T_xx, sqrt(2) T_xy,
T_yy)), which cannot be asymmetric by construction: the symmetry of the tidal tensor itself is checked on the
full tensors of tidal.tidal_tensor and of the task with target='full'."""
import math

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import escnn_to_grid, hyperoctahedral_gspace
from escnn_tensor.data import get_task, gravity, spectral, tidal
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(2)


def _tidal_map(task, gspace):
    return lambda x: GeometricTensor(task.solve(x.tensor), task.out_type(gspace))


@pytest.mark.parametrize("size", [16, 15])
def test_generator_is_d4_equivariant(gspace, size):
    """rho -> T commutes with all 8 elements (escnn transform, trivial in, tensor_rep(2, +1, 'symmetric') out, and
    tensor_rep(2, +1) out with target='full'): on noise and on the task's own densities, even and odd N."""
    for task in (get_task("tidal"), get_task("tidal", target="full")):
        gen = torch.Generator().manual_seed(0)
        assert_equivariant(_tidal_map(task, gspace), random_input(task.in_type(gspace), size, 3, generator=gen))
        data = task.make(3, size, seed=1)
        assert_equivariant(_tidal_map(task, gspace), GeometricTensor(data.inputs, task.in_type(gspace)))


def test_the_equivariance_check_sees_a_wrong_output_type(gspace):
    """Control: declaring T a pseudotensor (parity -1) fails the same check, so the test above can fail."""
    from escnn_tensor import tensor_type

    task = get_task("tidal")
    x = random_input(task.in_type(gspace), 12, 2, generator=torch.Generator().manual_seed(2))
    wrong = lambda x: GeometricTensor(task.solve(x.tensor), tensor_type(gspace, [(2, -1, 1, "symmetric")]))
    assert max(equivariance_errors(wrong, x).values()) > 0.5


def test_symmetric_trace_and_minus_grad_of_gravity():
    """T_ij = T_ji exactly, tr T = rho - mean(rho) and T_ij = -d_i g_j (g from escnn_tensor.data.gravity), to
    round-off, on the task's band-limited densities."""
    gen = torch.Generator().manual_seed(3)
    rho = gravity.point_mass_density(4, 24, generator=gen)
    t = tidal.tidal_tensor(rho)
    assert t.shape == (4, 24, 24, 2, 2)
    assert torch.equal(t[..., 0, 1], t[..., 1, 0])
    contrast = rho - rho.mean(dim=(-2, -1), keepdim=True)
    scale = contrast.abs().max()
    assert (t[..., 0, 0] + t[..., 1, 1] - contrast).abs().max() <= 1e-12 * scale
    g = gravity.gravitational_field(rho)
    minus_grad_g = -torch.stack([spectral.gradient(g[..., j], 2) for j in range(2)], dim=-1)  # [..., i, j] = -d_i g_j
    assert (t - minus_grad_g).abs().max() <= 1e-12 * t.abs().max()
    assert t[..., 0, 1].abs().max() > 1e-3 * scale  # the off-diagonal part is not trivially zero


def test_point_mass_tides_match_the_analytic_law():
    """Independent check of signs, scale and component layout. A smoothed unit mass at the centre of a 64x64 box,
    in 2D, phi = ln(r) / (2 pi) - r^2 / (4 N^2) (the background), so outside the smoothing radius
    T = (delta_ij - 2 n_i n_j) / (2 pi r^2) - delta_ij / (2 N^2), n = r_hat (stretching along n, compression
    across). Read in escnn layout: pixel [row, col] is at x = col - c, y = c - row; channels (xx, xy, yx, yy) with
    target='full', (xx, sqrt(2) xy, yy) by default."""
    n, c = 64, 32  # smoothing 1.5 px, band limited: the smoothing and the periodic images change T by < 1%
    point = torch.zeros(1, 1, n, n, dtype=torch.float64)
    point[0, 0, c, c] = 1.0
    k2 = (2 * math.pi * torch.fft.fftfreq(n, dtype=torch.float64)) ** 2
    smooth = torch.exp(-0.5 * 1.5**2 * (k2[:, None] + k2[None, :])) * spectral.nyquist_free(n, 2)  # band limited
    rho = torch.fft.ifft2(torch.fft.fft2(point) * smooth).real
    t = get_task("tidal", target="full").solve(rho)[0]
    sym = get_task("tidal").solve(rho)[0]
    for dr, dc in [(0, 7), (-8, 0), (5, 5), (-3, 7), (9, -2), (-6, -10)]:
        x, y = dc, -dr
        r2 = x * x + y * y
        nx, ny = x / math.sqrt(r2), y / math.sqrt(r2)
        expected = [
            (1 - 2 * nx * nx) / (2 * math.pi * r2) - 1 / (2 * n * n),
            -2 * nx * ny / (2 * math.pi * r2),
            -2 * nx * ny / (2 * math.pi * r2),
            (1 - 2 * ny * ny) / (2 * math.pi * r2) - 1 / (2 * n * n),
        ]
        got = t[:, c + dr, c + dc]
        assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=2e-2 / (2 * math.pi * r2))
        coords = torch.tensor([expected[0], math.sqrt(2) * expected[1], expected[3]], dtype=torch.float64)
        assert torch.allclose(sym[:, c + dr, c + dc], coords, rtol=0, atol=3e-2 / (2 * math.pi * r2))


def test_escnn_and_grid_layouts_agree():
    """The full target is tidal_tensor in escnn layout; the default target holds its coordinates (xx, sqrt(2) xy, yy)
    from the same inputs."""
    data = get_task("tidal", target="full").make(2, 10, seed=4)
    t = tidal.tidal_tensor(escnn_to_grid(data.inputs[:, 0], 2))
    assert torch.equal(spectral.from_escnn(data.targets, 2, 2), t)
    sym = get_task("tidal").make(2, 10, seed=4)
    assert torch.equal(sym.inputs, data.inputs)
    tg = spectral.to_escnn(t, 2, 2)
    coords = torch.stack([tg[:, 0], math.sqrt(2) * tg[:, 1], tg[:, 3]], 1)
    torch.testing.assert_close(sym.targets, coords, rtol=0, atol=1e-15 * tg.abs().max())


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, 1, N, N\)"):
        tidal.tidal_from_escnn_density(torch.zeros(2, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="equal spatial sides"):
        tidal.tidal_tensor(torch.zeros(8, 9, dtype=torch.float64))
