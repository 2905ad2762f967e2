"""GeometricImage and MultiImage: every operation against an independent reference (explicit pixel loops /
numpy einsum written from the definitions), equivariance through escnn's GeometricTensor.transform for every
group element, batching/vmap, gradients and bad input."""
import itertools

import numpy as np
import pytest
import torch

from escnn.nn import GeometricTensor

from escnn_tensor import (
    group_elements,
    group_matrices,
    group_matrix,
    hyperoctahedral_gspace,
    invariant_filters,
    tensor_type,
)
from escnn_tensor.image import GeometricImage, MultiImage, levi_civita_symbol
from escnn_tensor.representations import tensor_matrix
from escnn_tensor.testing import assert_equivariant
from escnn_tensor.image import from_geometric_tensor, to_geometric_tensor

GEN = torch.Generator().manual_seed(7)




def rand(*shape, dtype=torch.float64):
    return torch.randn(shape, generator=GEN, dtype=dtype)


def image(D, N, k, parity=1, batch=(), dtype=torch.float64, is_torus=True):
    data = rand(*batch, *(N,) * D, *(D,) * k, dtype=dtype)
    return GeometricImage(data, parity, D, is_torus=is_torus, k=k if batch else None)


# ------------------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------------------


def ref_times_group_element(x, M, k, parity):
    """Pixel loop over centred coordinates: new[M a] = rho(g) old[a], rho = tensor_matrix (kron)."""
    x = x.numpy()
    D, N = M.shape[0], x.shape[0]
    rho = tensor_matrix(M, k, parity)
    out = np.zeros_like(x)
    c = (N - 1) / 2
    for idx in itertools.product(range(N), repeat=D):
        a = np.array(idx) - c
        new = tuple(int(round(v)) for v in (M @ a + c))
        out[new] = (rho @ x[idx].reshape(-1)).reshape((D,) * k)
    return out


