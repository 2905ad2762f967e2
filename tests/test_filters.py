"""filters.py: bases of invariant filters, checked against an independent action, a dense projector and the
character formula (tests/reference.py).

The code builds the basis from orbits of signed permutations; the checks here never use that idea: the group acts
on filters by moving pixels (index bookkeeping) and contracting M into every tensor axis (numpy.tensordot), and the
reference space is the range of the dense projector (1/|G|) sum_g perm(g) (x) rho(g) built with numpy.kron.
A set of n orthonormal invariant filters with n = the character-formula dimension spans the invariant space.
"""
import numpy as np
import pytest
import torch

import escnn_tensor as et
from escnn_tensor import filters as filters_module
from escnn_tensor import representations as reps_module
from escnn_tensor.filters import invariant_filters_sparse
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D, doubled_offsets, invariant_count, rho

CASES_2D = [(2, K, k, p) for K in range(1, 8) for k in range(5) for p in (1, -1)]
CASES_3D = [(3, K, k, p) for K in range(1, 6) for k in range(4) for p in (1, -1)]
SUBGROUPS = {**SUBGROUP_GSPACES_2D, **SUBGROUP_GSPACES_3D}


def _pixel_move(K, m):
    """dest[i] = grid index of M a_i, by a dictionary over the doubled centred offsets."""
    off = doubled_offsets(K, m.shape[0])
    pos = {tuple(o): i for i, o in enumerate(off)}
    return np.array([pos[tuple(m @ o)] for o in off])


def _act(f, m, k, parity):
    """(g.C)(a) = rho(g) C(M^-1 a) on a stack of filters (n,) + (K,)*d + (d,)*k in grid layout.

    M is contracted into each tensor axis with tensordot (never forming rho); pixels move by index bookkeeping.
    """
    d = m.shape[0]
    n, K = f.shape[0], f.shape[1]
    out = f.reshape((n, K**d) + (d,) * k)
    for ax in range(k):  # out[..., i_ax, ...] -> sum_j M[i, j] out[..., j, ...]
        out = np.moveaxis(np.tensordot(m.astype(np.float64), out, axes=([1], [2 + ax])), 0, 2 + ax)
    if parity == -1:
        out = out * np.linalg.det(m)
    moved = np.empty_like(out)
    moved[:, _pixel_move(K, m)] = out
    return moved.reshape(f.shape)


def _check(gs, K, k, parity):
    f = et.invariant_filters(gs, K, k, parity)
    d = gs.dimensionality
    assert f.dtype == torch.float64 and f.shape[1:] == (K,) * d + (d,) * k
    assert f.shape[0] == invariant_count(gs, K, k, parity)
    flat = f.reshape(f.shape[0], K**d * d**k).numpy()
    np.testing.assert_allclose(flat @ flat.T, np.eye(f.shape[0]), atol=1e-12)
    fn = f.numpy()
    for m in et.group_matrices(gs):
        assert np.abs(_act(fn, m, k, parity) - fn).max(initial=0.0) <= 1e-12
    return f


@pytest.mark.parametrize("d,K,k,parity", CASES_2D)
def test_invariant_filters_2d(d, K, k, parity):
    _check(et.hyperoctahedral_gspace(2), K, k, parity)


@pytest.mark.parametrize("d,K,k,parity", CASES_3D)
def test_invariant_filters_3d(d, K, k, parity):
    _check(et.hyperoctahedral_gspace(3), K, k, parity)


HIGHER = [(2, 2, 6, 1), (2, 3, 6, -1), (2, 1, 8, 1), (3, 3, 4, 1), (3, 2, 5, -1), (3, 1, 6, -1), (3, 1, 6, 1)]


@pytest.mark.parametrize("d,K,k,parity", HIGHER)
def test_invariant_filters_higher_orders(d, K, k, parity):
    _check(et.hyperoctahedral_gspace(d), K, k, parity)


