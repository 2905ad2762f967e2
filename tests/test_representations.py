"""representations.py: tensor representations as escnn Representations and FieldTypes.

Everything is checked against quantities computed here from first principles (group matrices, numpy.kron,
the character formula), over every group element.
"""
import itertools

import numpy as np
import pytest
import torch
from escnn import gspaces, nn

import escnn_tensor as et
from escnn_tensor.representations import canonical_order
from escnn_tensor.groups import action_key
from escnn_tensor.testing import assert_equivariant, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D

FULL_CASES = [(2, k, p) for k in range(5) for p in (1, -1)] + [(3, k, p) for k in range(4) for p in (1, -1)]


def _expected(m, k, parity):
    """det(M)^((1-parity)/2) * M (x) ... (x) M, from numpy directly."""
    out = np.ones((1, 1))
    for _ in range(k):
        out = np.kron(out, m.astype(np.float64))
    return out * (np.linalg.det(m) if parity == -1 else 1.0)


_PRODUCTS = {}


def _product_table(gs):
    """Index of g_i @ g_j by escnn's own group law (cached: escnn's composition is slow for O_h)."""
    key = action_key(gs)
    if key not in _PRODUCTS:
        els = list(gs.fibergroup.elements)
        _PRODUCTS[key] = [[els.index(g @ h) for h in els] for g in els]
    return _PRODUCTS[key]


def _check_matrices(gs, k, parity):
    rep = et.tensor_rep(gs, k, parity)
    d = gs.dimensionality
    els = list(gs.fibergroup.elements)
    assert rep.size == d**k
    mats = [rep(g) for g in els]
    for g, r in zip(els, mats):
        np.testing.assert_array_equal(r, _expected(et.group_matrix(gs, g), k, parity))  # exact
        np.testing.assert_array_equal(r @ r.T, np.eye(rep.size))  # orthogonal
    table = _product_table(gs)
    for i, j in itertools.product(range(len(els)), repeat=2):
        np.testing.assert_array_equal(mats[i] @ mats[j], mats[table[i][j]])  # homomorphism


@pytest.mark.parametrize("d,k,parity", FULL_CASES)
def test_matrices_exact_orthogonal_homomorphism(d, k, parity):
    _check_matrices(et.hyperoctahedral_gspace(d), k, parity)


@pytest.mark.parametrize("name", list(SUBGROUP_GSPACES_2D) + list(SUBGROUP_GSPACES_3D))
@pytest.mark.parametrize("k,parity", [(0, -1), (1, 1), (1, -1), (2, 1), (2, -1), (3, -1)])
def test_subgroup_matrices(name, k, parity):
    gs = {**SUBGROUP_GSPACES_2D, **SUBGROUP_GSPACES_3D}[name]()
    _check_matrices(gs, k, parity)
    _check_decomposition(gs, k, parity)


def _check_decomposition(gs, k, parity):
    rep = et.tensor_rep(gs, k, parity)
    G = gs.fibergroup
    Q = rep.change_of_basis
    np.testing.assert_allclose(Q @ Q.T, np.eye(rep.size), atol=1e-12)
    np.testing.assert_allclose(rep.change_of_basis_inv, Q.T, atol=1e-12)
    for g in G.elements:
        blocks = [np.asarray(G.irrep(*i)(g)) for i in rep.irreps]
        B = np.zeros((rep.size, rep.size))
        o = 0
        for b in blocks:
            B[o : o + len(b), o : o + len(b)] = b
            o += len(b)
        want = _expected(et.group_matrix(gs, g), k, parity)
        assert np.abs(Q @ B @ Q.T - want).max() <= 1e-12


