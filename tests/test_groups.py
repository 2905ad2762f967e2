"""groups.py: the gspaces, exact element matrices, and the grid conventions against escnn's own transform."""
import itertools

import numpy as np
import pytest
import torch
from escnn import gspaces, nn

import escnn_tensor as et
from escnn_tensor.groups import action_key, check_gspace
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D


def _all_signed_permutations(d):
    out = []
    for perm in itertools.permutations(range(d)):
        for signs in itertools.product((1, -1), repeat=d):
            m = np.zeros((d, d), dtype=np.int64)
            for i, (j, s) in enumerate(zip(perm, signs)):
                m[i, j] = s
            out.append(m)
    return out


@pytest.mark.parametrize("d,order", [(2, 8), (3, 48)])
def test_hyperoctahedral_gspace_is_all_signed_permutations(d, order):
    gs = et.hyperoctahedral_gspace(d)
    mats = et.group_matrices(gs)
    assert gs.dimensionality == d and gs.fibergroup.order() == order
    # every element is a distinct signed permutation, and together they are all 2^d d! of them
    got = {m.tobytes() for m in mats}
    want = {m.tobytes() for m in _all_signed_permutations(d)}
    assert len(got) == order and got == want


@pytest.mark.parametrize("d", [2, 3])
def test_group_matrix_is_escnn_basespace_action(d):
    gs = et.hyperoctahedral_gspace(d)
    for g in gs.fibergroup.elements:
        m = et.group_matrix(gs, g)
        assert m.dtype == np.int64 and m.shape == (d, d)
        np.testing.assert_allclose(m, gs.basespace_action(g), atol=1e-9)


@pytest.mark.parametrize("d", [2, 3])
def test_group_matrix_is_a_homomorphism(d):
    gs = et.hyperoctahedral_gspace(d)
    els = list(gs.fibergroup.elements)
    for g, h in itertools.product(els, els):
        assert np.array_equal(et.group_matrix(gs, g @ h), et.group_matrix(gs, g) @ et.group_matrix(gs, h))


def _escnn_position(pos, n, d):
    """escnn array index of the pixel with centred grid coordinates ``pos`` (2D: (-y, x); 3D: (-z, -y, x))."""
    c = (n - 1) // 2
    if d == 2:
        x, y = pos
        return (c - y, c + x)
    x, y, z = pos
    return (c - z, c - y, c + x)


@pytest.mark.parametrize("d", [2, 3])
def test_grid_convention_matches_escnn_transform(d):
    """A delta at grid position a moves to M(g) a under GeometricTensor.transform, for every element."""
    gs = et.hyperoctahedral_gspace(d)
    n = 7
    ft = nn.FieldType(gs, [gs.trivial_repr])
    a = np.array([1, 3, -2][:d])
    x = torch.zeros((1, 1) + (n,) * d, dtype=torch.float64)
    x[(0, 0) + _escnn_position(a, n, d)] = 1.0
    for g in gs.fibergroup.elements:
        y = ft(x).transform(g).tensor[0, 0]
        want = torch.zeros_like(y)
        want[_escnn_position(et.group_matrix(gs, g) @ a, n, d)] = 1.0
        assert torch.equal(y, want), g


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("n", [4, 5])
def test_grid_escnn_layout_round_trip(d, n):
    x = torch.randn((2,) + (n,) * d + (d, d), dtype=torch.float64)
    y = et.grid_to_escnn(x, d, n_trailing=2)
    assert torch.equal(et.escnn_to_grid(y, d, n_trailing=2), x)
    # grid index (i_x, i_y[, i_z]) lands at escnn index ((n-1-i_z,) n-1-i_y, i_x)
    idx = (1, 3, 0)[:d]
    esc = (n - 1 - idx[1], idx[0]) if d == 2 else (n - 1 - idx[2], n - 1 - idx[1], idx[0])
    assert torch.equal(y[(slice(None),) + esc], x[(slice(None),) + idx])


@pytest.mark.parametrize("name", list(SUBGROUP_GSPACES_2D) + list(SUBGROUP_GSPACES_3D))
def test_subgroups_are_accepted_and_inside_b_d(name):
    gs = {**SUBGROUP_GSPACES_2D, **SUBGROUP_GSPACES_3D}[name]()
    d = check_gspace(gs)
    full = {m.tobytes() for m in _all_signed_permutations(d)}
    mats = et.group_matrices(gs)
    assert len(mats) == gs.fibergroup.order()
    assert all(m.tobytes() in full for m in mats)
    for g, m in zip(et.group_elements(gs), mats):
        np.testing.assert_allclose(m, gs.basespace_action(g), atol=1e-9)


@pytest.mark.parametrize(
    "factory,needle",
    [
        (lambda: gspaces.rot2dOnR2(N=8), "C8"),
        (lambda: gspaces.rot2dOnR2(N=3), "C3"),
        (lambda: gspaces.rot2dOnR2(N=-1), "SO(2)"),
        (lambda: gspaces.flipRot3dOnR3(), "O(3)"),
        (lambda: gspaces.icoOnR3(), "Icosahedral"),
    ],
)
def test_unsupported_gspaces_raise(factory, needle):
    gs = factory()
    for call in (lambda: check_gspace(gs), lambda: et.tensor_rep(gs, 1, 1), lambda: et.tensor_type(gs, [(1, 1, 1)])):
        with pytest.raises(ValueError) as e:
            call()
        assert needle in str(e.value) and "Accepted" in str(e.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="d must be 2 or 3"):
        et.hyperoctahedral_gspace(4)
    with pytest.raises(TypeError, match="d must be"):
        et.hyperoctahedral_gspace("2")
    with pytest.raises(TypeError, match="gspace must be an escnn GSpace"):
        et.group_matrix("D4", None)
    gs2, gs3 = et.hyperoctahedral_gspace(2), et.hyperoctahedral_gspace(3)
    with pytest.raises(TypeError, match="g must be an escnn GroupElement"):
        et.group_matrix(gs2, np.eye(2))
    with pytest.raises(ValueError, match="g must be an element of D4"):
        et.group_matrix(gs2, gs3.fibergroup.identity)


def test_action_key_tells_apart_gspaces_that_share_a_group():
    a, b = gspaces.flip2dOnR2(axis=0.0), gspaces.flip2dOnR2(axis=np.pi / 2)
    assert a.fibergroup is b.fibergroup
    assert action_key(a) != action_key(b)
    assert action_key(a) == action_key(gspaces.flip2dOnR2(axis=0.0))