@pytest.mark.parametrize("name", list(SUBGROUPS))
@pytest.mark.parametrize("K,k,parity", [(3, 1, 1), (4, 2, -1), (3, 0, -1), (2, 3, -1), (1, 4, 1)])
def test_invariant_filters_subgroups(name, K, k, parity):
    _check(SUBGROUPS[name](), K, k, parity)


def _projector(gs, K, k, parity):
    """(1/|G|) sum_g perm(g) (x) rho(g): the orthogonal projector onto the invariant filters, densely."""
    mats = et.group_matrices(gs)
    d = mats.shape[1]
    P = np.zeros((K**d * d**k,) * 2)
    for m in mats:
        perm = np.zeros((K**d, K**d))
        perm[_pixel_move(K, m), np.arange(K**d)] = 1.0
        P += np.kron(perm, rho(m, k, parity))
    return P / len(mats)


@pytest.mark.parametrize(
    "gs_name,K,k,parity",
    [("D4", K, k, p) for K in (1, 2, 3, 4) for k in (0, 1, 2, 3) for p in (1, -1)]
    + [("Oh", K, k, p) for K, k in ((1, 3), (2, 2), (3, 1), (3, 2), (2, 3)) for p in (1, -1)]
    + [(name, 3, 2, -1) for name in SUBGROUPS]
    + [(name, 2, 1, 1) for name in SUBGROUPS],
)
def test_span_equals_dense_projector_range(gs_name, K, k, parity):
    """The filters span exactly the range of the dense projector: F^T F equals the projector itself."""
    full = {"D4": lambda: et.hyperoctahedral_gspace(2), "Oh": lambda: et.hyperoctahedral_gspace(3)}
    gs = {**full, **SUBGROUPS}[gs_name]()
    d = gs.dimensionality
    f = et.invariant_filters(gs, K, k, parity).reshape(-1, K**d * d**k).numpy()
    P = _projector(gs, K, k, parity)
    np.testing.assert_allclose(f.T @ f, P, atol=1e-12)
    assert round(np.trace(P)) == f.shape[0] == invariant_count(gs, K, k, parity)


def _random_combination_invariant(gs, K, k, parity, n_draws=2):
    """For large bases: random combinations sum_j w_j C_j are invariant (fails with probability 0 if one C_j is not)."""
    s = invariant_filters_sparse(gs, K, k, parity)
    d = gs.dimensionality
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.standard_normal((s.shape[0], n_draws)))
    combo = torch.sparse.mm(s.t(), w).T.numpy().reshape((n_draws,) + (K,) * d + (d,) * k)
    assert np.abs(combo).max() > 0.1
    for m in et.group_matrices(gs):
        assert np.abs(_act(combo, m, k, parity) - combo).max() <= 1e-12
    return s


@pytest.mark.parametrize("d,K,k,parity", [(3, 3, 8, 1), (3, 3, 8, -1), (3, 15, 2, 1), (3, 1, 9, -1), (2, 9, 8, -1)])
def test_large_bases_sparse(d, K, k, parity):
    """The brief's large targets (3D order 8 at K=3, 3D order 2 at K=15, order 9 single-pixel tensors)."""
    gs = et.hyperoctahedral_gspace(d)
    s = _random_combination_invariant(gs, K, k, parity)
    N = K**d * d**k
    assert s.shape == (invariant_count(gs, K, k, parity), N) and s.is_coalesced()
    rows, cols = s.indices().numpy()
    vals = s.values().numpy()
    # orthonormal: every position belongs to at most one filter, and each filter has unit norm
    assert len(np.unique(cols)) == len(cols)
    np.testing.assert_allclose(np.bincount(rows, weights=vals**2, minlength=s.shape[0]), 1.0, atol=1e-12)
    assert len(cols) <= N


@pytest.mark.parametrize("d,K,k,parity", [(2, 5, 3, 1), (2, 4, 2, -1), (3, 3, 3, -1), (3, 2, 4, 1), (3, 1, 0, 1)])
def test_sparse_equals_dense(d, K, k, parity):
    gs = et.hyperoctahedral_gspace(d)
    dense = et.invariant_filters(gs, K, k, parity)
    for dtype in (torch.float64, torch.float32):
        s = invariant_filters_sparse(gs, K, k, parity, dtype=dtype)
        assert s.dtype == dtype and s.layout == torch.sparse_coo
        assert torch.equal(s.to_dense(), dense.reshape(dense.shape[0], -1).to(dtype))
    assert et.num_invariant_filters(gs, K, k, parity) == dense.shape[0]


