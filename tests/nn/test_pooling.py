"""_pooling.py / _upsample.py: NormMaxPool, AvgPool and Upsample — equivariance over every element (train and eval,
2D, 3D, subgroups, float32), outputs against loops written from the definitions (and escnn's 2D NormMaxPool),
output shapes, gradients, the documented tie rule, and bad input."""
import copy
import itertools
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from escnn import nn as enn

import escnn_tensor as et
from escnn_tensor.nn._pooling import AvgPool, NormMaxPool
from escnn_tensor.nn._upsample import Upsample
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
SPEC = {
    2: [(0, 1, 1), (1, 1, 1), (2, -1, 1), (0, -1, 1), (1, -1, 1), (2, 1, 1), (0, 1, 1), (1, 1, 1)],
    3: [(1, 1, 1), (0, 1, 1), (2, 1, 1), (3, -1, 1), (1, -1, 1), (0, 1, 1)],
}
LAYERS = {"normmax": NormMaxPool, "avg": AvgPool, "upsample": Upsample}


def field_type(d, gs=None):
    return et.tensor_type(GS[d] if gs is None else gs, SPEC[d])


def data(ft, spatial, seed, batch=2, dtype=torch.float64):
    return random_input(ft, spatial, batch, dtype, torch.Generator().manual_seed(seed))


def fields_of(ft):
    d = ft.gspace.dimensionality
    out, start = [], 0
    for k, _ in et.field_signature(ft):
        out.append((start, d**k))
        start += d**k
    return out


# ------------------------------------------------------------------------------------------------------------------
# equivariance


@pytest.mark.parametrize(
    "d,name,size,spatial",
    [(2, "normmax", 2, 6), (2, "normmax", 3, 6), (2, "avg", 2, 6), (2, "avg", 3, 6), (2, "upsample", 3, 4),
     (3, "normmax", 2, 4), (3, "avg", 2, 4), (3, "upsample", 2, 3)],
)
def test_equivariant_every_element_train_and_eval(d, name, size, spatial):
    ft = field_type(d)
    layer = LAYERS[name](ft, size).double()
    x = data(ft, spatial, seed=size + spatial)
    assert_equivariant(layer, x)
    layer.eval()
    assert_equivariant(layer, x)


@pytest.mark.parametrize("d,gs_name", [(2, "C4"), (2, "flip_x"), (3, "C4v")])
def test_equivariant_subgroups(d, gs_name):
    gs = (SUBGROUP_GSPACES_2D if d == 2 else SUBGROUP_GSPACES_3D)[gs_name]()
    ft = field_type(d, gs)
    x = data(ft, 4, seed=1)
    for layer in (NormMaxPool(ft), AvgPool(ft), Upsample(ft)):
        assert_equivariant(layer.double(), x)


def test_float32():
    ft = field_type(2)
    x = data(ft, 6, seed=2, dtype=torch.float32)
    for layer in (NormMaxPool(ft), AvgPool(ft, 3), Upsample(ft)):
        assert layer(x).tensor.dtype == torch.float32
        assert_equivariant(layer, x)


# ------------------------------------------------------------------------------------------------------------------
# outputs against the definitions


