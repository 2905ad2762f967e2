"""ChangeOfBasis: exact equivariant isomorphism between isomorphic FieldTypes, refusal of non-isomorphic ones."""
import numpy as np
import pytest
import torch
from escnn import nn

import escnn_tensor as et
from escnn_tensor.nn import ChangeOfBasis, GeometricConv
from escnn_tensor.testing import equivariance_errors, random_input

GS2 = et.hyperoctahedral_gspace(2)
GS3 = et.hyperoctahedral_gspace(3)


def pairs():
    G2, G3 = GS2.fibergroup, GS3.fibergroup
    # (in 2D the pseudovector is isomorphic to the vector under D4: det(M) M = R M R^T for the 90-degree rotation R)
    yield "2D pseudovector <-> vector", et.tensor_type(GS2, [(1, -1, 1)]), et.tensor_type(GS2, [(1, 1, 1)])
    yield "2D vector <-> irrep(1,1)", et.tensor_type(GS2, [(1, 1, 1)]), nn.FieldType(GS2, [G2.irrep(1, 1)])
    yield "2D 2-tensor + scalar <-> irreps, reordered", et.tensor_type(GS2, [(2, 1, 1), (0, 1, 1)]), nn.FieldType(
        GS2, [G2.trivial_representation] + [G2.irrep(*i) for i in reversed(et.tensor_rep(GS2, 2, 1).irreps)])
    yield "2D regular <-> its irreps", nn.FieldType(GS2, [G2.regular_representation]), nn.FieldType(
        GS2, [G2.irrep(*i) for i in reversed(G2.regular_representation.irreps)])
    yield "3D vector <-> irrep", et.tensor_type(GS3, [(1, 1, 1)]), nn.FieldType(
        GS3, [G3.irrep(*et.tensor_rep(GS3, 1, 1).irreps[0])])
    yield "3D pseudovector + 2-tensor <-> irreps", et.tensor_type(GS3, [(1, -1, 1), (2, 1, 1)]), nn.FieldType(
        GS3, [G3.irrep(*i) for i in et.tensor_rep(GS3, 2, 1).irreps + et.tensor_rep(GS3, 1, -1).irreps])


PAIRS = list(pairs())


@pytest.mark.parametrize("name,a,b", PAIRS, ids=[p[0] for p in PAIRS])
def test_exact_equivariant_isomorphism(name, a, b):
    f = ChangeOfBasis(a, b).double()
    g = ChangeOfBasis(b, a).double()
    x = random_input(a, spatial=5, generator=torch.Generator().manual_seed(0))
    errors = equivariance_errors(f, x)
    assert len(errors) == a.gspace.fibergroup.order() and max(errors.values()) < 1e-10
    # the intertwining relation on the matrices themselves, every element, from escnn's representation matrices
    A = f.matrix.numpy()
    for el in a.gspace.fibergroup.elements:
        assert np.abs(A @ a.representation(el) - b.representation(el) @ A).max() < 1e-10
    # orthogonal, and the reverse map is its inverse
    assert np.abs(A.T @ A - np.eye(a.size)).max() < 1e-12
    assert torch.allclose(g(f(x)).tensor, x.tensor, atol=1e-12, rtol=0)
    assert torch.equal(f.export()(x.tensor), f(x).tensor) or torch.allclose(f.export()(x.tensor), f(x).tensor,
                                                                             atol=1e-14, rtol=0)


def test_vector_to_irrep_and_conv_on_either_side_agree():
    """A GeometricConv to irrep(1,1) equals a GeometricConv to vectors followed by the change of basis, up to the
    weights: both kernel spaces are complete and the same dimension."""
    G = GS2.fibergroup
    t = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1)])
    vec, irr = et.tensor_type(GS2, [(1, 1, 1)]), nn.FieldType(GS2, [G.irrep(1, 1)])
    assert GeometricConv(t, vec, 3).weights.numel() == GeometricConv(t, irr, 3).weights.numel()


def test_refuses_non_isomorphic_types():
    G = GS2.fibergroup
    with pytest.raises(ValueError, match=r"not isomorphic.*irreps differ"):
        ChangeOfBasis(et.tensor_type(GS3, [(1, 1, 1)]), et.tensor_type(GS3, [(1, -1, 1)]))
    with pytest.raises(ValueError, match=r"not isomorphic"):
        ChangeOfBasis(nn.FieldType(GS2, [G.regular_representation]), et.tensor_type(GS2, [(2, 1, 2)]))
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        ChangeOfBasis([(1, 1, 1)], et.tensor_type(GS2, [(1, 1, 1)]))
    with pytest.raises(ValueError, match="same gspace"):
        ChangeOfBasis(et.tensor_type(GS2, [(1, 1, 1)]), et.tensor_type(GS3, [(0, 1, 3)]))
