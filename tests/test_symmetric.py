"""Symmetric and symmetric traceless tensor representations (issue 17 item 3): sizes and characters against the
symmetric powers computed here from the matrices alone, orthogonality, the embedding into the full tensor, and a
complete, exact GeometricConv between such types."""
import itertools

import numpy as np
import pytest
import torch

import escnn_tensor as et
from escnn_tensor import group_elements, group_matrices
from escnn_tensor.nn import GeometricConv
from escnn_tensor.representations import from_full_tensor, symmetric_basis, to_full_tensor
from escnn_tensor.testing import equivariance_errors, random_input
from tests.nn.test_conv_any_types import bias_dimension, kernel_dimension
from tests.reference import rho

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
SYMS = ("symmetric", "symmetric_traceless")


def sym_power_character(m, k):
    """chi of Sym^k(M) from power sums (Newton): k=0: 1, k=1: p1, k=2: (p1^2 + p2)/2, k=3: (p1^3 + 3 p1 p2 + 2 p3)/6."""
    if k < 0:
        return 0.0
    p = [None] + [float(np.trace(np.linalg.matrix_power(m, j))) for j in (1, 2, 3)]
    return {0: 1.0, 1: p[1], 2: (p[1] ** 2 + p[2]) / 2, 3: (p[1] ** 3 + 3 * p[1] * p[2] + 2 * p[3]) / 6}[k]


def expected_character(m, k, parity, symmetry):
    chi = sym_power_character(m, k)
    if symmetry == "symmetric_traceless":
        chi -= sym_power_character(m, k - 2)  # Sym^k = traceless (+) |x|^2 Sym^(k-2) for orthogonal M
    return chi * (round(np.linalg.det(m)) if parity == -1 else 1)


CASES = [(d, k, p, s) for d in (2, 3) for k in (2, 3) for p in (1, -1) for s in SYMS]


@pytest.mark.parametrize("d,k,parity,symmetry", CASES)
def test_sizes_characters_orthogonality(d, k, parity, symmetry):
    gs = GS[d]
    rep = et.tensor_rep(gs, k, parity, symmetry)
    mats = group_matrices(gs)
    elements = group_elements(gs)
    assert rep.size == round(expected_character(np.eye(d), k, parity, symmetry))
    E = symmetric_basis(d, k, symmetry)
    assert E.shape == (d**k, rep.size)
    for g, m in zip(elements, mats):
        R = rep(g)
        assert abs(np.trace(R) - expected_character(m, k, parity, symmetry)) < 1e-9
        assert abs(rep.character(g) - expected_character(m, k, parity, symmetry)) < 1e-9
        assert np.abs(R.T @ R - np.eye(rep.size)).max() < 1e-12
        # the subspace E is invariant under the full tensor representation and R is its restriction
        assert np.abs(rho(m, k, parity) @ E - E @ R).max() < 1e-12
        # escnn's own reading of the representation (irreps and change of basis) gives the same matrices
        Q = rep.change_of_basis
        blocks = [gs.fibergroup.irrep(*i)(g) for i in rep.irreps]
        from scipy.linalg import block_diag

        assert np.abs(Q @ block_diag(*blocks) @ rep.change_of_basis_inv - R).max() < 1e-10
    if symmetry == "symmetric":
        assert all(set(np.unique(rep(g))) <= {-1.0, 0.0, 1.0} for g in elements)  # signed permutations


def test_documented_sizes_3d():
    sizes = [et.tensor_rep(GS[3], k, 1, s).size for k in (2, 3) for s in SYMS]
    assert sizes == [6, 5, 10, 7]
    assert [et.tensor_rep(GS[2], k, 1, s).size for k in (2, 3) for s in SYMS] == [3, 2, 4, 2]


@pytest.mark.parametrize("d,k,symmetry", [(d, k, s) for d in (2, 3) for k in (2, 3) for s in SYMS])
def test_embedding_and_projection(d, k, symmetry):
    gen = torch.Generator().manual_seed(0)
    n = et.tensor_rep(GS[d], k, 1, symmetry).size
    c = torch.randn(4, n, 3, dtype=torch.float64, generator=gen)
    full = to_full_tensor(c, d, k, symmetry, dim=1)  # (4, d^k, 3)
    assert torch.allclose(from_full_tensor(full, d, k, symmetry, dim=1), c, atol=1e-13, rtol=0)
    T = full.reshape((4,) + (d,) * k + (3,))
    for perm in itertools.permutations(range(k)):  # symmetric in every pair of indices
        assert torch.allclose(T.permute((0,) + tuple(1 + q for q in perm) + (k + 1,)), T, atol=1e-13, rtol=0)
    if symmetry == "symmetric_traceless":
        trace = sum(T[(slice(None), i, i)] for i in range(d))
        assert trace.abs().max() < 1e-13
    # norms are kept (orthonormal basis), and the off-diagonal coordinate of a 2-tensor is sqrt(2) T_xy
    assert torch.allclose(full.pow(2).sum(1), c.pow(2).sum(1), atol=1e-12, rtol=0)
    if k == 2 and symmetry == "symmetric":
        assert torch.allclose(c[:, 1], np.sqrt(2) * T[:, 0, 1], atol=1e-13, rtol=0)


def test_tensor_type_with_symmetric_fields_and_a_complete_exact_conv():
    gs = GS[3]
    t = et.tensor_type(gs, [(0, 1, 1), (2, 1, 1, "symmetric"), (2, 1, 2, "symmetric_traceless")])
    assert t.size == 1 + 6 + 2 * 5
    out = et.tensor_type(gs, [(2, 1, 1, "symmetric_traceless"), (1, 1, 1), (2, -1, 1, "symmetric")])
    for a, b in ((t, out), (out, t)):
        layer = GeometricConv(a, b, 3, padding=1).double().eval()
        assert layer.weights.numel() == kernel_dimension(a, b, 3)
        assert (0 if layer.bias is None else layer.bias.numel()) == bias_dimension(b)
        if layer.bias is not None:
            with torch.no_grad():
                layer.bias.normal_()
        errors = equivariance_errors(layer, random_input(a, spatial=5, generator=torch.Generator().manual_seed(1)))
        assert len(errors) == 48 and max(errors.values()) < 1e-10


def test_conv_2d_symmetric_matches_full_tensor_restricted():
    """A 2D conv into symmetric 2-tensors, embedded into full 2-tensors, is an equivariant conv into full tensors
    whose outputs are symmetric: check equivariance and symmetry of the embedded output."""
    gs = GS[2]
    a = et.tensor_type(gs, [(1, 1, 2), (2, -1, 1, "symmetric_traceless")])
    b = et.tensor_type(gs, [(2, 1, 1, "symmetric")])
    layer = GeometricConv(a, b, 5, padding=2).double().eval()
    assert layer.weights.numel() == kernel_dimension(a, b, 5)
    x = random_input(a, spatial=7, generator=torch.Generator().manual_seed(3))
    errors = equivariance_errors(layer, x)
    assert len(errors) == 8 and max(errors.values()) < 1e-10
    full = to_full_tensor(layer(x).tensor, 2, 2, "symmetric", dim=1)
    assert torch.allclose(full[:, 1], full[:, 2], atol=1e-13, rtol=0)


def test_bad_symmetry():
    with pytest.raises(ValueError, match="symmetry must be one of"):
        et.tensor_rep(GS[2], 2, 1, "antisymmetric")
    with pytest.raises(ValueError, match="symmetry in fields must be one of"):
        et.tensor_type(GS[2], [(2, 1, 1, "sym")])
