"""filters.py: bases of invariant filters, checked against an independent action and the character formula."""
import itertools

import numpy as np
import pytest
import torch

import escnn_tensor as et
from escnn_tensor import filters as filters_module
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D

CASES_2D = [(2, K, k, p) for K in range(1, 8) for k in range(5) for p in (1, -1)]
CASES_3D = [(3, K, k, p) for K in range(1, 6) for k in range(4) for p in (1, -1)]


def _offsets(K, d):
    """Doubled centred offsets of every pixel (integers for odd and even K), in grid (C) order."""
    idx = np.array(list(itertools.product(range(K), repeat=d)))
    return 2 * idx - (K - 1)


def _rho(m, k, parity):
    out = np.ones((1, 1))
    for _ in range(k):
        out = np.kron(out, m)
    return out * (np.linalg.det(m) if parity == -1 else 1.0)


def _act(f, m, k, parity):
    """(g.C)(a) = rho(g) C(M^-1 a) for one filter in grid layout, by explicit pixel bookkeeping."""
    d = m.shape[0]
    K = f.shape[0]
    off = _offsets(K, d)
    flat = f.reshape(K**d, d**k)
    out = np.zeros_like(flat)
    pos = {tuple(o): i for i, o in enumerate(off)}
    r = _rho(m, k, parity)
    for i, o in enumerate(off):
        out[pos[tuple(m @ o)]] = r @ flat[i]
    return out.reshape(f.shape)


def _character_count(gs, K, k, parity):
    """dim of invariant filters = (1/|G|) sum_g #(pixels fixed by M) * chi_rho(g)."""
    d = gs.dimensionality
    off = _offsets(K, d)
    total = 0.0
    mats = [et.group_matrix(gs, g) for g in gs.fibergroup.elements]
    for m in mats:
        fixed = int(np.all(off @ m.T == off, axis=1).sum())
        chi = float(np.trace(m)) ** k * (np.linalg.det(m) if parity == -1 else 1.0)
        total += fixed * chi
    n = total / len(mats)
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


def _check(gs, K, k, parity):
    f = et.invariant_filters(gs, K, k, parity)
    d = gs.dimensionality
    assert f.dtype == torch.float64 and f.shape[1:] == (K,) * d + (d,) * k
    assert f.shape[0] == _character_count(gs, K, k, parity)
    flat = f.reshape(f.shape[0], K**d * d**k).numpy()
    np.testing.assert_allclose(flat @ flat.T, np.eye(f.shape[0]), atol=1e-12)
    for g in gs.fibergroup.elements:
        m = et.group_matrix(gs, g)
        for c in f.numpy():
            assert np.abs(_act(c, m, k, parity) - c).max() <= 1e-12
    return f


@pytest.mark.parametrize("d,K,k,parity", CASES_2D)
def test_invariant_filters_2d(d, K, k, parity):
    _check(et.hyperoctahedral_gspace(2), K, k, parity)


@pytest.mark.parametrize("d,K,k,parity", [c for c in CASES_3D if not (c[1] == 5 and c[2] == 3)])
def test_invariant_filters_3d(d, K, k, parity):
    _check(et.hyperoctahedral_gspace(3), K, k, parity)


@pytest.mark.parametrize("parity", [1, -1])
def test_invariant_filters_3d_largest(parity):
    # K=5, k=3: 125 pixels x 27 components, every one of the 48 elements; the slowest case, kept on its own
    _check(et.hyperoctahedral_gspace(3), 5, 3, parity)


@pytest.mark.parametrize("name", list(SUBGROUP_GSPACES_2D) + list(SUBGROUP_GSPACES_3D))
@pytest.mark.parametrize("K,k,parity", [(3, 1, 1), (4, 2, -1), (3, 0, -1)])
def test_invariant_filters_subgroups(name, K, k, parity):
    _check({**SUBGROUP_GSPACES_2D, **SUBGROUP_GSPACES_3D}[name](), K, k, parity)


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
    with pytest.raises(exc, match=needle):
        et.invariant_filters(et.hyperoctahedral_gspace(2), *args)
