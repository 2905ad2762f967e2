"""escnn_tensor.data.magnetostatics (task ``magnetostatics-3d``): curl B = J and div B = 0 to round-off, an
analytic field with its signs and component layout, and the generator is O_h-equivariant (all 48 elements) with
B a pseudovector."""
import math

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import hyperoctahedral_gspace, tensor_type
from escnn_tensor.data import get_task, spectral
from escnn_tensor.data import magnetostatics as MS
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(3)


def _field_map(task, gspace, out_type=None):
    out_type = task.out_type(gspace) if out_type is None else out_type
    return lambda x: GeometricTensor(task.solve(x.tensor), out_type)


@pytest.mark.parametrize("size", [8, 7])
def test_generator_is_oh_equivariant(gspace, size):
    """J -> B commutes with all 48 elements (vector in, pseudovector out), on the task's currents and on noise."""
    task = get_task("magnetostatics-3d")
    data = task.make(2, size, seed=0)
    assert_equivariant(_field_map(task, gspace), GeometricTensor(data.inputs, task.in_type(gspace)))
    noise = random_input(task.in_type(gspace), size, 2, generator=torch.Generator().manual_seed(1))
    assert_equivariant(_field_map(task, gspace), noise)


def test_b_is_a_pseudovector_not_a_vector(gspace):
    """Control: declaring B a true vector fails the same check (for the 24 improper elements)."""
    task = get_task("magnetostatics-3d")
    data = task.make(1, 6, seed=2)
    wrong = _field_map(task, gspace, tensor_type(gspace, [(1, 1, 1)]))
    errors = equivariance_errors(wrong, GeometricTensor(data.inputs, task.in_type(gspace)))
    assert sum(e > 0.5 for e in errors.values()) == 24


def test_curl_b_is_j_and_b_is_divergence_free():
    j = MS.random_current(3, 10, torch.Generator().manual_seed(3))
    b = MS.magnetic_field(j)
    scale = j.abs().max()
    assert spectral.divergence(j).abs().max() < 1e-12 * scale
    assert (spectral.curl(b) - j).abs().max() < 1e-12 * scale
    assert spectral.divergence(b).abs().max() < 1e-12 * scale
    assert b.mean(dim=(1, 2, 3)).abs().max() < 1e-14 and b.abs().max() > 0.1 * scale
    assert torch.allclose((j * j).sum(-1).mean(dim=(1, 2, 3)), torch.full((3,), 3.0, dtype=torch.float64))


def test_sheet_current_field_has_the_right_signs_and_layout():
    """J = (0, 0, sin(k x)) (current along z, varying along x) has B = (0, -cos(k x) / k, 0): curl B = d_x B_y z_hat.
    Checked in grid layout and, through the task, in escnn layout (axes (-z, -y, x), channels (x, y, z))."""
    n, m = 12, 2
    k = 2 * math.pi * m / n
    x = torch.arange(n, dtype=torch.float64)
    j = torch.zeros(1, n, n, n, 3, dtype=torch.float64)
    j[..., 2] = torch.sin(k * x)[:, None, None]
    b = MS.magnetic_field(j)
    expected = torch.zeros_like(b)
    expected[..., 1] = (-torch.cos(k * x) / k)[:, None, None]
    assert torch.allclose(b, expected, rtol=0, atol=1e-13)
    b_escnn = get_task("magnetostatics-3d").solve(spectral.to_escnn(j, 3, 1))
    # escnn layout: the last axis is +x; channel 1 is B_y
    assert torch.allclose(b_escnn[0, 1, 3, 5, :], -torch.cos(k * x) / k, rtol=0, atol=1e-13)
    assert b_escnn[0, [0, 2]].abs().max() < 1e-13


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="end in 1 axes of size 3"):
        MS.magnetic_field(torch.zeros(1, 4, 4, 4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"order-1 tensor field of shape \(B, 3, N, N, N\)"):
        MS.field_from_escnn_current(torch.zeros(1, 2, 4, 4, 4, dtype=torch.float64))