def test_documented_order_and_signs():
    """Centre outwards (each filter on one shell of pixels), then by smallest position; positive there."""
    for d, K, k, parity in [(2, 6, 2, 1), (3, 4, 2, -1), (2, 5, 3, -1)]:
        gs = et.hyperoctahedral_gspace(d)
        f = et.invariant_filters(gs, K, k, parity).reshape(-1, K**d, d**k).numpy()
        r2 = (doubled_offsets(K, d) ** 2).sum(axis=1)
        keys = []
        for c in f:
            pix = np.flatnonzero(np.abs(c).sum(axis=1) > 0)
            assert len(set(r2[pix])) == 1
            first = np.flatnonzero(c.ravel())[0]
            assert c.ravel()[first] > 0
            keys.append((r2[pix[0]], first))
        assert keys == sorted(keys)


def test_known_counts_and_tensors():
    gs2, gs3 = et.hyperoctahedral_gspace(2), et.hyperoctahedral_gspace(3)
    # the dimension quoted in the GeometricConv issue for D4, 5x5, order 4 (2-tensor -> 2-tensor kernels)
    assert et.num_invariant_filters(gs2, 5, 4, 1) == 52
    # single-pixel invariant tensors: delta_ij for true 2-tensors, the Levi-Civita symbol for 3D pseudo 3-tensors
    delta = et.invariant_filters(gs2, 1, 2, 1)
    assert delta.shape == (1, 1, 1, 2, 2)
    np.testing.assert_allclose(delta[0, 0, 0].abs(), torch.eye(2, dtype=torch.float64) / np.sqrt(2), atol=1e-15)
    eps = np.zeros((3, 3, 3))
    for (i, j, k), s in [((0, 1, 2), 1), ((1, 2, 0), 1), ((2, 0, 1), 1), ((0, 2, 1), -1), ((2, 1, 0), -1), ((1, 0, 2), -1)]:
        eps[i, j, k] = s
    lc = et.invariant_filters(gs3, 1, 3, -1)
    assert lc.shape[0] == 1
    c = lc[0, 0, 0, 0].numpy()
    np.testing.assert_allclose(c * np.sign(c[0, 1, 2]), eps / np.sqrt(6), atol=1e-15)
    # true vectors have no invariant single-pixel value; neither do 2D pseudo 2-tensors other than epsilon_ij
    assert et.num_invariant_filters(gs2, 1, 1, 1) == 0
    assert et.num_invariant_filters(gs3, 1, 3, 1) == 0
    assert et.num_invariant_filters(gs2, 1, 2, -1) == 1


def test_deterministic_fresh_and_dtype():
    gs = et.hyperoctahedral_gspace(2)
    a = et.invariant_filters(gs, 5, 2, -1)
    filters_module._filters_np.cache_clear()
    b = et.invariant_filters(gs, 5, 2, -1)
    assert torch.equal(a, b)  # recomputed from scratch: same order and signs
    a.mul_(0)  # a caller scribbling on its copy changes nobody else's
    assert torch.equal(et.invariant_filters(gs, 5, 2, -1), b)
    f32 = et.invariant_filters(gs, 3, 1, 1, dtype=torch.float32)
    assert f32.dtype == torch.float32 and torch.equal(f32, et.invariant_filters(gs, 3, 1, 1).float())


