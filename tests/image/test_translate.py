"""Translators MultiImage <-> escnn GeometricTensor: exact commutation with the group (bit for bit, against
escnn's own GeometricTensor.transform), lossless round trips, layout pinned by hand, gradients, bad input,
and the numpy (ginjax-layout) exchange."""
import numpy as np
import pytest
import torch
from escnn import gspaces
from escnn.nn import FieldType, GeometricTensor

from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D
from escnn_tensor import group_elements, hyperoctahedral_gspace, tensor_rep, tensor_type
from escnn_tensor.image import MultiImage
from escnn_tensor.image import from_geometric_tensor, multi_image_field_type, to_geometric_tensor

GEN = torch.Generator().manual_seed(11)




def multi(D, N, keys, B=2, dtype=torch.float64):
    return MultiImage(
        {(k, p): torch.randn((B, c) + (N,) * D + (D,) * k, generator=GEN, dtype=dtype) for k, p, c in keys}, D
    )


ALL_KEYS = [(k, p, 1 + (k + (p < 0)) % 2) for k in range(4) for p in (1, -1)]  # k <= 3, both parities


# 2D: every (size parity, dtype) pair. 3D: escnn's transform costs ~0.1 s per element for these 8 fields, so
# the odd size runs in float64 and the even one in float32 (each still over all 48 elements, k <= 3, both parities)
COMMUTE_CASES = [(2, N, dt) for N in (4, 5) for dt in (torch.float64, torch.float32)]
COMMUTE_CASES += [(3, 5, torch.float64), (3, 4, torch.float32)]


@pytest.mark.parametrize("D,N,dtype", COMMUTE_CASES)
def test_translation_commutes_with_every_element_bitwise(D, N, dtype):
    gs = hyperoctahedral_gspace(D)
    keys = ALL_KEYS if D == 2 else [(k, p, 1) for k, p, _ in ALL_KEYS]
    mi = multi(D, N, keys, B=2 if D == 2 else 1, dtype=dtype)
    gt = to_geometric_tensor(mi, gs)
    for g in group_elements(gs):
        ours = to_geometric_tensor(mi.times_group_element(g), gs)
        theirs = gt.transform(g)
        assert ours.type == theirs.type
        assert torch.equal(ours.tensor, theirs.tensor), f"D={D} N={N} {dtype} g={g}"


@pytest.mark.parametrize("name", ["C4", "flip_diag", "D2", "C4z", "C4v", "inversion"])
def test_translation_commutes_on_subgroup_gspaces(name):
    gs = {**SUBGROUP_GSPACES_2D, **SUBGROUP_GSPACES_3D}[name]()
    D = gs.dimensionality
    mi = multi(D, 4 if D == 3 else 5, [(0, -1, 1), (1, 1, 2), (2, -1, 1)], B=1)
    gt = to_geometric_tensor(mi, gs)
    for g in group_elements(gs):
        assert torch.equal(to_geometric_tensor(mi.times_group_element(g, gspace=gs), gs).tensor,
                           gt.transform(g).tensor)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("D", [2, 3])
def test_round_trips_are_bitwise(D, dtype):
    gs = hyperoctahedral_gspace(D)
    mi = multi(D, 5, [(2, -1, 1), (0, 1, 2), (1, -1, 3), (3, 1, 1)], dtype=dtype)
    back = from_geometric_tensor(to_geometric_tensor(mi, gs))
    assert back.signature == mi.signature and back.D == D
    for key in mi:
        assert back[key].dtype == dtype and torch.equal(back[key], mi[key])
    ft = tensor_type(gs, {(0, 1): 2, (1, -1): 1, (2, 1): 2})
    gt = GeometricTensor(torch.randn((2, ft.size) + (4,) * D, generator=GEN, dtype=dtype), ft)
    again = to_geometric_tensor(from_geometric_tensor(gt), gs)
    assert again.type == ft and torch.equal(again.tensor, gt.tensor)


def test_field_type_is_tensor_type_in_canonical_order():
    gs = hyperoctahedral_gspace(2)
    mi = multi(2, 4, [(1, -1, 2), (0, -1, 1), (2, 1, 1), (0, 1, 3), (1, 1, 1)])
    expected = [tensor_rep(gs, 0, 1)] * 3 + [tensor_rep(gs, 0, -1)] + [tensor_rep(gs, 1, 1)] \
        + [tensor_rep(gs, 1, -1)] * 2 + [tensor_rep(gs, 2, 1)]
    ft = to_geometric_tensor(mi, gs).type
    assert [r.name for r in ft.representations] == [r.name for r in expected]
    assert ft == multi_image_field_type(mi, gs)


