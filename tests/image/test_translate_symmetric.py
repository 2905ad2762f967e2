"""Symmetric and symmetric traceless tensor fields in the translators MultiImage <-> GeometricTensor (issue 17): a
MultiImage holds full tensors (as ginjax does), symmetric in their indices; the round trip is exact to rounding in
float64; translation commutes with every group element (8 in 2D, 48 in 3D); a full tensor that is not symmetric is
refused (or projected with project=True, checked against the symmetric part computed here by permuting indices); the
field-type helpers to_full_tensor / from_full_tensor / full_field_type on GeometricTensors, torch tensors and numpy
arrays."""
import itertools

import numpy as np
import pytest
import torch
from escnn.nn import FieldType, GeometricTensor

from escnn_tensor import group_elements, hyperoctahedral_gspace, tensor_rep, tensor_type
from escnn_tensor.image import MultiImage, from_geometric_tensor, to_geometric_tensor
from escnn_tensor.representations import from_full_tensor, full_field_type, to_full_tensor
from escnn_tensor.testing import random_input

GS = {2: hyperoctahedral_gspace(2), 3: hyperoctahedral_gspace(3)}
S, T = "symmetric", "symmetric_traceless"


def mixed_type(d):
    """Symmetric and traceless fields of orders 2 and 3, both parities, between full ones (keys shared with them)."""
    return tensor_type(GS[d], [(2, 1, 1, S), (0, 1, 1), (2, 1, 1), (3, -1, 1, T), (1, -1, 1), (2, -1, 1, T),
                               (3, 1, 1, S), (2, 1, 1, T)])


def symmetrised(T_full, k, traceless):
    """The symmetric (traceless) part of full tensors (..., d, .., d) (k trailing axes), from the definitions:
    the mean over permutations of the indices, then (k = 2 only here) minus trace/d times the identity."""
    axes = T_full.dim() - k + np.arange(k)
    perms = list(itertools.permutations(range(k)))
    lead = list(range(T_full.dim() - k))
    sym = sum(T_full.permute(lead + [int(axes[p]) for p in perm]) for perm in perms) / len(perms)
    if traceless:
        assert k == 2
        d = T_full.shape[-1]
        tr = torch.diagonal(sym, dim1=-2, dim2=-1).sum(-1)
        sym = sym - tr[..., None, None] * torch.eye(d, dtype=sym.dtype) / d
    return sym


@pytest.mark.parametrize("d", [2, 3])
def test_round_trip_exact_and_multi_image_holds_symmetric_full_tensors(d):
    ft = mixed_type(d)
    gt = random_input(ft, spatial=4 if d == 3 else 5, generator=torch.Generator().manual_seed(0))
    mi = from_geometric_tensor(gt)
    # the keys and channel counts: each field one channel of its (k, parity), full d^k components
    assert mi.signature == (((0, 1), 1), ((1, -1), 1), ((2, 1), 3), ((2, -1), 1), ((3, 1), 1), ((3, -1), 1))
    for (k, p), x in mi.items():
        for perm in list(itertools.permutations(range(k)))[1:]:  # all fields but one are symmetric
            moved = x.permute(tuple(range(2 + d)) + tuple(2 + d + q for q in perm))
            if (k, p) != (2, 1):
                assert torch.allclose(moved, x, atol=1e-14, rtol=0)
            else:  # channel 1 of key (2, +1) is the full 2-tensor (random, not symmetric)
                assert torch.allclose(moved[:, [0, 2]], x[:, [0, 2]], atol=1e-14, rtol=0)
                assert not torch.allclose(moved[:, 1], x[:, 1], atol=1e-3)
    back = to_geometric_tensor(mi, ft)
    assert back.type is ft
    assert torch.allclose(back.tensor, gt.tensor, atol=1e-14, rtol=0)
    # the full tensor fields are untouched by the embedding: bit for bit
    n_full = 0
    for c, rep in zip(np.cumsum([0] + [r.size for r in ft.representations]), ft.representations):
        if "symmetric" not in rep.name:
            assert torch.equal(back.tensor[:, c:c + rep.size], gt.tensor[:, c:c + rep.size])
            n_full += 1
    assert n_full == 3  # the scalar, the full 2-tensor, the pseudovector