def _character_multiplicities(gs, k, parity):
    """Multiplicity of each irrep by the character formula <chi_rho, chi_psi> / <chi_psi, chi_psi>."""
    els = list(gs.fibergroup.elements)
    chi_rho = []
    for g in els:
        m = et.group_matrix(gs, g)
        det = round(np.linalg.det(m))
        chi_rho.append((det if parity == -1 else 1) * float(np.trace(m)) ** k)  # tr(M^{(x)k}) = tr(M)^k
    chi_rho = np.array(chi_rho)
    out = {}
    for psi in gs.fibergroup.irreps():
        chi_psi = np.array([np.trace(psi(g)) for g in els])
        m = (chi_rho @ chi_psi) / (chi_psi @ chi_psi)
        assert abs(m - round(m)) < 1e-9
        if round(m):
            out[psi.id] = int(round(m))
    return out


@pytest.mark.parametrize("d,k,parity", FULL_CASES)
def test_decomposition_reproduces_rho_and_matches_character_formula(d, k, parity):
    gs = et.hyperoctahedral_gspace(d)
    _check_decomposition(gs, k, parity)
    rep = et.tensor_rep(gs, k, parity)
    got = {}
    for i in rep.irreps:
        got[i] = got.get(i, 0) + 1
    assert got == _character_multiplicities(gs, k, parity)
    # and the character formula accounts for every dimension (a check on the test itself)
    assert sum(gs.fibergroup.irrep(*i).size * m for i, m in _character_multiplicities(gs, k, parity).items()) == d**k


LARGE_CASES = [(3, 4, 1), (3, 4, -1), (3, 5, -1), (3, 6, 1), (3, 6, -1), (2, 5, 1), (2, 6, 1), (2, 6, -1), (2, 8, -1)]


@pytest.mark.parametrize("d,k,parity", LARGE_CASES)
def test_large_orders_exact_and_decomposed(d, k, parity):
    """Orders the brief asks to be fast (3D k <= 6, 2D k <= 6 and beyond): exact matrices for every element,
    orthogonal change of basis, multiplicities by the character formula, and rho(g) V = Q B(g) Q^T V for random V
    and every element (blockwise B(g) from escnn's irreps; the dense n^3 product of the small-order test is too
    slow here)."""
    gs = et.hyperoctahedral_gspace(d)
    rep = et.tensor_rep(gs, k, parity)
    G = gs.fibergroup
    n = d**k
    Q = rep.change_of_basis
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    np.testing.assert_array_equal(rep.change_of_basis_inv, Q.T)
    got = {}
    for i in rep.irreps:
        got[i] = got.get(i, 0) + 1
    assert got == _character_multiplicities(gs, k, parity)
    starts = np.cumsum([0] + [G.irrep(*i).size for i in rep.irreps])
    by_irrep = {}  # irrep id -> row indices of its copies in Q^T V, shaped (copies, r)
    for j, i in enumerate(rep.irreps):
        by_irrep.setdefault(i, []).append(np.arange(starts[j], starts[j + 1]))
    V = np.random.default_rng(0).standard_normal((n, 3))
    W = Q.T @ V
    for g in G.elements:
        want = _expected(et.group_matrix(gs, g), k, parity)
        np.testing.assert_array_equal(rep(g), want)
        assert rep.character(g) == np.trace(want)
        BW = np.empty_like(W)
        for i, rows in by_irrep.items():
            rows = np.stack(rows)
            BW[rows] = np.einsum("ab,cbv->cav", np.asarray(G.irrep(*i)(g)), W[rows])
        assert np.abs(Q @ BW - want @ V).max() <= 1e-12 * np.abs(V).max()


def test_tensor_rep_refuses_sizes_that_do_not_fit(monkeypatch):
    from escnn_tensor import representations as reps_module

    gs = et.hyperoctahedral_gspace(3)
    with pytest.raises(ValueError) as e:
        et.tensor_rep(gs, 8, 1)
    msg = str(e.value)
    for needle in ("tensor_rep(", "k=8", "6561 x 6561", "2.6 GiB", "limit 2.0 GiB", "MEMORY_LIMIT_BYTES"):
        assert needle in msg, (needle, msg)
    assert not any(name.startswith("tensor[k=8,") for name in gs.fibergroup.representations)
    # the limit is read at call time; k=7 of a flip is built by no other test
    monkeypatch.setattr(reps_module, "MEMORY_LIMIT_BYTES", 1000)
    with pytest.raises(ValueError, match="128 x 128"):
        et.tensor_rep(gspaces.flip2dOnR2(axis=0.0), 7, -1)


