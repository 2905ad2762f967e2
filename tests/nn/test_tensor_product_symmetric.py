"""TensorProductNonLinearity and GatedQuadratic on symmetric and symmetric traceless tensor fields, alone and mixed
with full tensor fields (issue 17).

Completeness: the number of weights equals the dimension of the equivariant quadratic maps, counted here from the
characters alone (a pair of fields A x B -> C: (1/|G|) sum_g chi_C chi_A chi_B; a field with itself, the symmetric
square: (1/|G|) sum_g chi_C (chi_A^2 + chi_A(g^2)) / 2), with the characters of the symmetric powers computed from the
group's matrices (tests/test_symmetric.py); non-redundancy by the rank of the monomial coefficients; equivariance over
every group element in float64 to 1e-10 on random inputs; fields that are not tensor fields are refused with the
escnn module to use."""
import numpy as np
import pytest
import torch
from escnn import nn as enn
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor import group_matrices
from escnn_tensor.models import MODELS
from escnn_tensor.nn import GatedQuadratic, TensorProductNonLinearity
from escnn_tensor.nn._fields import ESCNN_ALTERNATIVES
from escnn_tensor.representations import tensor_symmetry_info, to_full_tensor
from escnn_tensor.testing import equivariance_errors, random_input
from tests.nn.test_nonlinearities import quadratic_map_rank
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D, character, randomize
from tests.test_symmetric import expected_character

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
S, T = "symmetric", "symmetric_traceless"


def chi(m, key):
    """Character of a field type (k, parity[, symmetry]) at the matrix m: from the matrix alone."""
    k, p = key[:2]
    return character(m, k, p) if len(key) == 2 or k < 2 else expected_character(m, k, p, key[2])


def kinds(spec):
    """{(k, parity[, symmetry]): multiplicity}, in order of first appearance."""
    out = {}
    for entry in spec:
        key = tuple(entry[:2]) + tuple(entry[3:])
        out[key] = out.get(key, 0) + entry[2]
    return out