@pytest.mark.parametrize("d", [2, 3])
def test_translation_commutes_with_every_group_element(d):
    ft = tensor_type(GS[d], [(2, 1, 1, S), (1, 1, 1), (2, -1, 1, T), (3, 1, 1, S)] if d == 2 else
                     [(2, 1, 1, S), (2, -1, 1, T), (1, 1, 1)])
    gt = random_input(ft, spatial=4, batch=1, generator=torch.Generator().manual_seed(1))
    mi = from_geometric_tensor(gt)
    elements = group_elements(GS[d])
    assert len(elements) == (8 if d == 2 else 48)
    for g in elements:
        moved = gt.transform(g)  # escnn's action with the symmetric representations' matrices
        assert torch.allclose(to_geometric_tensor(mi.times_group_element(g), ft).tensor, moved.tensor,
                              atol=1e-13, rtol=0)
        ours = from_geometric_tensor(moved)
        theirs = mi.times_group_element(g)
        assert all(torch.allclose(ours[key], theirs[key], atol=1e-13, rtol=0) for key in theirs)


def test_non_symmetric_full_tensor_refused_or_projected():
    gs = GS[3]
    ft = tensor_type(gs, [(0, 1, 1), (2, 1, 1, S), (2, 1, 1, T)])
    gen = torch.Generator().manual_seed(2)
    data = {(0, 1): torch.randn(2, 1, 4, 4, 4, generator=gen, dtype=torch.float64),
            (2, 1): torch.randn(2, 2, 4, 4, 4, 3, 3, generator=gen, dtype=torch.float64)}
    mi = MultiImage(data, 3)
    with pytest.raises(ValueError, match=r"field 1 \(k=2, parity=\+1, symmetric\).*not symmetric.*project=True"):
        to_geometric_tensor(mi, ft)
    out = to_geometric_tensor(mi, ft, project=True)
    assert out.type is ft
    back = from_geometric_tensor(out)
    torch.testing.assert_close(back[(0, 1)], data[(0, 1)], rtol=0, atol=0)
    torch.testing.assert_close(back[(2, 1)][:, 0], symmetrised(data[(2, 1)][:, 0], 2, False), rtol=0, atol=1e-14)
    torch.testing.assert_close(back[(2, 1)][:, 1], symmetrised(data[(2, 1)][:, 1], 2, True), rtol=0, atol=1e-14)
    # symmetric, but with a trace, into a traceless field: refused (names the field), unless projected
    sym = symmetrised(data[(2, 1)], 2, False)
    with pytest.raises(ValueError, match=r"field 2 \(k=2, parity=\+1, symmetric_traceless\).*not symmetric traceless"):
        to_geometric_tensor(MultiImage({(0, 1): data[(0, 1)], (2, 1): sym}, 3), ft)
    # a deviation below the tolerance (relative to the field's largest component) passes; float32 gets 1e-5
    tiny = symmetrised(data[(2, 1)], 2, True) + 1e-12 * data[(2, 1)]
    to_geometric_tensor(MultiImage({(0, 1): data[(0, 1)], (2, 1): tiny}, 3), ft)
    with pytest.raises(ValueError, match="rtol=1e-13"):
        to_geometric_tensor(MultiImage({(0, 1): data[(0, 1)], (2, 1): tiny}, 3), ft, rtol=1e-13)
    loose = MultiImage({(0, 1): data[(0, 1)].float(), (2, 1): (symmetrised(data[(2, 1)], 2, True)
                                                               + 1e-7 * data[(2, 1)]).float()}, 3)
    assert to_geometric_tensor(loose, ft).tensor.dtype == torch.float32
    with pytest.raises(TypeError, match="project must be True or False"):
        to_geometric_tensor(mi, ft, project="yes")
    with pytest.raises(ValueError, match="rtol must be a number >= 0"):
        to_geometric_tensor(mi, ft, rtol=-1.0)