def ref_convolve(img, flt, D, stride=1, dilation=1, pad=None, torus=True):
    """out[j] = sum_m img[s j + e m - p] (x) flt[m], wrapped (torus) or zero outside."""
    img, flt = img.numpy(), flt.numpy()
    Ns, M = img.shape[:D], flt.shape[0]
    ki, kf = img.ndim - D, flt.ndim - D
    p = (M - 1) // 2 * dilation if pad is None else pad
    n_out = [(N + 2 * p - dilation * (M - 1) - 1) // stride + 1 for N in Ns]
    out = np.zeros(tuple(n_out) + (D,) * (ki + kf))
    for j in itertools.product(*[range(n) for n in n_out]):
        for m in itertools.product(range(M), repeat=D):
            src = [stride * jj + dilation * mm - p for jj, mm in zip(j, m)]
            if torus:
                src = [s % N for s, N in zip(src, Ns)]
            elif any(s < 0 or s >= N for s, N in zip(src, Ns)):
                continue
            out[j] += np.multiply.outer(img[tuple(src)], flt[m])
    return out


def letters(n, start=0):
    return "".join(chr(ord("a") + start + i) for i in range(n))


# ------------------------------------------------------------------------------------------------------
# construction and bad input
# ------------------------------------------------------------------------------------------------------


def test_construction_and_properties():
    img = image(2, 5, 2, -1, batch=(3,))
    assert (img.D, img.N, img.k, img.parity, img.n_batch, img.batch_shape) == (2, 5, 2, -1, 1, (3,))
    assert img.is_torus == (True, True)
    assert GeometricImage(rand(4, 4, 4), 1, 3).k == 0  # 3D scalar image, no batch


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(data=torch.zeros(5, 5, 2), parity=0, D=2), ValueError, ["parity", "ginjax", "+1"]),
        (dict(data=torch.zeros(5, 5, 2), parity=1, D=4), ValueError, ["D", "2 or 3"]),
        (dict(data=torch.zeros(5, 5, 3), parity=1, D=2), ValueError, ["size D=2"]),
        (dict(data=torch.zeros(5, 5, dtype=torch.int64), parity=1, D=2), TypeError, ["floating"]),
        (dict(data=np.zeros((5, 5)), parity=1, D=2), TypeError, ["torch tensor"]),
        (dict(data=torch.zeros(5, 5, 2), parity=1, D=2, is_torus="yes"), TypeError, ["is_torus"]),
    ],
)
def test_bad_construction(kwargs, exc, words):
    with pytest.raises(exc) as info:
        GeometricImage(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_bad_operation_arguments():
    img = image(2, 6, 2)
    with pytest.raises(ValueError, match="signed permutation"):
        img.times_group_element(np.array([[0.7071, -0.7071], [0.7071, 0.7071]]))
    with pytest.raises(ValueError, match="signed permutation"):
        img.times_group_element(np.eye(3))
    with pytest.raises(ValueError, match="distinct"):
        img.multicontract([(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="tensor index"):
        img.contract(0, 2)
    with pytest.raises(ValueError, match="D - 1"):
        img.levi_civita_contract((0, 1))
    with pytest.raises(ValueError, match="divide"):
        img.max_pool(4)
    with pytest.raises(ValueError, match="odd filter"):
        img.convolve_with(image(2, 2, 0))
    with pytest.raises(ValueError, match="padding"):
        img.convolve_with(image(2, 3, 0), padding="CIRCULAR")
    with pytest.raises(ValueError, match="torus"):
        image(2, 5, 1, is_torus=False).translate((1, 0))
    with pytest.raises(ValueError, match="same"):
        img + image(2, 6, 2, parity=-1)
    with pytest.raises(ValueError, match="permutation of"):
        img.transpose((0, 0))


# ------------------------------------------------------------------------------------------------------
# group action
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("D,N", [(2, 4), (2, 5), (3, 3), (3, 4)])
@pytest.mark.parametrize("k,parity", [(0, -1), (1, 1), (2, -1)])
def test_times_group_element_matches_pixel_loop(D, N, k, parity):
    gs = hyperoctahedral_gspace(D)
    img = image(D, N, k, parity)
    for M in group_matrices(gs):
        ours = img.times_group_element(M).data.numpy()
        np.testing.assert_array_equal(ours, ref_times_group_element(img.data, M, k, parity))


def test_times_group_element_elements_and_composition():
    """An escnn element acts as its matrix; acting twice is acting with the product (a group action)."""
    for D in (2, 3):
        gs = hyperoctahedral_gspace(D)
        img = image(D, 4, 2, -1, batch=(2,))
        elems = group_elements(gs)
        for g in elems[:: 5 if D == 3 else 1]:
            M = group_matrix(gs, g)
            assert torch.equal(img.times_group_element(g).data, img.times_group_element(M).data)
        for M1, M2 in itertools.product(group_matrices(gs)[:: 7 if D == 3 else 1], repeat=2):
            twice = img.times_group_element(M1).times_group_element(M2)
            assert torch.equal(twice.data, img.times_group_element(M2 @ M1).data)


def test_times_group_element_subgroup_element_needs_its_gspace():
    from escnn import gspaces

    c4 = gspaces.rot2dOnR2(N=4)
    g = c4.fibergroup.elements[1]
    img = image(2, 5, 1)
    with pytest.raises(ValueError, match="gspace"):
        img.times_group_element(g)
    assert torch.equal(img.times_group_element(g, gspace=c4).data,
                       img.times_group_element(group_matrix(c4, g)).data)


def test_times_group_element_permutes_is_torus():
    img = image(2, 5, 0, is_torus=(True, False))
    swap = np.array([[0, 1], [1, 0]])
    assert img.times_group_element(swap).is_torus == (False, True)


# ------------------------------------------------------------------------------------------------------
# convolution
# ------------------------------------------------------------------------------------------------------

CONV_CASES = [
    # D, N, k, M, fk, kwargs (ours), ref kwargs
    (2, 7, 1, 3, 1, {}, {}),
    (2, 6, 0, 3, 2, {}, {}),
    (2, 8, 1, 5, 0, {"stride": 2}, {"stride": 2}),
    (2, 9, 2, 3, 0, {"dilation": 2}, {"dilation": 2}),
    (2, 7, 1, 3, 1, {"padding": "SAME"}, {"torus": False}),
    (2, 7, 0, 3, 1, {"padding": "VALID"}, {"pad": 0}),
    (2, 6, 1, 2, 0, {"padding": 1}, {"pad": 1, "torus": False}),
    (3, 4, 1, 3, 1, {}, {}),
]


@pytest.mark.parametrize("D,N,k,M,fk,kw,ref_kw", CONV_CASES)
def test_convolve_matches_reference(D, N, k, M, fk, kw, ref_kw):
    img, flt = image(D, N, k, -1), image(D, M, fk, -1)
    out = img.convolve_with(flt, **kw)
    assert (out.k, out.parity) == (k + fk, 1)
    np.testing.assert_allclose(out.data.numpy(), ref_convolve(img.data, flt.data, D, **ref_kw), rtol=1e-12,
                               atol=1e-12)


def test_convolve_is_cross_correlation():
    """A delta image at pixel p gives out[p - m + c] = filter[m] (no flip of the filter, as ginjax)."""
    data = torch.zeros(7, 7, dtype=torch.float64)
    data[3, 2] = 1.0
    flt = rand(3, 3)
    out = GeometricImage(data, 1, 2).convolve_with(GeometricImage(flt, 1, 2)).data
    torch.testing.assert_close(out[2:5, 1:4], flt.flip(0, 1), rtol=0, atol=0)


def test_convolve_mixed_torus_axes():
    img, flt = image(2, 6, 0, is_torus=(True, False)), image(2, 3, 1)
    out = img.convolve_with(flt).data.numpy()
    # axis 0 wraps, axis 1 is zero padded: compare with the two references on a padded copy
    padded = np.pad(img.data.numpy(), ((1, 1), (0, 0)), mode="wrap")
    ref = ref_convolve(torch.from_numpy(padded), flt.data, 2, torus=False)[1:-1]
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def _through_escnn(op, key, D, out_key=None):
    """A GeometricTensor -> GeometricTensor map applying a GeometricImage operation to one (k, parity) key."""
    def f(gt):
        mi = from_geometric_tensor(gt)
        k, p = key
        out = op(GeometricImage(mi[key], p, D, k=k))
        return to_geometric_tensor(MultiImage({(out.k, out.parity): out.data}, D), gt.type.gspace)
    return f


@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_operations_are_equivariant(D, dtype):
    """f(g.x) == g.f(x) for every element, with g. escnn's GeometricTensor.transform."""
    gs = hyperoctahedral_gspace(D)
    N = 6 if D == 2 else 4
    x1 = GeometricTensor(rand(2, 2 * D, *(N,) * D, dtype=dtype), tensor_type(gs, [(1, -1, 2)]))
    x2 = GeometricTensor(rand(1, D * D, *(N,) * D, dtype=dtype), tensor_type(gs, [(2, 1, 1)]))
    filt = invariant_filters(gs, 3, 1, 1, dtype=dtype)
    weights = rand(len(filt), dtype=dtype).reshape((-1,) + (1,) * (filt.dim() - 1))
    filt = GeometricImage((weights * filt).sum(0), 1, D)  # a random invariant filter
    ops = [
        (x1, (1, -1), lambda im: im.convolve_with(filt)),
        (x1, (1, -1), lambda im: im.norm()),
        (x1, (1, -1), lambda im: im.max_pool(2)),
        (x1, (1, -1), lambda im: im.average_pool(2)),
        (x1, (1, -1), lambda im: im.unpool(2)),
        (x1, (1, -1), lambda im: im.normalize()),
        (x1, (1, -1), lambda im: im * im),
        (x2, (2, 1), lambda im: im.contract(0, 1)),
        (x2, (2, 1), lambda im: im.transpose((1, 0))),
        (x2, (2, 1), lambda im: im.levi_civita_contract(tuple(range(D - 1)))),
    ]
    for x, key, op in ops:
        assert_equivariant(_through_escnn(op, key, D), x)


# ------------------------------------------------------------------------------------------------------
# contractions, products, norms
# ------------------------------------------------------------------------------------------------------


def test_contractions_match_einsum():
    img = image(2, 4, 4, batch=(2,))
    x = img.data.numpy()
    np.testing.assert_allclose(img.contract(1, 3).data.numpy(), np.einsum("zuvaibi->zuvab", x), rtol=1e-13)
    np.testing.assert_allclose(img.multicontract([(0, 2), (1, 3)]).data.numpy(),
                               np.einsum("zuvijij->zuv", x), rtol=1e-13)
    np.testing.assert_allclose(img.transpose((2, 0, 3, 1)).data.numpy(), np.einsum("zuvabcd->zuvcadb", x))


def test_levi_civita():
    eps2 = levi_civita_symbol(2).numpy()
    np.testing.assert_array_equal(eps2, [[0, 1], [-1, 0]])
    eps3 = levi_civita_symbol(3).numpy()
    assert eps3[0, 1, 2] == 1 and eps3[1, 0, 2] == -1 and eps3[2, 0, 1] == 1 and np.abs(eps3).sum() == 6
    # 2D vector: out_l = sum_i v_i eps[i, l] = (-v_y, v_x), a pseudovector
    v = image(2, 5, 1, 1)
    out = v.levi_civita_contract(0)
    assert (out.k, out.parity) == (1, -1)
    torch.testing.assert_close(out.data, torch.stack([-v.data[..., 1], v.data[..., 0]], -1), rtol=0, atol=0)
    t3 = image(3, 3, 3)
    np.testing.assert_allclose(t3.levi_civita_contract((2, 0)).data.numpy(),
                               np.einsum("uvwibj,jil->uvwbl", t3.data.numpy(), eps3), rtol=1e-13)


def test_tensor_product_sum_scalar():
    a, b = image(2, 5, 1, -1), image(2, 5, 2, -1)
    ab = a * b
    assert (ab.k, ab.parity) == (3, 1)
    np.testing.assert_array_equal(ab.data.numpy(), np.einsum("uvi,uvjk->uvijk", a.data.numpy(), b.data.numpy()))
    c = image(2, 5, 1, -1)
    np.testing.assert_array_equal((a + c).data, a.data + c.data)
    np.testing.assert_array_equal((a - c).data, a.data - c.data)
    np.testing.assert_array_equal((2.5 * a).data, 2.5 * a.data)
    np.testing.assert_array_equal((a * 2.5).data, 2.5 * a.data)


def test_norm_and_normalize():
    img = image(3, 3, 2, -1)
    n = img.norm()
    assert (n.k, n.parity) == (0, 1)
    np.testing.assert_allclose(n.data.numpy(), np.sqrt((img.data.numpy() ** 2).sum((-1, -2))), rtol=1e-14)
    u = img.normalize()
    assert abs(u.norm().data.max().item() - 1.0) < 1e-14
    np.testing.assert_allclose(u.data.numpy(), img.data.numpy() / n.data.max().item(), rtol=1e-14)
    tiny = GeometricImage(img.data * 1e-7, -1, 3)
    assert torch.equal(tiny.normalize().data, tiny.data)  # below ginjax's TINY: unchanged


# ------------------------------------------------------------------------------------------------------
# pooling, translation
# ------------------------------------------------------------------------------------------------------


def test_max_pool_matches_loop_and_breaks_ties_first():
    img = image(2, 6, 1, batch=(2,))
    out = img.max_pool(3).data.numpy()
    x = img.data.numpy()
    for b, i, j in itertools.product(range(2), range(2), range(2)):
        patch = x[b, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(9, 2)
        np.testing.assert_array_equal(out[b, i, j], patch[np.argmax(np.linalg.norm(patch, axis=1))])
    # equal norms: the first pixel of the patch in row-major order wins
    tie = torch.zeros(2, 2, 2, dtype=torch.float64)
    tie[0, 1] = torch.tensor([0.0, 1.0])
    tie[1, 0] = torch.tensor([1.0, 0.0])
    assert GeometricImage(tie, 1, 2).max_pool(2).data.tolist() == [[[0.0, 1.0]]]


def test_average_pool_unpool_translate():
    img = image(3, 4, 1)
    x = img.data.numpy()
    np.testing.assert_allclose(img.average_pool(2).data.numpy(),
                               x.reshape(2, 2, 2, 2, 2, 2, 3).mean((1, 3, 5)), rtol=1e-14)
    up = img.unpool(2).data.numpy()
    for idx in itertools.product(range(8), repeat=3):
        np.testing.assert_array_equal(up[idx], x[tuple(i // 2 for i in idx)])
    moved = img.translate((1, -2, 0)).data.numpy()
    for idx in itertools.product(range(4), repeat=3):
        src = ((idx[0] - 1) % 4, (idx[1] + 2) % 4, idx[2])
        np.testing.assert_array_equal(moved[idx], x[src])


# ------------------------------------------------------------------------------------------------------
# batches, vmap, gradients
# ------------------------------------------------------------------------------------------------------

BATCH_OPS = {
    "convolve": lambda im, f: im.convolve_with(f),
    "norm": lambda im, f: im.norm(),
    "normalize": lambda im, f: im.normalize(),
    "max_pool": lambda im, f: im.max_pool(2),
    "contract": lambda im, f: im.contract(0, 1),
    "levi_civita": lambda im, f: im.levi_civita_contract(1),
    "rotate": lambda im, f: im.times_group_element(np.array([[0, -1], [1, 0]])),
    "product": lambda im, f: im * im,
}


@pytest.mark.parametrize("name", sorted(BATCH_OPS))
def test_batch_axes_and_vmap_equal_per_entry(name):
    op = BATCH_OPS[name]
    filt = image(2, 3, 1)
    batch = rand(3, 2, 4, 4, 2, 2)
    per_entry = torch.stack([torch.stack([op(GeometricImage(batch[i, j], 1, 2), filt).data for j in range(2)])
                             for i in range(3)])
    batched = op(GeometricImage(batch, 1, 2, k=2), filt).data
    vmapped = torch.vmap(torch.vmap(lambda x: op(GeometricImage(x, 1, 2), filt).data))(batch)
    torch.testing.assert_close(batched, per_entry, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(vmapped, per_entry, rtol=1e-14, atol=1e-14)


def test_gradients_flow():
    x = rand(5, 5, 2).requires_grad_()
    f = rand(3, 3, 2)

    def fn(x):
        img = GeometricImage(x, 1, 2)
        return (img.convolve_with(GeometricImage(f, 1, 2)).contract(0, 1).max_pool(5).data
                + img.times_group_element(np.array([[0, 1], [-1, 0]])).norm().average_pool(5).data)

    assert torch.autograd.gradcheck(fn, (x,))


# ------------------------------------------------------------------------------------------------------
# MultiImage
# ------------------------------------------------------------------------------------------------------


def multi(D=2, N=5, B=2, dtype=torch.float64, keys=((1, -1, 2), (0, 1, 3), (2, 1, 1), (0, -1, 1))):
    return MultiImage({(k, p): rand(B, c, *(N,) * D, *(D,) * k, dtype=dtype) for k, p, c in keys}, D)


def test_multi_image_order_signature_and_mapping():
    mi = multi()
    assert list(mi) == [(0, 1), (0, -1), (1, -1), (2, 1)]  # canonical: k ascending, +1 before -1
    assert mi.signature == (((0, 1), 3), ((0, -1), 1), ((1, -1), 2), ((2, 1), 1))
    assert (mi.batch_size, mi.N, mi.D, len(mi), mi.dtype) == (2, 5, 2, 4, torch.float64)


def test_multi_image_arithmetic_concat_to():
    a, b = multi(), multi()
    for key in a:
        assert torch.equal((a + b)[key], a[key] + b[key])
        assert torch.equal((a - b)[key], a[key] - b[key])
        assert torch.equal((3.0 * a)[key], 3.0 * a[key])
        assert torch.equal((a * 3.0)[key], 3.0 * a[key])
    c = a.concat(multi(keys=((1, -1, 1), (3, 1, 1))))
    assert c.signature == (((0, 1), 3), ((0, -1), 1), ((1, -1), 3), ((2, 1), 1), ((3, 1), 1))
    assert torch.equal(c[(1, -1)][:, :2], a[(1, -1)])
    batch = a.concat(b, axis=0)
    assert batch.batch_size == 4 and torch.equal(batch[(2, 1)][2:], b[(2, 1)])
    assert a == a.to(torch.float64) and a != b and a.equal(b * 1.0) is False
    assert (a / 2.0) == a * 0.5
    f32 = a.to(torch.float32)
    assert f32.dtype == torch.float32 and f32.signature == a.signature
    with pytest.raises(ValueError, match="signature"):
        a + multi(keys=((0, 1, 1),))


def test_multi_image_times_group_element_is_per_key():
    mi = multi(D=3, N=4, keys=((0, -1, 1), (1, 1, 2), (2, -1, 1)))
    for M in group_matrices(hyperoctahedral_gspace(3))[::5]:
        out = mi.times_group_element(M)
        for (k, p), v in mi.items():
            assert torch.equal(out[(k, p)], GeometricImage(v, p, 3, k=k).times_group_element(M).data)


@pytest.mark.parametrize(
    "data, words",
    [
        ({(1, 0): torch.zeros(1, 1, 5, 5, 2)}, ["parity", "ginjax"]),
        ({(1, 1): torch.zeros(1, 5, 5, 2)}, ["(B, C"]),
        ({(0, 1): torch.zeros(1, 1, 5, 5), (1, 1): torch.zeros(2, 1, 5, 5, 2)}, ["batch size"]),
        ({(0, 1): torch.zeros(1, 1, 5, 5, dtype=torch.float64), (1, 1): torch.zeros(1, 1, 5, 5, 2)}, ["dtype"]),
        ({"scalar": torch.zeros(1, 1, 5, 5)}, ["(k, parity)"]),
    ],
)
def test_multi_image_bad_input(data, words):
    with pytest.raises(ValueError) as info:
        MultiImage(data, 2)
    for w in words:
        assert w in str(info.value)
