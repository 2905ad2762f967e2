"""GeometricConv / GeometricConvTransposed between any escnn field types (issue 17): regular, irreducible, quotient,
direct sums and mixtures with tensor fields. Completeness against the character formula computed here from escnn's
own characters (rep.character), equivariance in float64 over every group element, escnn interop."""
import copy
import pickle

import numpy as np
import pytest
import torch
from escnn import gspaces, nn

import escnn_tensor as et
from escnn_tensor.nn import GeometricConv, GeometricConvTransposed
from escnn_tensor.testing import equivariance_errors, random_input
from tests.reference import doubled_offsets, randomize

GS2 = et.hyperoctahedral_gspace(2)
GS3 = et.hyperoctahedral_gspace(3)


def kernel_dimension(in_type, out_type, K):
    """(1/|G|) sum_g chi_out(g) chi_in(g) #(kernel pixels fixed by g), summed over field pairs, from escnn's
    characters and escnn's basespace_action (independent of the layer code)."""
    gs = in_type.gspace
    d = gs.dimensionality
    off = doubled_offsets(K, d)
    total = 0.0
    for g in gs.fibergroup.elements:
        M = np.rint(np.asarray(gs.basespace_action(g), dtype=float))
        fixed = int(np.all(off @ M.T == off, axis=1).sum())
        chi_in = sum(r.character(g) for r in in_type.representations)
        chi_out = sum(r.character(g) for r in out_type.representations)
        total += chi_in * chi_out * fixed
    n = total / gs.fibergroup.order()
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def bias_dimension(out_type):
    """dim of the invariant vectors of the output representation: (1/|G|) sum_g chi_out(g)."""
    G = out_type.gspace.fibergroup
    n = sum(sum(r.character(g) for r in out_type.representations) for g in G.elements) / G.order()
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def ft(gs, reps):
    return nn.FieldType(gs, reps)


def cases():
    G2, G3 = GS2.fibergroup, GS3.fibergroup
    vec2, ten2 = et.tensor_rep(GS2, 1, 1), et.tensor_rep(GS2, 2, 1)
    quotient = G2.quotient_representation((0, 1))  # D4 / (one flip): 4 cosets
    yield "D4 regular -> regular", ft(GS2, [G2.regular_representation] * 2), ft(GS2, [G2.regular_representation] * 2), 3
    yield "D4 irreps -> irreps K=5", ft(GS2, list(G2.irreps())), ft(GS2, list(G2.irreps())), 5
    yield "D4 vector + regular -> 2-tensor", ft(GS2, [vec2, G2.regular_representation]), ft(GS2, [ten2]), 3
    yield ("D4 quotient -> scalar + pseudoscalar", ft(GS2, [quotient]),
           et.tensor_type(GS2, [(0, 1, 1), (0, -1, 1)]), 3)
    yield "D4 mixed, interleaved", ft(GS2, [vec2, G2.irrep(1, 1), vec2, G2.regular_representation]), \
        ft(GS2, [G2.irrep(1, 1), ten2, G2.trivial_representation, quotient]), 4
    yield "Oh regular -> vector", ft(GS3, [G3.regular_representation]), et.tensor_type(GS3, [(1, 1, 1)]), 3
    yield "Oh irreps -> scalar + vector", ft(GS3, list(G3.irreps())), et.tensor_type(GS3, [(0, 1, 1), (1, 1, 1)]), 3


CASES = list(cases())


def check_layer(layer, in_type, out_type, K):
    assert layer.weights.numel() == kernel_dimension(in_type, out_type, K)
    assert (0 if layer.bias is None else layer.bias.numel()) == bias_dimension(out_type)
    randomize(layer)
    layer = layer.double().eval()
    x = random_input(in_type, spatial=7, generator=torch.Generator().manual_seed(1))
    errors = equivariance_errors(layer, x)
    assert len(errors) == in_type.gspace.fibergroup.order()
    assert max(errors.values()) < 1e-10, max(errors.values())
    y = layer(x).tensor
    assert y.abs().max() > 1e-3  # not a constant map


@pytest.mark.parametrize("name,in_type,out_type,K", CASES, ids=[c[0] for c in CASES])
def test_conv_any_types_complete_and_exact(name, in_type, out_type, K):
    layer = GeometricConv(in_type, out_type, K, padding=K // 2)
    assert layer.method == "dense"
    check_layer(layer, in_type, out_type, K)


@pytest.mark.parametrize("name,in_type,out_type,K", CASES, ids=[c[0] for c in CASES])
def test_conv_transposed_any_types_complete_and_exact(name, in_type, out_type, K):
    layer = GeometricConvTransposed(in_type, out_type, K, stride=2)
    check_layer(layer, in_type, out_type, K)


def test_kernel_space_is_complete_by_rank():
    """The kernels of the weights' unit vectors are linearly independent (rank = number of weights), so the layer
    spans a space of the dimension of all equivariant kernels: complete, not only the right count."""
    G = GS2.fibergroup
    a = ft(GS2, [G.regular_representation, et.tensor_rep(GS2, 1, -1)])
    b = ft(GS2, [G.irrep(1, 1), G.quotient_representation((None, 4))])
    layer = GeometricConv(a, b, 3, bias=False).double()
    n = layer.weights.numel()
    basis = []
    for j in range(n):
        with torch.no_grad():
            layer.weights.zero_()
            layer.weights[j] = 1.0
        basis.append(layer.expand_parameters()[0].reshape(-1))
    assert torch.linalg.matrix_rank(torch.stack(basis)).item() == n == kernel_dimension(a, b, 3)


@pytest.mark.parametrize("factory", [lambda: gspaces.rot2dOnR2(N=4), lambda: gspaces.flip2dOnR2(axis=0.0),
                                     lambda: gspaces.conicalOnR3(n=4)])
def test_subgroup_regular_and_irreps(factory):
    gs = factory()
    G = gs.fibergroup
    in_type = ft(gs, [G.regular_representation] + list(G.irreps()))
    out_type = ft(gs, [G.regular_representation, et.tensor_rep(gs, 1, 1)])
    K = 3
    check_layer(GeometricConv(in_type, out_type, K, padding=1), in_type, out_type, K)


def test_escnn_network_with_geometric_conv_passes_check_equivariance():
    G = GS2.fibergroup
    t0 = ft(GS2, [G.trivial_representation] * 2)
    reg = ft(GS2, [G.regular_representation] * 3)
    net = nn.SequentialModule(
        nn.R2Conv(t0, reg, 5, padding=2),
        nn.ReLU(reg),
        GeometricConv(reg, reg, 3, padding=1),
        nn.ReLU(reg),
        nn.GroupPooling(reg),
    ).eval()  # escnn's check_equivariance feeds float32 inputs
    randomize(net[2])
    errors = net.check_equivariance()  # escnn's own check (20 random elements, its default tolerances)
    assert len(errors) == 20
    # (R2Conv's sampled basis is equivariant only to ~1e-7 in float64; the GeometricConv on regular fields alone is
    # checked over every element to 1e-10 in test_conv_any_types_complete_and_exact)


def test_two_stage_refused_and_copies():
    G = GS2.fibergroup
    reg = ft(GS2, [G.regular_representation])
    with pytest.raises(ValueError, match="two_stage"):
        GeometricConv(reg, reg, 3, method="two_stage")
    layer = GeometricConv(reg, ft(GS2, [et.tensor_rep(GS2, 1, 1)]), 3).double()
    x = random_input(reg, spatial=6)
    y = layer(x).tensor
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(other(x).tensor, y)
    assert torch.equal(layer.export()(x.tensor), y)