def test_layout_pinned_by_hand():
    """A vector at grid coordinates (x, y) = (1, -2) from the centre sits, in escnn's layout, at
    [row = c - y, col = c + x] with its x component in the field's first channel (checked against index
    arithmetic written here, independent of grid_to_escnn)."""
    N, c = 5, 2
    data = torch.zeros(1, 1, N, N, 2, dtype=torch.float64)
    data[0, 0, c + 1, c - 2] = torch.tensor([3.0, 7.0])  # grid layout: axis 0 = x, axis 1 = y
    gt = to_geometric_tensor(MultiImage({(1, 1): data}, 2), hyperoctahedral_gspace(2))
    assert gt.tensor[0, 0, c + 2, c + 1] == 3.0 and gt.tensor[0, 1, c + 2, c + 1] == 7.0
    assert gt.tensor.abs().sum() == 10.0
    # 3D: (x, y, z) = (1, 0, -1) sits at [c - z, c - y, c + x]
    data = torch.zeros(1, 1, N, N, N, dtype=torch.float64)
    data[0, 0, c + 1, c, c - 1] = 5.0
    gt = to_geometric_tensor(MultiImage({(0, -1): data}, 3), hyperoctahedral_gspace(3))
    assert gt.tensor[0, 0, c + 1, c, c + 1] == 5.0 and gt.tensor.abs().sum() == 5.0


def test_non_canonical_field_order_is_gathered_by_key():
    gs = hyperoctahedral_gspace(2)
    ft = tensor_type(gs, [(1, 1, 1), (0, 1, 1), (1, 1, 1)])  # vector, scalar, vector
    t = torch.randn(1, 5, 4, 4, generator=GEN, dtype=torch.float64)
    mi = from_geometric_tensor(GeometricTensor(t, ft))
    assert mi.signature == (((0, 1), 1), ((1, 1), 2))
    canon = to_geometric_tensor(mi, gs).tensor
    assert torch.equal(canon, t[:, [2, 0, 1, 3, 4]])  # scalar first, then the two vectors in order


def test_target_field_type_sets_the_order_issue_20_item_9():
    """A hand-built type with the 2-tensor first: to_geometric_tensor(mi, ft) lays the fields out in ft's order
    and returns exactly ft (the canonical layout puts the scalar first; both have 5 channels)."""
    gs = hyperoctahedral_gspace(2)
    mi = multi(2, 5, [(0, 1, 1), (2, 1, 1)])
    ft = tensor_type(gs, [(2, +1, 1), (0, +1, 1)])
    gt = to_geometric_tensor(mi, ft)
    assert gt.type is ft
    canon = to_geometric_tensor(mi, gs).tensor  # scalar, then the 4 components of the 2-tensor
    assert torch.equal(gt.tensor, canon[:, [1, 2, 3, 4, 0]])
    back = from_geometric_tensor(gt)
    assert back.signature == mi.signature and all(torch.equal(back[key], mi[key]) for key in mi)


@pytest.mark.parametrize("D", [2, 3])
def test_target_field_type_interleaved_commutes_with_every_element(D):
    """Several channels per key, interleaved with other keys: channel c of a key is the c-th field of that key in
    the type's order; translation commutes bit for bit with every group element (escnn's transform of the result);
    the round trip through from_geometric_tensor is the identity both ways."""
    gs = hyperoctahedral_gspace(D)
    ft = tensor_type(gs, [(1, 1, 1), (0, -1, 1), (1, 1, 1), (2, 1, 1), (0, -1, 1), (1, 1, 1)])
    mi = multi(D, 4 if D == 3 else 5, [(0, -1, 2), (1, 1, 3), (2, 1, 1)], B=1)
    gt = to_geometric_tensor(mi, ft)
    assert gt.type is ft
    d = D
    starts = np.cumsum([0] + [d ** k for k, _ in [(1, 1), (0, -1), (1, 1), (2, 1), (0, -1), (1, 1)]])
    canon = to_geometric_tensor(mi, gs)  # pseudoscalars 0-1, vectors 0-2, 2-tensor
    cs = np.cumsum([0, 1, 1] + [d] * 3 + [d * d])
    order = [(2, 0), (0, 0), (3, 1), (5, 0), (1, 1), (4, 2)]  # (canonical field index, its channel within the key)
    for i, (j, _) in enumerate(order):
        assert torch.equal(gt.tensor[:, starts[i] : starts[i + 1]], canon.tensor[:, cs[j] : cs[j + 1]])
    for g in group_elements(gs):
        assert torch.equal(to_geometric_tensor(mi.times_group_element(g), ft).tensor, gt.transform(g).tensor)
    back = from_geometric_tensor(gt)
    assert back.signature == mi.signature and all(torch.equal(back[key], mi[key]) for key in mi)
    again = to_geometric_tensor(from_geometric_tensor(gt), ft)
    assert again.type is ft and torch.equal(again.tensor, gt.tensor)