def test_representation_callable_pickles():
    import pickle

    gs = et.hyperoctahedral_gspace(3)
    rep = et.tensor_rep(gs, 3, -1)
    f = pickle.loads(pickle.dumps(rep.representation))
    for g in gs.fibergroup.elements:
        np.testing.assert_array_equal(f(g), rep(g))


def test_scalar_is_escnn_trivial_and_pseudoscalar_is_det():
    for d in (2, 3):
        gs = et.hyperoctahedral_gspace(d)
        assert et.tensor_rep(gs, 0, 1) is gs.trivial_repr
        ps = et.tensor_rep(gs, 0, -1)
        for g in gs.fibergroup.elements:
            assert ps(g)[0, 0] == round(np.linalg.det(et.group_matrix(gs, g)))


@pytest.mark.parametrize("d", [2, 3])
def test_supported_nonlinearities(d):
    gs = et.hyperoctahedral_gspace(d)
    for k, p in [(0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]:
        rep = et.tensor_rep(gs, k, p)
        assert {"norm", "gated"} <= rep.supported_nonlinearities
        # a pointwise nonlinearity commutes with rho only if no matrix has a negative entry; all of these do
        assert any((rep(g) < 0).any() for g in gs.fibergroup.elements)
        assert "pointwise" not in rep.supported_nonlinearities
    # on the trivial group every tensor representation is trivial, and pointwise is then truly equivariant
    triv = gspaces.trivialOnR2()
    assert "pointwise" in et.tensor_rep(triv, 2, -1).supported_nonlinearities
    # escnn's own norm and gated nonlinearities accept the fields
    ft = et.tensor_type(gs, [(1, 1, 1), (2, -1, 1)])
    nn.NormNonLinearity(ft)
    gates = et.tensor_type(gs, [(0, 1, 2)])
    nn.GatedNonLinearity1(gates + ft)


def test_names_unique_and_calls_cached():
    seen = {}
    for gs in [et.hyperoctahedral_gspace(2), et.hyperoctahedral_gspace(3), gspaces.flip2dOnR2(axis=0.0), gspaces.flip2dOnR2(axis=np.pi / 2)]:
        for k in range(4):
            for p in (1, -1):
                rep = et.tensor_rep(gs, k, p)
                assert et.tensor_rep(gs, k, p) is rep
                key = (rep.group.name, rep.name)
                mats = tuple(rep(g).tobytes() for g in gs.fibergroup.elements)
                if key in seen:  # same name in the same group -> must be the same representation
                    assert seen[key] == mats, key
                seen[key] = mats
                assert rep.group.representations[rep.name] is rep
    # the two flips share a group but act differently: their vector representations must not share a name
    a, b = gspaces.flip2dOnR2(axis=0.0), gspaces.flip2dOnR2(axis=np.pi / 2)
    assert et.tensor_rep(a, 1, 1).name != et.tensor_rep(b, 1, 1).name
    # a new gspace object for the same group returns the identical representation
    assert et.tensor_rep(gspaces.flipRot2dOnR2(N=4), 2, -1) is et.tensor_rep(et.hyperoctahedral_gspace(2), 2, -1)


def test_tensor_type_layout():
    gs = et.hyperoctahedral_gspace(2)
    ft = et.tensor_type(gs, [(1, 1, 2), (0, -1, 1), (2, 1, 1)])
    assert ft.size == 2 * 2 + 1 + 4
    assert et.field_signature(ft) == [(1, 1), (1, 1), (0, -1), (2, 1)]
    # a mapping is laid out in canonical order: k ascending, +1 before -1
    ft2 = et.tensor_type(gs, {(2, 1): 1, (0, -1): 2, (0, 1): 1, (1, -1): 1})
    assert et.field_signature(ft2) == [(0, 1), (0, -1), (0, -1), (1, -1), (2, 1)]
    assert canonical_order([(1, -1), (0, -1), (1, 1), (0, 1)]) == [(0, 1), (0, -1), (1, 1), (1, -1)]
    # zero multiplicities are skipped
    assert et.field_signature(et.tensor_type(gs, [(0, 1, 0), (1, 1, 1)])) == [(1, 1)]


def _grid_action(x, gs, signature, g):
    """Independent implementation of g acting on an escnn-layout tensor of tensor fields.

    Moves pixels by index arithmetic with M(g) (the escnn layout (-y, x) / (-z, -y, x) is decoded by hand)
    and multiplies each field's components by det^.. M^{(x)k} built with numpy.kron.
    """
    d = gs.dimensionality
    m = et.group_matrix(gs, g)
    n = x.shape[-1]
    c = (n - 1) / 2
    out = torch.empty_like(x)
    # escnn index -> grid coordinates
    idx = np.stack(np.meshgrid(*[np.arange(n)] * d, indexing="ij"), -1).reshape(-1, d)
    if d == 2:
        coords = np.stack([idx[:, 1] - c, c - idx[:, 0]], 1)
    else:
        coords = np.stack([idx[:, 2] - c, c - idx[:, 1], c - idx[:, 0]], 1)
    new = coords @ m.T
    if d == 2:
        new_idx = np.stack([c - new[:, 1], new[:, 0] + c], 1)
    else:
        new_idx = np.stack([c - new[:, 2], c - new[:, 1], new[:, 0] + c], 1)
    new_idx = np.rint(new_idx).astype(int)
    o = 0
    for k, p in signature:
        r = torch.tensor(_expected(m, k, p), dtype=x.dtype)
        block = torch.einsum("ij,bj...->bi...", r, x[:, o : o + d**k])
        out[(slice(None), slice(o, o + d**k)) + tuple(new_idx.T)] = block[(slice(None), slice(None)) + tuple(idx.T)]
        o += d**k
    return out


@pytest.mark.parametrize("d", [2, 3])
def test_geometric_tensor_transform_equals_independent_action(d):
    """escnn's GeometricTensor.transform on tensor_type fields is exactly our formula, for every element."""
    gs = et.hyperoctahedral_gspace(d)
    fields = [(0, 1, 1), (0, -1, 1), (1, 1, 1), (1, -1, 1), (2, 1, 1), (2, -1, 1)] + ([(3, -1, 1)] if d == 3 else [(3, 1, 1)])
    ft = et.tensor_type(gs, fields)
    sig = et.field_signature(ft)
    g_ = torch.Generator().manual_seed(0)
    x = random_input(ft, spatial=5, batch=2, generator=g_)
    for g in gs.fibergroup.elements:
        assert torch.equal(x.transform(g).tensor, _grid_action(x.tensor, gs, sig, g)), g


ESCNN_CONV_CASES = [
    (2, [(0, 1, 1)], [(1, 1, 1)]),  # scalar -> vector
    (2, [(0, -1, 1)], [(1, 1, 1)]),  # pseudoscalar -> vector
    (2, [(2, 1, 1)], [(2, 1, 1)]),  # 2-tensor -> 2-tensor
    (2, [(1, -1, 1), (0, 1, 1)], [(2, -1, 1), (1, 1, 1)]),
    (3, [(1, 1, 1)], [(1, -1, 1)]),  # vector -> pseudovector
    (3, [(0, 1, 1)], [(1, 1, 1)]),
    (3, [(0, -1, 1)], [(1, -1, 1)]),  # pseudoscalar -> pseudovector
]


@pytest.mark.parametrize("d,fin,fout", ESCNN_CONV_CASES)
def test_escnn_conv_between_tensor_fields_is_equivariant(d, fin, fout):
    """escnn's own R2Conv/R3Conv between our field types commutes with GeometricTensor.transform.

    escnn builds its steerable kernel basis in our change of basis, so a wrong convention in our matrices gives
    O(1) errors. escnn samples that basis in float32, so even in float64 its convolution is equivariant only
    to ~1e-7: the tolerance here is 1e-5 (the exact tests are above and in test_conv.py).
    """
    torch.manual_seed(0)
    gs = et.hyperoctahedral_gspace(d)
    ti, to = et.tensor_type(gs, fin), et.tensor_type(gs, fout)
    # recompute=True: escnn otherwise shares one cached basis between layers of the same types, and the .double()
    # below would turn it to float64 under every other such layer in this process
    conv = (nn.R2Conv if d == 2 else nn.R3Conv)(
        ti, to, kernel_size=3 if d == 3 else 5, padding=1 if d == 3 else 2, recompute=True
    )
    conv = conv.double().eval()
    with torch.no_grad():
        conv.weights.normal_()
    x = random_input(ti, spatial=7, batch=2)
    errs = assert_equivariant(conv, x, rtol=1e-5)
    assert len(errs) == gs.fibergroup.order()


@pytest.mark.parametrize(
    "call,exc,needles",
    [
        (lambda gs: et.tensor_rep(gs, -1, 1), ValueError, ["k", "-1", "non-negative"]),
        (lambda gs: et.tensor_rep(gs, 1.5, 1), TypeError, ["k", "1.5", "integer"]),
        (lambda gs: et.tensor_rep(gs, True, 1), TypeError, ["k", "True"]),
        (lambda gs: et.tensor_rep(gs, 1, 0), ValueError, ["parity", "got 0", "0 is +1", "1 is -1"]),
        (lambda gs: et.tensor_rep(gs, 1, 2), ValueError, ["parity", "+1", "-1", "got 2"]),
        (lambda gs: et.tensor_rep(gs, 1, "+"), TypeError, ["parity", "'+'"]),
        (lambda gs: et.tensor_type(gs, "vector"), TypeError, ["fields", "str"]),
        (lambda gs: et.tensor_type(gs, [(1, 1)]), ValueError, ["fields[0]", "(1, 1)", "triple"]),
        (lambda gs: et.tensor_type(gs, [(1, 1, -2)]), ValueError, ["multiplicity", "-2"]),
        (lambda gs: et.tensor_type(gs, {1: 2}), ValueError, ["(k, parity) keys", "1"]),
        (lambda gs: et.tensor_type(gs, {(1, 0): 2}), ValueError, ["parity", "got 0"]),
        (lambda gs: et.tensor_type(gs, []), ValueError, ["at least one field"]),
        (lambda gs: et.tensor_type(gs, [(0, 1, 0)]), ValueError, ["at least one field"]),
    ],
)
def test_bad_input_messages(call, exc, needles):
    gs = et.hyperoctahedral_gspace(2)
    with pytest.raises(exc) as e:
        call(gs)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_field_signature_rejects_non_tensor_fields():
    gs = et.hyperoctahedral_gspace(2)
    ft = nn.FieldType(gs, [gs.trivial_repr, gs.regular_repr, gs.irrep(1, 1)])
    with pytest.raises(ValueError) as e:
        et.field_signature(ft)
    msg = str(e.value)
    assert "field 1 (regular" in msg and "field 2" in msg and "field 0" not in msg and "Accepted" in msg
    # a tensor representation built for another action of the same group is not a tensor field of this one
    a, b = gspaces.flip2dOnR2(axis=0.0), gspaces.flip2dOnR2(axis=np.pi / 2)
    with pytest.raises(ValueError, match="field 0"):
        et.field_signature(nn.FieldType(b, [et.tensor_rep(a, 1, 1)]))