def test_cache_memory_is_bounded(monkeypatch):
    gs = et.hyperoctahedral_gspace(3)
    cache = filters_module._filters_np
    cache.cache_clear()
    one = invariant_filters_sparse(gs, 3, 4, 1)
    size = 24 * one._nnz()  # int64 row + int64 column + float64 value per entry
    assert cache.cache_info() == {"hits": 0, "misses": 1, "entries": 1, "bytes": size}
    invariant_filters_sparse(gs, 3, 4, 1)
    assert cache.cache_info()["hits"] == 1
    monkeypatch.setattr(filters_module, "CACHE_LIMIT_BYTES", size + size // 2)
    two = invariant_filters_sparse(gs, 3, 4, -1)  # does not fit beside the first: the first is evicted
    info = cache.cache_info()
    assert info["entries"] == 1 and info["bytes"] == 24 * two._nnz() <= size + size // 2
    monkeypatch.setattr(filters_module, "CACHE_LIMIT_BYTES", 100)
    big = invariant_filters_sparse(gs, 3, 5, 1)  # larger than the bound: built, returned, not cached
    assert big.shape[0] == invariant_count(gs, 3, 5, 1)
    assert cache.cache_info()["entries"] == 1
    # evicted entries are rebuilt identically
    assert torch.equal(invariant_filters_sparse(gs, 3, 4, 1).to_dense(), one.to_dense())
    cache.cache_clear()


def test_refuses_sizes_that_do_not_fit(monkeypatch):
    gs3 = et.hyperoctahedral_gspace(3)
    # 3D order 8 at K=3: 3830 dense filters of 27 x 6561 entries = 5.1 GiB in float64 -> refused, sparse is fine
    with pytest.raises(ValueError) as e:
        et.invariant_filters(gs3, 3, 8, 1)
    msg = str(e.value)
    for needle in ("invariant_filters(", "k=8", "kernel_size=3", "5.1 GiB", "3830 x 3^3 x 3^8", "limit 2.0 GiB",
                   "MEMORY_LIMIT_BYTES", "invariant_filters_sparse"):
        assert needle in msg, (needle, msg)
    # order 20: even the sparse construction (27 x 3^20 basis filters) is refused, before anything is allocated
    with pytest.raises(ValueError, match=r"3\^3 x 3\^20 = 94143178827 basis filters"):
        invariant_filters_sparse(gs3, 3, 20, 1)
    with pytest.raises(ValueError, match="num_invariant_filters"):
        et.num_invariant_filters(gs3, 3, 20, 1)
    # the limit is read at call time
    monkeypatch.setattr(reps_module, "MEMORY_LIMIT_BYTES", 10_000)
    with pytest.raises(ValueError, match="limit 9.8 KiB"):
        et.invariant_filters(et.hyperoctahedral_gspace(2), 5, 2, 1)


@pytest.mark.parametrize(
    "args,exc,needle",
    [
        ((0, 1, 1), ValueError, "kernel_size"),
        (("3", 1, 1), TypeError, "kernel_size"),
        ((3, -1, 1), ValueError, "k"),
        ((3, 1, 0), ValueError, "parity"),
    ],
)
def test_bad_input(args, exc, needle):
    for fn in (et.invariant_filters, invariant_filters_sparse, et.num_invariant_filters):
        with pytest.raises(exc, match=needle):
            fn(et.hyperoctahedral_gspace(2), *args)


@pytest.mark.parametrize("d,K,k,parity", [(2, 3, 2, 1), (2, 4, 1, -1), (3, 3, 2, -1), (3, 2, 3, 1)])
def test_filter_index_is_the_dense_basis(d, K, k, parity):
    """invariant_filter_index: position j holds filter filt[j] with entry vals[j]; every other filter is 0 there."""
    from escnn_tensor.filters import invariant_filter_index

    gs = et.hyperoctahedral_gspace(d)
    dense = et.invariant_filters(gs, K, k, parity).reshape(-1, K**d * d**k)
    n, filt, vals = invariant_filter_index(gs, K, k, parity)
    assert n == dense.shape[0] and filt.shape == vals.shape == (K**d * d**k,)
    rebuilt = torch.zeros_like(dense)
    j = np.flatnonzero(filt >= 0)
    rebuilt[filt[j], j] = torch.from_numpy(vals[j])
    assert torch.equal(rebuilt, dense)
    assert (vals[filt < 0] == 0).all() and (vals[filt >= 0] != 0).all()