def patches(spatial, K):
    """For every output pixel (multi-index), the input pixels of its patch in row-major order."""
    out = {}
    for o in itertools.product(*(range(n // K) for n in spatial)):
        out[o] = [tuple(K * oi + a for oi, a in zip(o, off)) for off in itertools.product(range(K), repeat=len(o))]
    return out


@pytest.mark.parametrize("d,K,spatial", [(2, 2, 6), (2, 3, 6), (3, 2, 4)])
def test_norm_max_pool_against_definition(d, K, spatial):
    ft = field_type(d)
    x = data(ft, spatial, seed=3)
    y = NormMaxPool(ft, K).double()(x).tensor.numpy()
    xn = x.tensor.numpy()
    ref = np.empty_like(y)
    for b in range(xn.shape[0]):
        for s, D in fields_of(ft):
            for o, pix in patches(xn.shape[2:], K).items():
                values = [xn[(b, slice(s, s + D)) + p] for p in pix]
                best = max(range(len(pix)), key=lambda i: (values[i] ** 2).sum())
                ref[(b, slice(s, s + D)) + o] = values[best]
    np.testing.assert_array_equal(y, ref)  # values are copied, not computed


@pytest.mark.parametrize("d,K,spatial", [(2, 3, 6), (3, 2, 4)])
def test_avg_pool_against_definition(d, K, spatial):
    ft = field_type(d)
    x = data(ft, spatial, seed=4)
    y = AvgPool(ft, K).double()(x).tensor.numpy()
    xn = x.tensor.numpy()
    for o, pix in patches(xn.shape[2:], K).items():
        ref = np.mean([xn[(slice(None), slice(None)) + p] for p in pix], axis=0)
        np.testing.assert_allclose(y[(slice(None), slice(None)) + o], ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("d,s,spatial", [(2, 1, 3), (2, 3, 3), (3, 2, 3)])
def test_upsample_against_definition(d, s, spatial):
    ft = field_type(d)
    x = data(ft, spatial, seed=5)
    y = Upsample(ft, s)(x).tensor
    ref = x.tensor.numpy()
    for axis in range(2, 2 + d):
        ref = np.repeat(ref, s, axis=axis)  # output pixel i holds input pixel i // s
    np.testing.assert_array_equal(y.numpy(), ref)
    np.testing.assert_array_equal(y.numpy(), F.interpolate(x.tensor, scale_factor=s, mode="nearest").numpy())


def test_norm_max_pool_equals_escnn_in_2d():
    """escnn's NormMaxPool (2D only, float32 only) selects the same pixels."""
    ft = field_type(2)
    x = data(ft, 6, seed=6, dtype=torch.float32)
    ours = NormMaxPool(ft, 2)(x).tensor
    theirs = enn.NormMaxPool(ft, 2)(x).tensor
    assert torch.equal(ours, theirs)


def test_norm_max_pool_scalars_keep_sign_of_largest_magnitude():
    ft = et.tensor_type(GS[2], [(0, 1, 1), (0, -1, 1)])
    t = torch.tensor([[1.0, -3.0], [2.0, 0.5]], dtype=torch.float64)
    x = enn.GeometricTensor(torch.stack([t, -t])[None], ft)
    assert NormMaxPool(ft)(x).tensor.flatten().tolist() == [-3.0, 3.0]


def test_norm_max_pool_tie_rule_is_first_in_scan_order_and_not_symmetric():
    """The documented rule for exact ties: the first pixel of the patch in escnn's row-major order wins; a group
    element changes that order, so on a tied input the output is not equivariant (why the tests use random inputs)."""
    ft = et.tensor_type(GS[2], [(1, 1, 1)])
    v = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    t[0, :, 0, 0] = v  # first pixel of the patch
    t[0, :, 1, 1] = -v  # last pixel, same norm
    x = enn.GeometricTensor(t, ft)
    layer = NormMaxPool(ft)
    assert layer(x).tensor.flatten().tolist() == v.tolist()
    assert max(equivariance_errors(layer, x).values()) > 0.5


# ------------------------------------------------------------------------------------------------------------------
# shapes and gradients


@pytest.mark.parametrize("d", [2, 3])
def test_output_shapes(d):
    ft = field_type(d)
    x = data(ft, 6, seed=7)
    for layer, out in ((NormMaxPool(ft, 3), 2), (AvgPool(ft, 2), 3), (Upsample(ft, 3), 18), (Upsample(ft, (2,) * d), 12)):
        y = layer(x)
        assert tuple(y.shape) == (2, ft.size) + (out,) * d == layer.evaluate_output_shape(x.shape)
        assert y.type == layer.out_type == ft


def test_gradients():
    ft = field_type(2)
    x = data(ft, 4, seed=8).tensor.requires_grad_(True)
    y = NormMaxPool(ft)(enn.GeometricTensor(x, ft)).tensor
    y.sum().backward()
    # one selected pixel per patch and field: gradient 1 there (on every component of the field), 0 elsewhere
    assert set(x.grad.unique().tolist()) == {0.0, 1.0} and x.grad.sum() == y.numel()
    g = x.grad.view(2, ft.size, 2, 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(2, ft.size, 4, 4).sum(-1)
    assert (g == 1).all()
    for s, D in fields_of(ft):  # all components of a field come from the same pixel
        assert (x.grad[:, s : s + D] == x.grad[:, s : s + 1]).all()
    for layer, value in ((AvgPool(ft), 0.25), (Upsample(ft, 2), 4.0)):
        x.grad = None
        layer(enn.GeometricTensor(x, ft)).tensor.sum().backward()
        assert (x.grad == value).all()


def test_pickle_and_deepcopy():
    ft = field_type(3)
    x = data(ft, 4, seed=9)
    for layer in (NormMaxPool(ft), AvgPool(ft), Upsample(ft, 2)):
        for other in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            assert other.in_type == ft and torch.equal(other(x).tensor, layer(x).tensor)


# ------------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("cls", [NormMaxPool, AvgPool])
def test_kernel_size_must_divide_the_grid(cls):
    ft = field_type(2)
    layer = cls(ft, 4)
    for spatial in (6, 2):
        with pytest.raises(ValueError, match=rf"kernel_size=4 must divide the spatial size .*\({spatial}, {spatial}\)"):
            layer(data(ft, spatial, seed=0))
        with pytest.raises(ValueError, match="kernel_size=4 must divide"):
            layer.evaluate_output_shape((2, ft.size, spatial, spatial))
    ft3 = field_type(3)
    with pytest.raises(ValueError, match=r"kernel_size=2 must divide .*\(4, 4, 3\)"):
        cls(ft3)(enn.GeometricTensor(torch.zeros(1, ft3.size, 4, 4, 3), ft3))


@pytest.mark.parametrize(
    "cls,arg,exc,match",
    [
        (NormMaxPool, 0, ValueError, "kernel_size must be an integer >= 1"),
        (AvgPool, 2.0, TypeError, "kernel_size must be an integer"),
        (NormMaxPool, (2, 3), ValueError, "kernel_size=.2, 3. differs between axes"),
        (Upsample, 1.5, TypeError, "scale_factor must be an integer"),
        (Upsample, 2.0, TypeError, "scale_factor must be an integer"),
        (Upsample, 0, ValueError, "scale_factor must be an integer >= 1"),
        (Upsample, (2, 3), ValueError, "scale_factor=.2, 3. differs between axes"),
    ],
)
def test_bad_sizes(cls, arg, exc, match):
    with pytest.raises(exc, match=match):
        cls(field_type(2), arg)


@pytest.mark.parametrize("cls", [NormMaxPool, AvgPool, Upsample])
def test_bad_field_types(cls):
    gs = GS[2]
    regular = enn.FieldType(gs, [gs.regular_repr])  # accepted: an orthogonal representation (test_layers_any_fields)
    assert cls(regular).in_type is regular
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        cls("vectors")
    layer = cls(field_type(2))
    with pytest.raises(ValueError, match="input has FieldType"):
        layer(data(et.tensor_type(gs, [(1, 1, 2)]), 4, seed=0))
    with pytest.raises(TypeError, match="GeometricTensor"):
        layer(torch.zeros(1, field_type(2).size, 4, 4))
    with pytest.raises(ValueError, match="input_shape must be"):
        layer.evaluate_output_shape((1, 3, 4, 4))