def test_target_field_type_that_does_not_match_is_refused():
    gs = hyperoctahedral_gspace(2)
    mi = multi(2, 4, [(0, 1, 1), (1, 1, 2)])
    cases = [
        (tensor_type(gs, [(1, 1, 1), (0, 1, 1)]), r"target field type holds 1 x \(k=0, parity=\+1\), 1 x \(k=1, parity=\+1\), but the MultiImage holds 1 x \(k=0, parity=\+1\), 2 x \(k=1, parity=\+1\)"),
        (tensor_type(gs, [(1, 1, 2), (0, 1, 1), (2, 1, 1)]), r"holds .*1 x \(k=2, parity=\+1\), but the MultiImage"),
        (tensor_type(gs, [(1, -1, 2), (0, 1, 1)]), r"k=1, parity=-1"),
        (tensor_type(hyperoctahedral_gspace(3), [(0, 1, 1), (1, 1, 2)]), r"acts on R\^3, but the MultiImage has D=2"),
        (FieldType(gs, [gs.regular_repr]), r"regular"),
    ]
    for ft, match in cases:
        with pytest.raises(ValueError, match=match):
            to_geometric_tensor(mi, ft)
    with pytest.raises(TypeError, match="target must be an escnn GSpace .* or a FieldType .*, got str"):
        to_geometric_tensor(mi, "D4")


def test_gradients_flow_both_ways():
    gs = hyperoctahedral_gspace(2)
    mi = multi(2, 4, [(0, 1, 1), (1, -1, 2)])
    leaves = {key: v.clone().requires_grad_() for key, v in mi.items()}
    gt = to_geometric_tensor(MultiImage(leaves, 2), gs)
    w = torch.randn(gt.tensor.shape, generator=GEN, dtype=torch.float64)
    (gt.tensor * w).sum().backward()
    w_mi = from_geometric_tensor(GeometricTensor(w, gt.type))
    for key, leaf in leaves.items():
        assert torch.equal(leaf.grad, w_mi[key])
    t = gt.tensor.detach().clone().requires_grad_()
    back = from_geometric_tensor(GeometricTensor(t, gt.type))
    sum((v * (i + 1)).sum() for i, v in enumerate(back.values())).backward()
    assert torch.equal(t.grad[:, :1], torch.ones_like(t.grad[:, :1]))
    assert torch.equal(t.grad[:, 1:], torch.full_like(t.grad[:, 1:], 2.0))


def test_non_tensor_fields_raise():
    gs = hyperoctahedral_gspace(2)
    ft = FieldType(gs, [tensor_rep(gs, 1, 1), gs.regular_repr])
    gt = GeometricTensor(torch.zeros(1, ft.size, 4, 4), ft)
    with pytest.raises(ValueError) as info:
        from_geometric_tensor(gt)
    msg = str(info.value)
    assert "field 1" in msg and "regular" in msg and "Accepted" in msg


def test_bad_arguments():
    mi = multi(2, 4, [(0, 1, 1)])
    with pytest.raises(ValueError, match="D=2"):
        to_geometric_tensor(mi, hyperoctahedral_gspace(3))
    with pytest.raises(TypeError, match="MultiImage"):
        to_geometric_tensor({(0, 1): torch.zeros(1, 1, 4, 4)}, hyperoctahedral_gspace(2))
    with pytest.raises(ValueError, match="continuous"):
        to_geometric_tensor(mi, gspaces.rot2dOnR2(N=-1))
    with pytest.raises(TypeError, match="GeometricTensor"):
        from_geometric_tensor(torch.zeros(1, 1, 4, 4))


# ------------------------------------------------------------------------------------------------------
# numpy exchange in ginjax's layout and keys
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numpy_dict_round_trip_bitwise(dtype):
    mi = multi(3, 4, [(0, -1, 2), (1, 1, 1), (2, -1, 1)], dtype=dtype)
    d = mi.to_numpy_dict()
    assert set(d) == {(0, 1), (1, 0), (2, 1)}  # ginjax parities: 0 tensor, 1 pseudotensor
    assert d[(1, 0)].shape == (2, 1, 4, 4, 4, 3)
    np.testing.assert_array_equal(d[(1, 0)], mi[(1, 1)].numpy())
    back = MultiImage.from_numpy_dict(d, 3)
    assert back.signature == mi.signature
    for key in mi:
        assert back[key].dtype == dtype and torch.equal(back[key], mi[key])


def test_from_numpy_dict_accepts_ginjax_keys_and_channel_only_arrays():
    arr = np.random.default_rng(0).standard_normal((3, 5, 5, 2, 2))
    mi = MultiImage.from_numpy_dict({((False, False), 1): arr}, 2)  # ginjax key, (C, spatial, tensor)
    assert mi.signature == (((2, -1), 3),) and mi.batch_size == 1
    np.testing.assert_array_equal(mi[(2, -1)][0].numpy(), arr)
    with pytest.raises(ValueError, match="0 .tensor. or 1"):
        MultiImage.from_numpy_dict({(1, -1): np.zeros((1, 1, 5, 5, 2))}, 2)