@pytest.mark.parametrize("kind", ["geometric_tensor", "torch", "numpy"])
def test_full_tensor_helpers_on_field_types(kind):
    gs = GS[2]
    ft = tensor_type(gs, [(1, 1, 1), (2, 1, 1, S), (0, -1, 1), (3, -1, 1, T), (2, 1, 1)])
    full = full_field_type(ft)
    assert [r.name for r in full.representations] == [tensor_rep(gs, k, p).name for k, p in
                                                      [(1, 1), (2, 1), (0, -1), (3, -1), (2, 1)]]
    assert full.size == 2 + 4 + 1 + 8 + 4 and ft.size == 2 + 3 + 1 + 2 + 4
    assert full_field_type(full) is full
    gt = random_input(ft, spatial=3, generator=torch.Generator().manual_seed(3))
    x = {"geometric_tensor": gt, "torch": gt.tensor, "numpy": gt.tensor.numpy()}[kind]
    if kind == "numpy":  # channels on the last axis, dim=-1
        y = to_full_tensor(np.moveaxis(x, 1, -1), ft, dim=-1)
        y = np.moveaxis(y, -1, 1)
        assert isinstance(y, np.ndarray)
        yt = torch.from_numpy(y)
    else:
        y = to_full_tensor(x, None if kind == "geometric_tensor" else ft)
        yt = y.tensor if kind == "geometric_tensor" else y
        if kind == "geometric_tensor":
            assert y.type == full
    assert yt.shape[1] == full.size
    # by hand: the symmetric 2-tensor (xx, sqrt2 xy, yy) -> (xx, xy, xy, yy); full fields copied bit for bit
    c = gt.tensor
    torch.testing.assert_close(yt[:, 2:6], torch.stack([c[:, 2], c[:, 3] / np.sqrt(2), c[:, 3] / np.sqrt(2), c[:, 4]], 1),
                               rtol=0, atol=1e-15)
    assert torch.equal(yt[:, :2], c[:, :2]) and torch.equal(yt[:, 6], c[:, 5]) and torch.equal(yt[:, -4:], c[:, -4:])
    back = from_full_tensor(y if kind == "geometric_tensor" else yt, ft, rtol=1e-12)
    torch.testing.assert_close(back.tensor if kind == "geometric_tensor" else back, c, rtol=0, atol=1e-14)


def test_full_tensor_helpers_refuse_bad_input():
    gs = GS[2]
    ft = tensor_type(gs, [(2, 1, 1, S)])
    reg = FieldType(gs, [tensor_rep(gs, 2, 1, S), gs.regular_repr])
    with pytest.raises(ValueError, match=r"field 1 \(regular, size 8\)"):
        full_field_type(reg)
    with pytest.raises(ValueError, match=r"field 1 \(regular"):
        from_geometric_tensor(GeometricTensor(torch.zeros(1, reg.size, 3, 3), reg))
    with pytest.raises(ValueError, match="axis dim=1 of x must have 3 entries"):
        to_full_tensor(torch.zeros(1, 4, 3, 3), ft)
    with pytest.raises(ValueError, match="GeometricTensor of 3 channels"):
        from_full_tensor(GeometricTensor(torch.zeros(1, 3, 3, 3), ft), ft)
    with pytest.raises(TypeError, match="give the field_type"):
        from_full_tensor(GeometricTensor(torch.zeros(1, 4, 3, 3), full_field_type(ft)))
    with pytest.raises(TypeError, match="rtol is for the field-type form"):
        from_full_tensor(torch.zeros(4), 2, 2, S, dim=0, rtol=1e-3)