def average(gs, f):
    mats = group_matrices(gs)
    n = sum(f(m) for m in mats) / len(mats)
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def expected_weight_count(gs, spec_in, spec_out):
    """dim of the equivariant quadratic maps from the fields of spec_in to those of spec_out, from characters."""
    fin, fout = kinds(spec_in), kinds(spec_out)
    types = list(fin)
    total = 0
    for o, mo in fout.items():
        for i, a in enumerate(types):
            ma = fin[a]
            for b in types[i + 1:]:
                total += mo * ma * fin[b] * average(gs, lambda m: chi(m, o) * chi(m, a) * chi(m, b))
            pair = average(gs, lambda m: chi(m, o) * chi(m, a) ** 2)
            square = average(gs, lambda m: chi(m, o) * (chi(m, a) ** 2 + chi(m @ m, a)) / 2)
            total += mo * (ma * (ma - 1) // 2 * pair + ma * square)
    return total


def gspace(d, group):
    return GS[d] if group == "full" else (SUBGROUP_GSPACES_2D if d == 2 else SUBGROUP_GSPACES_3D)[group]()


def inp(ft, seed, spatial=None, batch=2):
    spatial = spatial or (5 if ft.gspace.dimensionality == 2 else 3)
    return random_input(ft, spatial, batch, torch.float64, torch.Generator().manual_seed(seed))


CASES = [
    (2, "full", [(2, 1, 2, S), (1, 1, 1)], None),
    (2, "full", [(0, 1, 1), (2, 1, 1, S), (2, -1, 1, T), (1, -1, 1), (2, 1, 1)], None),
    (2, "full", [(2, 1, 1, T), (2, 1, 1)], [(2, 1, 1, S), (0, -1, 1), (2, -1, 2, T)]),
    (2, "full", [(3, 1, 1, S), (1, 1, 1)], [(3, -1, 1, T), (0, 1, 1)]),
    (2, "C4", [(2, 1, 2, S), (1, 1, 1)], [(2, 1, 1, T), (0, -1, 1)]),
    (3, "full", [(0, 1, 1), (1, 1, 1), (2, 1, 2, S)], None),
    (3, "full", [(2, 1, 1, S), (2, 1, 1, T), (2, 1, 1), (1, -1, 1)], [(2, 1, 1, T), (0, 1, 1), (2, -1, 1, S)]),
    (3, "full", [(3, 1, 1, S), (1, 1, 1)], [(3, 1, 1, T), (2, 1, 1, S)]),
    (3, "D4h", [(2, 1, 1, S), (1, -1, 1)], [(2, 1, 1, T), (1, -1, 1)]),
]


@pytest.mark.parametrize("d,group,spec_in,spec_out", CASES)
def test_weight_count_is_character_formula_and_equivariant(d, group, spec_in, spec_out):
    gs = gspace(d, group)
    fin = et.tensor_type(gs, spec_in)
    fout = et.tensor_type(gs, spec_out or spec_in)
    expected = expected_weight_count(gs, spec_in, spec_out or spec_in)
    assert expected > 0
    layer = TensorProductNonLinearity(fin, fout, bias=True)
    assert layer.weights.numel() == expected
    # the bias: one weight per invariant of every output field (the trivial irrep's multiplicity, from characters)
    n_bias = sum(m * average(gs, lambda g: chi(g, key)) for key, m in kinds(spec_out or spec_in).items())
    assert (0 if layer.bias is None else layer.bias.numel()) == n_bias
    layer = randomize(layer).double()
    x = inp(fin, seed=1)
    y = layer(x)
    assert y.type is fout and y.tensor.abs().max() > 1e-3
    errors = equivariance_errors(layer, x)
    assert len(errors) == gs.fibergroup.order() and max(errors.values()) < 1e-10


@pytest.mark.parametrize("d,spec", [(2, [(2, 1, 2, S), (1, 1, 1), (2, -1, 1, T), (0, 1, 1)]),
                                    (3, [(2, 1, 1, S), (1, 1, 1), (2, 1, 1, T)])])
def test_maps_are_linearly_independent(d, spec):
    """weights -> quadratic map is injective (rank of the monomial coefficients = number of weights); with the count
    and equivariance, the layer spans exactly the equivariant quadratic maps between symmetric fields."""
    ft = et.tensor_type(GS[d], spec)
    layer = TensorProductNonLinearity(ft, initialize=False).double()
    assert quadratic_map_rank(layer, ft) == layer.weights.numel()


def test_full_tensor_layers_are_unchanged():
    """The restriction applies to symmetric fields only: on full tensor fields the weights' basis is the invariant
    filters themselves (orthonormal, in their order), as before."""
    from escnn_tensor.filters import invariant_filters

    ft = et.tensor_type(GS[2], [(1, 1, 1), (2, 1, 1)])
    out = et.tensor_type(GS[2], [(1, 1, 1)])
    layer = TensorProductNonLinearity(ft, out, initialize=False).double()
    o, a, b, kind, offset, shape = layer.weight_layout[-1]  # vector x 2-tensor -> vector: every invariant of order 4
    assert (kind, shape) == ("pairs", (1, 1, 1, invariant_filters(GS[2], 1, 4, 1).shape[0]))
    F = invariant_filters(GS[2], 1, 4, 1).reshape(-1, 2, 2, 4).double()
    x = torch.randn(1, ft.size, 1, 1, dtype=torch.float64)
    for w in range(shape[-1]):
        with torch.no_grad():
            layer.weights.zero_()
            layer.weights[offset + w] = 1.0
        expect = torch.einsum("oab,a,b->o", F[w], x[0, :2, 0, 0], x[0, 2:, 0, 0])
        torch.testing.assert_close(layer(GeometricTensor(x, ft)).tensor[0, :, 0, 0], expect, rtol=1e-13, atol=1e-13)


def test_vector_products_into_a_symmetric_2_tensor_are_the_three_known_maps():
    """vector (x) vector -> symmetric 2-tensor under O_h: x x^T, |x|^2 I and diag(x_i^2) (the last one equivariant
    under the signed permutations, not under O(3)): 3 maps by the character formula; the layer's outputs, embedded
    into full tensors, are symmetric and lie in their span pixel by pixel, and all three are reached."""
    gs = GS[3]
    vec = et.tensor_type(gs, [(1, 1, 1)])
    sym = et.tensor_type(gs, [(2, 1, 1, S)])
    layer = TensorProductNonLinearity(vec, sym, initialize=False).double()
    assert layer.weights.numel() == expected_weight_count(gs, [(1, 1, 1)], [(2, 1, 1, S)]) == 3
    v = inp(vec, seed=4).tensor
    outer = torch.einsum("bi...,bj...->bij...", v, v)
    eye = torch.eye(3, dtype=v.dtype).reshape(1, 3, 3, 1, 1, 1)
    A = torch.stack([outer, eye * (v * v).sum(1)[:, None, None], eye * (v * v)[:, None]], -1)
    A = A.movedim((1, 2), (-3, -2)).reshape(-1, 9, 3)  # (pixels, 9 components, 3 maps)
    outs = []
    for w in range(3):
        with torch.no_grad():
            layer.weights.zero_()
            layer.weights[w] = 1.0
        full = to_full_tensor(layer(GeometricTensor(v, vec)).tensor, 3, 2, S, dim=1).reshape((2, 3, 3) + v.shape[2:])
        assert torch.allclose(full, full.transpose(1, 2), atol=1e-13, rtol=0)
        rhs = full.movedim((1, 2), (-2, -1)).reshape(-1, 9, 1)  # (pixels, 9 components, 1)
        sol = torch.linalg.lstsq(A, rhs).solution
        assert (A @ sol - rhs).abs().max() < 1e-12
        outs.append(sol[:, :, 0].mean(0))  # the (pixel-independent) coefficients of the map
    assert torch.linalg.matrix_rank(torch.stack(outs)).item() == 3


def test_gated_quadratic_on_symmetric_fields():
    for d in (2, 3):
        ft = et.tensor_type(GS[d], [(0, 1, 2), (1, 1, 1), (2, 1, 2, S), (2, -1, 1, T), (2, 1, 1)])
        layer = GatedQuadratic(ft).double()
        # probes: one field of each distinct type, symmetry kept
        assert [r.name for r in layer.probe.out_type.representations] == list(
            dict.fromkeys(r.name for r in ft.representations))
        x = inp(ft, seed=5)
        assert torch.equal(layer(x).tensor, layer.gate(x).tensor)  # starts as the gate
        randomize(layer)
        assert layer.product(layer.squash(layer.probe(x))).tensor.abs().max() > 1e-3
        errors = equivariance_errors(layer, x)
        assert len(errors) == GS[d].fibergroup.order() and max(errors.values()) < 1e-10


def test_gated_quadratic_parameter_counts_from_characters():
    gs = GS[3]
    spec = [(0, 1, 2), (1, 1, 2), (2, 1, 2, S)]
    layer = GatedQuadratic(et.tensor_type(gs, spec))
    fields = kinds(spec)
    probes = [key[:2] + (1,) + key[2:] for key in fields]
    # P: one 1x1 equivariant map per (input field, probe): dim Hom = (1/|G|) sum_g chi_in chi_probe
    n_probe = sum(m * average(gs, lambda g: chi(g, a) * chi(g, b)) for a, m in fields.items() for b in fields)
    assert sum(p.numel() for p in layer.probe.parameters()) == n_probe
    assert layer.product.weights.numel() == expected_weight_count(gs, probes, spec)


@pytest.mark.parametrize("symmetry", [S, T])
def test_model_with_gated_quadratic_and_symmetric_hidden_tensors_3d(symmetry):
    t_in, t_out = et.tensor_type(GS[3], [(1, 1, 1)]), et.tensor_type(GS[3], [(2, 1, 1)])
    model = MODELS["resnet"](t_in, t_out, "geometric", width=1, num_blocks=1, hidden_symmetry=symmetry,
                             nonlinearity="gated_quadratic").double()
    gq = [m for m in model.modules() if isinstance(m, GatedQuadratic)]
    assert gq and all(symmetry in {tensor_symmetry_info(r)[2] for r in m.in_type.representations} for m in gq)
    randomize(model)
    model.eval()
    errors = equivariance_errors(model, random_input(t_in, spatial=4, generator=torch.Generator().manual_seed(6)))
    assert len(errors) == 48 and max(errors.values()) < 1e-10


@pytest.mark.parametrize("name", ["TensorProductNonLinearity", "GatedQuadratic"])
def test_other_escnn_fields_refused_with_the_escnn_module_to_use(name):
    G = GS[2].fibergroup
    ft = enn.FieldType(GS[2], [et.tensor_rep(GS[2], 2, 1, S), G.regular_representation])
    with pytest.raises(ValueError, match="in_type.*field 1 \\(regular, size 8\\)") as err:
        getattr(__import__("escnn_tensor.nn", fromlist=[name]), name)(ft)
    assert ESCNN_ALTERNATIVES[name] in str(err.value)
    if name == "TensorProductNonLinearity":
        with pytest.raises(ValueError, match="out_type.*regular"):
            TensorProductNonLinearity(et.tensor_type(GS[2], [(1, 1, 1)]), ft)
