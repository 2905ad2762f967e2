"""Nonlinearities for tensor fields: PointwiseNonLinearity, GatedNonLinearity, VectorNeuronNonLinearity,
TensorProductNonLinearity.

Equivariance over every group element (float64, 1e-10) in train and eval mode, in 2D and 3D and on subgroups;
each layer's formula against an independent per-field reference; the tensor-product layer's completeness against
the character formula (tests/reference.py) and its non-redundancy by rank; ginjax's vector-neuron layer; state,
gradients, dtypes, copying and bad input.
"""
import copy
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from escnn import nn as enn
from escnn.nn import FieldType, GeometricTensor

import escnn_tensor as et
from escnn_tensor import representations as reps
from escnn_tensor.nn import _tensor_product
from escnn_tensor.nn._field_ops import ACTIVATIONS
from escnn_tensor.nn._gated import GatedNonLinearity
from escnn_tensor.nn._pointwise import PointwiseNonLinearity
from escnn_tensor.nn._tensor_product import TensorProductNonLinearity
from escnn_tensor.nn._vector_neuron import VectorNeuronNonLinearity
from escnn_tensor.testing import assert_equivariant, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D, invariant_count, randomize, symmetric_square_count

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
# interleaved, not sorted: vectors, pseudoscalars, 2-tensor, scalars, pseudovectors, pseudo-2-tensors, a scalar again
SPEC = {
    2: [(1, 1, 2), (0, -1, 2), (2, 1, 1), (0, 1, 2), (1, -1, 2), (2, -1, 2), (0, 1, 1)],
    3: [(1, 1, 2), (0, 1, 1), (1, -1, 2), (2, 1, 2), (3, -1, 2), (0, 1, 1)],
}
SPATIAL = {2: 6, 3: 3}
# smaller 3D type for the tensor-product layer on subgroups (the trivial group's order-9 invariants are too big)
SPEC3_SMALL = [(1, 1, 2), (0, -1, 1), (2, 1, 1), (0, 1, 1), (1, -1, 1)]


def fields(spec):
    return [(k, p) for k, p, m in spec for _ in range(m)]


LAYERS = {
    "pointwise": lambda ft: PointwiseNonLinearity(ft),
    "pointwise_norm_silu": lambda ft: PointwiseNonLinearity(ft, "silu", nonscalars="norm"),
    "gated": lambda ft: randomize(GatedNonLinearity(ft)),
    "vector_neuron": lambda ft: randomize(VectorNeuronNonLinearity(ft)),
    "vector_neuron_leaky": lambda ft: randomize(VectorNeuronNonLinearity(ft, negative_slope=0.2)),
    "tensor_product": lambda ft: randomize(TensorProductNonLinearity(ft, bias=True)),
}
WITH_PARAMETERS = ["gated", "vector_neuron", "vector_neuron_leaky", "tensor_product"]


def make(name, d, spec=None):
    ft = et.tensor_type(GS[d], spec or SPEC[d])
    return LAYERS[name](ft), ft


def inp(ft, seed=0, dtype=torch.float64, spatial=None, batch=2):
    d = ft.gspace.dimensionality
    return random_input(ft, spatial or SPATIAL[d], batch, dtype, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------------------
# equivariance: every element, float64 to 1e-10, train and eval


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(LAYERS))
def test_equivariance_train_and_eval(name, d):
    layer, ft = make(name, d)
    layer = layer.double()
    x = inp(ft, seed=d)
    layer.train()
    assert_equivariant(layer, x)
    layer.eval()
    with torch.no_grad():
        assert_equivariant(layer, x)


SUBGROUPS = [(2, n) for n in SUBGROUP_GSPACES_2D] + [(3, n) for n in SUBGROUP_GSPACES_3D]


@pytest.mark.parametrize("d,sub", SUBGROUPS)
@pytest.mark.parametrize("name", ["pointwise_norm_silu", "gated", "vector_neuron_leaky", "tensor_product"])
def test_equivariance_subgroups(name, d, sub):
    gs = (SUBGROUP_GSPACES_2D if d == 2 else SUBGROUP_GSPACES_3D)[sub]()
    spec = SPEC3_SMALL if (d == 3 and name == "tensor_product") else SPEC[d]
    ft = et.tensor_type(gs, spec)
    layer = LAYERS[name](ft).double()
    x = inp(ft, seed=3)
    assert_equivariant(layer, x)
    layer.eval()
    with torch.no_grad():
        assert_equivariant(layer, x)


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_equivariant_and_close_to_float64(name):
    layer, ft = make(name, 2)  # built in the default dtype, float32
    x = inp(ft, seed=5)
    y64 = copy.deepcopy(layer).double()(x).tensor
    x32 = GeometricTensor(x.tensor.float(), ft)
    assert layer(x32).tensor.dtype == torch.float32
    assert_equivariant(layer, x32)  # 1e-5
    torch.testing.assert_close(layer(x32).tensor.double(), y64, rtol=1e-4, atol=1e-4 * y64.abs().max().item())


@pytest.mark.parametrize("name", ["tensor_product", "gated"])
def test_double_after_float_round_trip_is_exact(name):
    """float64 -> float32 -> float64 gives the float64 bases back bit for bit (re-rounded from float64 originals).

    TensorProductNonLinearity (its bases) and GatedNonLinearity (its mean-square matrix) hold floating buffers; the
    other layers hold parameters only."""
    layer, ft = make(name, 2)
    assert any(b.is_floating_point() for b in layer.buffers())
    for other in ("pointwise", "vector_neuron"):
        assert not any(b.is_floating_point() for b in make(other, 2)[0].buffers())
    layer = layer.double()
    x = inp(ft, seed=6)
    y = layer(x).tensor
    layer.float()
    layer.double()
    y2 = layer(x).tensor
    # the parameters went through float32: compare with a float64 layer holding those rounded parameters
    ref = make(name, 2)[0].double()
    ref.load_state_dict(layer.state_dict())
    assert torch.equal(y2, ref(x).tensor)
    assert_equivariant(layer, x)  # 1e-10: the buffers are exact again
    assert (y2 - y).abs().max() < 1e-5 * y.abs().max()


# ------------------------------------------------------------------------------------------------------------------
# state, gradients, copies, shapes


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dict_round_trip(name):
    layer, ft = make(name, 2)
    layer = layer.double()
    x = inp(ft, seed=7)
    state = layer.state_dict()
    fresh = LAYERS[name](ft).double()
    if name in WITH_PARAMETERS:
        randomize(fresh, seed=99)
        assert not torch.allclose(fresh(x).tensor, layer(x).tensor)
        assert set(state) == {n for n, _ in layer.named_parameters()}  # no buffers in the state
    else:
        assert len(state) == 0
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x).tensor, layer(x).tensor)
    fresh.eval()
    layer.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x).tensor, layer(x).tensor)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(LAYERS))
def test_gradients_reach_every_parameter(name, d):
    if name.startswith("vector_neuron"):
        # a type with one field has W > 0 (identity) or W < 0 (always projected): no gradient by design, so every
        # type gets two fields here; W = [[1, -2], [-2, 1]] makes <x_i, q_i> take both signs on Gaussian inputs
        layer, ft = make(name, d, [(k, p, max(m, 2)) for k, p, m in SPEC[d]])
        assert all(w.shape == (2, 2) for _, w in layer.matrices())
        with torch.no_grad():
            layer.weights.copy_(torch.tensor([1.0, -2.0, -2.0, 1.0]).repeat(layer.weights.numel() // 4))
    else:
        layer, ft = make(name, d)
    layer = layer.double()
    x = inp(ft, seed=8, batch=4)
    t = x.tensor.clone().requires_grad_(True)
    y = layer(GeometricTensor(t, ft)).tensor
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    (y * r).sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().max() > 0
    params = list(layer.named_parameters())
    assert (len(params) > 0) == (name in WITH_PARAMETERS)
    for pname, prm in params:
        assert prm.grad is not None, pname
        assert torch.isfinite(prm.grad).all(), pname
        assert (prm.grad != 0).all(), f"{pname}: {(prm.grad == 0).sum().item()} of {prm.numel()} entries get no gradient"


@pytest.mark.parametrize("name", list(LAYERS))
def test_deepcopy_and_pickle_same_output(name):
    layer, ft = make(name, 2)
    layer = layer.double()
    x = inp(ft, seed=9)
    y = layer(x).tensor
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(other(x).tensor, y)
        assert other.in_type == ft
    assert copy.deepcopy(layer).in_type is layer.in_type  # FieldTypes are shared, not copied


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(LAYERS))
def test_output_type_shape_and_evaluate_output_shape(name, d):
    layer, ft = make(name, d)
    x = inp(ft, dtype=torch.float32)
    y = layer(x)
    assert y.type is layer.out_type and layer.out_type == ft
    assert tuple(y.tensor.shape) == layer.evaluate_output_shape(tuple(x.tensor.shape))
    with pytest.raises(ValueError, match="input_shape"):
        layer.evaluate_output_shape((2, ft.size + 1) + (5,) * d)
    with pytest.raises(ValueError, match="input_shape"):
        layer.evaluate_output_shape((2, ft.size, 5))


@pytest.mark.parametrize("name", list(LAYERS))
def test_is_not_identity_and_not_linear(name):
    layer, ft = make(name, 2)
    layer = layer.double()
    x1, x2 = inp(ft, seed=10).tensor, inp(ft, seed=11).tensor
    y1 = layer(GeometricTensor(x1, ft)).tensor
    y2 = layer(GeometricTensor(x2, ft)).tensor
    y12 = layer(GeometricTensor(x1 + x2, ft)).tensor
    scale = y12.abs().max()
    assert (y1 - x1).abs().max() > 1e-2 * x1.abs().max()
    assert (y12 - y1 - y2).abs().max() > 1e-2 * scale


def test_works_in_escnn_sequential_and_trains():
    ft = et.tensor_type(GS[2], SPEC[2])
    model = enn.SequentialModule(
        et.nn.GeometricConv(ft, ft, 3, padding=1),
        GatedNonLinearity(ft),
        et.nn.GeometricConv(ft, ft, 3, padding=1),
        VectorNeuronNonLinearity(ft),
        TensorProductNonLinearity(ft),
        PointwiseNonLinearity(ft, "elu"),
    ).double()
    x = inp(ft, seed=12, spatial=7)
    assert_equivariant(model, x)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = (model(x).tensor ** 2).mean()
    loss.backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


# ------------------------------------------------------------------------------------------------------------------
# bad input


def test_rejects_non_tensor_fields_and_non_field_types():
    gs = GS[2]
    regular = FieldType(gs, [gs.regular_repr])
    mixed = FieldType(gs, [gs.trivial_repr, gs.regular_repr])
    for cls in (PointwiseNonLinearity, GatedNonLinearity, VectorNeuronNonLinearity, TensorProductNonLinearity):
        for bad in (regular, mixed):
            if cls is TensorProductNonLinearity:
                with pytest.raises(ValueError, match="in_type.*not tensor fields.*escnn.nn.TensorProductModule"):
                    cls(bad)
            else:  # orthogonal representations are accepted (tests/nn/test_layers_any_fields.py)
                assert cls(bad).in_type is bad
        with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
            cls([(1, 1, 2)])
    ft = et.tensor_type(gs, [(1, 1, 1)])
    with pytest.raises(ValueError, match="out_type.*not tensor fields"):
        TensorProductNonLinearity(et.tensor_type(gs, [(0, 1, 2)]), regular)
    with pytest.raises(ValueError, match="same gspace"):
        TensorProductNonLinearity(et.tensor_type(gs, [(0, 1, 2)]), et.tensor_type(SUBGROUP_GSPACES_2D["C4"](), [(0, 1, 1)]))
    with pytest.raises(ValueError, match="no nonzero equivariant quadratic map"):
        TensorProductNonLinearity(ft)  # vector x vector -> vector: odd order, killed by -I in D4


@pytest.mark.parametrize("name", list(LAYERS))
def test_rejects_bad_forward_input(name):
    layer, ft = make(name, 2)
    other = et.tensor_type(GS[2], [(1, 1, 2), (0, -1, 2)])
    with pytest.raises(ValueError, match="in_type"):
        layer(GeometricTensor(torch.randn(2, other.size, 5, 5), other))
    with pytest.raises(TypeError, match="GeometricTensor"):
        layer(torch.randn(2, ft.size, 5, 5))
    x = GeometricTensor(torch.randn(2, ft.size, 5, 5), ft)
    x.tensor = torch.randn(2, ft.size, 5, 5, 5)  # a GeometricTensor whose tensor was replaced by one of wrong rank
    with pytest.raises(ValueError, match="shape"):
        layer(x)
    x64 = GeometricTensor(torch.randn(2, ft.size, 5, 5, dtype=torch.float64), ft)
    if name in WITH_PARAMETERS:  # a float32 layer and a float64 input
        with pytest.raises(TypeError, match="dtype"):
            layer(x64)
    else:  # no parameters: any floating dtype
        assert layer(x64).tensor.dtype == torch.float64


def test_rejects_bad_arguments():
    ft = et.tensor_type(GS[2], SPEC[2])
    cases = [
        (lambda: PointwiseNonLinearity(ft, "relux"), ValueError, "function must be one of"),
        (lambda: PointwiseNonLinearity(ft, 3), TypeError, "function"),
        (lambda: PointwiseNonLinearity(ft, lambda t: t.sum()), TypeError, "same shape"),
        (lambda: PointwiseNonLinearity(ft, threshold=-1.0), ValueError, "threshold"),
        (lambda: PointwiseNonLinearity(ft, threshold="1"), TypeError, "threshold"),
        (lambda: PointwiseNonLinearity(ft, nonscalars="gate"), ValueError, "nonscalars"),
        (lambda: PointwiseNonLinearity(ft, eps=0.0), ValueError, "eps"),
        (lambda: GatedNonLinearity(ft, "swish"), ValueError, "function must be one of"),
        (lambda: GatedNonLinearity(ft, bias=1), TypeError, "bias"),
        (lambda: VectorNeuronNonLinearity(ft, negative_slope=1.0), ValueError, "negative_slope"),
        (lambda: VectorNeuronNonLinearity(ft, negative_slope=None), TypeError, "negative_slope"),
        (lambda: VectorNeuronNonLinearity(ft, eps=-1e-8), ValueError, "eps"),
        (lambda: TensorProductNonLinearity(ft, bias="yes"), TypeError, "bias"),
        (lambda: TensorProductNonLinearity(ft, ft, initialize=None), TypeError, "initialize"),
    ]
    for make_layer, exc, match in cases:
        with pytest.raises(exc, match=match):
            make_layer()


# ------------------------------------------------------------------------------------------------------------------
# PointwiseNonLinearity: the formula, per field, against a direct computation


def pointwise_reference(x, spec, d, f, b, nonscalars):
    out = x.clone()
    c = 0
    fb = f(torch.tensor(-b, dtype=torch.float64))
    for k, p in fields(spec):
        D = d**k
        blk = x[:, c : c + D]
        if k == 0 and p == 1:
            out[:, c : c + D] = f(blk)
        elif k == 0:
            out[:, c : c + D] = torch.sign(blk) * (f(blk.abs() - b) - fb)
        elif nonscalars == "norm":
            n = torch.sqrt((blk**2).sum(1, keepdim=True))
            out[:, c : c + D] = blk * (f(n - b) - fb) / n
        c += D
    return out


@pytest.mark.parametrize("function", ["relu", "silu", "tanh", "softplus", torch.atan])
@pytest.mark.parametrize("nonscalars", ["unchanged", "norm"])
@pytest.mark.parametrize("d", [2, 3])
def test_pointwise_formula(function, nonscalars, d):
    ft = et.tensor_type(GS[d], SPEC[d])
    layer = PointwiseNonLinearity(ft, function, threshold=0.3, nonscalars=nonscalars)
    x = inp(ft, seed=13).tensor
    f = ACTIVATIONS[function] if isinstance(function, str) else function
    expected = pointwise_reference(x, SPEC[d], d, f, 0.3, nonscalars)
    torch.testing.assert_close(layer(GeometricTensor(x, ft)).tensor, expected, rtol=1e-12, atol=1e-12)
    if nonscalars == "unchanged":  # tensors pass through untouched, scalars do not
        c, changed = 0, []
        for k, p in fields(SPEC[d]):
            D = d**k
            same = torch.equal(layer(GeometricTensor(x, ft)).tensor[:, c : c + D], x[:, c : c + D])
            changed.append((k, not same))
            c += D
        assert all(ch == (k == 0) for k, ch in changed)


@pytest.mark.parametrize("function", sorted(ACTIVATIONS))
def test_pointwise_pseudoscalar_map_is_odd_continuous_and_nonlinear(function):
    ft = et.tensor_type(GS[2], [(0, -1, 1)])
    layer = PointwiseNonLinearity(ft, function).double()
    t = torch.linspace(-3, 3, 601, dtype=torch.float64).view(1, 1, 1, -1)

    def g(v):
        return layer(GeometricTensor(v, ft)).tensor

    assert torch.equal(g(-t), -g(t))
    tiny = torch.tensor([1e-9, -1e-9], dtype=torch.float64).view(1, 1, 1, -1)
    assert g(tiny).abs().max() < 1e-7
    assert (g(2 * t) - 2 * g(t)).abs().max() > 1e-2  # not linear (for relu too: soft threshold)


def test_pointwise_3d_scalars_where_escnn_refuses():
    ft = et.tensor_type(GS[3], [(0, 1, 3)])
    with pytest.raises(AssertionError, match="pointwise"):
        enn.PointwiseNonLinearity(ft, "p_relu")
    layer = PointwiseNonLinearity(ft, "relu")
    x = inp(ft, seed=14)
    assert torch.equal(layer(x).tensor, F.relu(x.tensor))


# ------------------------------------------------------------------------------------------------------------------
# GatedNonLinearity


def gated_reference(layer, x, spec, d):
    """Invariants and gates computed field by field, in the documented order (true scalars first, then the other
    types in order of first appearance, channel order within a type)."""
    starts, c = [], 0
    for k, p in fields(spec):
        starts.append((k, p, c))
        c += d**k
    scal = [s for s in starts if s[:2] == (0, 1)]
    types = []
    for k, p, _ in starts:
        if (k, p) != (0, 1) and (k, p) not in types:
            types.append((k, p))
    others = [s for t in types for s in starts if s[:2] == t]
    inv = [x[:, c] for _, _, c in scal]
    inv += [torch.sqrt((x[:, c : c + d**k] ** 2).sum(1)) / np.sqrt(d**k) for k, _, c in others]
    inv = torch.stack(inv, 1)
    pre = torch.einsum("gf,bf...->bg...", layer.gate_weight, inv) + layer.gate_bias.view(-1, *([1] * d))
    gates = torch.sigmoid(pre)
    out = x.clone()
    for _, _, c in scal:
        out[:, c] = layer.function(x[:, c])
    for i, (k, _, c) in enumerate(others):
        out[:, c : c + d**k] = x[:, c : c + d**k] * gates[:, i : i + 1]
    return out


@pytest.mark.parametrize("d", [2, 3])
def test_gated_formula(d):
    ft = et.tensor_type(GS[d], SPEC[d])
    layer = randomize(GatedNonLinearity(ft, "gelu")).double()
    n_fields = len(fields(SPEC[d]))
    n_scalars = sum(m for k, p, m in SPEC[d] if (k, p) == (0, 1))
    assert layer.gate_weight.shape == (n_fields - n_scalars, n_fields)
    x = inp(ft, seed=15).tensor
    with torch.no_grad():
        torch.testing.assert_close(layer(GeometricTensor(x, ft)).tensor, gated_reference(layer, x, SPEC[d], d),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_gated_initial_operating_point(d):
    """At initialisation the gates are neither shut nor open: pre-activations of order 1, mean gate near 1/2."""
    ft = et.tensor_type(GS[d], SPEC[d])
    pre_std, gate_mean = [], []
    for seed in range(8):
        layer = GatedNonLinearity(ft).double()
        layer.reset_parameters(torch.Generator().manual_seed(seed))
        assert torch.equal(layer.gate_bias, torch.zeros_like(layer.gate_bias))
        x = inp(ft, seed=seed, batch=8).tensor
        y = layer(GeometricTensor(x, ft)).tensor
        # a gate is the ratio of output to input on a non-scalar field; read it off the first component
        c, gates = 0, []
        for k, p in fields(SPEC[d]):
            if (k, p) != (0, 1):
                gates.append(y[:, c] / x[:, c])
            c += d**k
        g = torch.stack(gates)
        gate_mean.append(g.mean().item())
        pre_std.append(torch.logit(g).std().item())
    assert 0.3 < np.mean(gate_mean) < 0.7
    assert 0.4 < np.mean(pre_std) < 2.0


def test_gated_only_scalars_has_no_parameters():
    ft = et.tensor_type(GS[3], [(0, 1, 3)])
    layer = GatedNonLinearity(ft)
    assert len(list(layer.parameters())) == 0
    x = inp(ft, seed=16, dtype=torch.float32)
    assert torch.equal(layer(x).tensor, F.silu(x.tensor))


# ------------------------------------------------------------------------------------------------------------------
# VectorNeuronNonLinearity


def vn_reference(layer, x, spec, d):
    """Field by field: q_i = sum_j W_ij x_j over the fields of the same type, then the documented rule."""
    a, eps = layer.negative_slope, layer.eps
    starts, c = [], 0
    for k, p in fields(spec):
        starts.append((k, p, c))
        c += d**k
    W = {t: w.detach() for t, w in layer.matrices()}
    out = x.clone()
    for (k, p), w in W.items():
        same = [c for kk, pp, c in starts if (kk, pp) == (k, p)]
        D = d**k
        xs = [x[:, c : c + D] for c in same]
        for i, c in enumerate(same):
            q = sum(w[i, j] * xs[j] for j in range(len(same)))
            ip = (xs[i] * q).sum(1, keepdim=True)
            qq = (q * q).sum(1, keepdim=True)
            out[:, c : c + D] = torch.where(ip >= 0, xs[i], xs[i] - (1 - a) * ip / (qq + eps) * q)
    for k, p, c in starts:
        if (k, p) == (0, 1):
            out[:, c] = torch.where(x[:, c] >= 0, x[:, c], a * x[:, c])
    return out


@pytest.mark.parametrize("slope", [0.0, 0.3])
@pytest.mark.parametrize("d", [2, 3])
def test_vector_neuron_formula(slope, d):
    ft = et.tensor_type(GS[d], SPEC[d])
    layer = VectorNeuronNonLinearity(ft, negative_slope=slope).double()
    types = {(k, p) for k, p, _ in SPEC[d] if (k, p) != (0, 1)}
    assert {t for t, _ in layer.matrices()} == types
    for t, w in layer.matrices():  # ginjax's initialisation
        m = sum(mm for k, p, mm in SPEC[d] if (k, p) == t)
        assert w.shape == (m, m) and w.abs().max() <= 1 / np.sqrt(m)
    x = inp(ft, seed=17).tensor
    with torch.no_grad():
        torch.testing.assert_close(layer(GeometricTensor(x, ft)).tensor, vn_reference(layer, x, SPEC[d], d),
                                   rtol=1e-12, atol=1e-12)


def test_vector_neuron_relu_keeps_or_projects():
    """negative_slope=0: each field either stays (where <x, q> >= 0) or loses exactly its component along q."""
    d = 3
    spec = [(2, 1, 3), (1, -1, 2)]
    ft = et.tensor_type(GS[d], spec)
    layer = VectorNeuronNonLinearity(ft, eps=1e-30).double()
    x = inp(ft, seed=18).tensor
    y = layer(GeometricTensor(x, ft)).tensor
    c = 0
    W = dict(layer.matrices())
    kept = projected = 0
    for (k, p), m in [((2, 1), 3), ((1, -1), 2)]:
        D = d**k
        xs = x[:, c : c + m * D].reshape(x.shape[0], m, D, -1)
        ys = y[:, c : c + m * D].reshape(x.shape[0], m, D, -1)
        q = torch.einsum("ij,bjDs->biDs", W[(k, p)].detach(), xs)
        neg = (xs * q).sum(2) < 0
        assert torch.equal(ys.permute(0, 1, 3, 2)[~neg], xs.permute(0, 1, 3, 2)[~neg])
        assert (ys * q).sum(2)[neg].abs().max() < 1e-12 * (xs * xs).sum(2).max()
        kept, projected = kept + (~neg).sum().item(), projected + neg.sum().item()
        c += m * D
    assert kept > 0 and projected > 0


def test_vector_neuron_zero_direction_is_exact_and_finite():
    """q = 0 (a zero W) leaves the fields unchanged; gradients stay finite; still equivariant."""
    ft = et.tensor_type(GS[2], SPEC[2])
    layer = VectorNeuronNonLinearity(ft).double()
    with torch.no_grad():
        layer.weights.zero_()
    x = inp(ft, seed=19)
    t = x.tensor.clone().requires_grad_(True)
    y = layer(GeometricTensor(t, ft)).tensor
    nonscalar = torch.ones(ft.size, dtype=torch.bool)
    c = 0
    for k, p in fields(SPEC[2]):
        if (k, p) == (0, 1):
            nonscalar[c] = False
        c += 2**k
    assert torch.equal(y[:, nonscalar], x.tensor[:, nonscalar])
    y.sum().backward()
    assert torch.isfinite(t.grad).all() and torch.isfinite(layer.weights.grad).all()
    assert_equivariant(layer, x)


def _ginjax_python():
    env = os.environ.get("ESCNN_TENSOR_GINJAX_PYTHON")
    if env and Path(env).exists():
        return env
    fallback = Path(__file__).resolve().parents[2] / ".venv-ginjax" / "bin" / "python"
    return str(fallback) if fallback.exists() else None


VN_GINJAX_SPEC = {
    2: [(0, 1, 2), (0, -1, 3), (1, 1, 2), (1, -1, 3), (2, 1, 2), (2, -1, 2)],
    3: [(0, 1, 2), (0, -1, 2), (1, 1, 3), (1, -1, 2), (2, 1, 2), (3, -1, 2)],
}


def _vn_case(d):
    """Our layer on a random input, and the same weights and input as a ginjax bridge case (parities 0/1, each
    type block as (channels, spatial, tensor)). Returns (case, arrays, our output, input), flattened in key order."""
    spec = VN_GINJAX_SPEC[d]
    ft = et.tensor_type(GS[d], spec)
    layer = VectorNeuronNonLinearity(ft, eps=1e-300).double()
    N = 4
    x = torch.randn((1, ft.size) + (N,) * d, generator=torch.Generator().manual_seed(20 + d), dtype=torch.float64)
    y = layer(GeometricTensor(x, ft)).tensor.detach()
    W = dict(layer.matrices())
    cid = f"vn{d}"
    arrays, keys, ours, inputs, c = {}, [], [], [], 0
    for i, (k, p, m) in enumerate(spec):
        D = d**k

        def ginjax_layout(t):  # channel, tensor, spatial -> channel, spatial, tensor (any fixed pixel order will do)
            blk = t[0, c : c + m * D].reshape((m,) + (d,) * k + (N,) * d).numpy()
            return np.moveaxis(blk, list(range(1, 1 + k)), list(range(1 + d, 1 + d + k)))

        arrays[f"{cid}/x/{i}"] = ginjax_layout(x)
        inputs.append(arrays[f"{cid}/x/{i}"].reshape(-1))
        ours.append(ginjax_layout(y).reshape(-1))
        if (k, p) != (0, 1):
            arrays[f"{cid}/W/{i}"] = W[(k, p)].detach().numpy()
        keys.append([k, 0 if p == 1 else 1, m])
        c += m * D
    case = dict(id=cid, op="vector_neuron", D=d, keys=keys, eps=1e-300)
    return case, arrays, np.concatenate(ours), np.concatenate(inputs)


@pytest.fixture(scope="module")
def ginjax_vn(tmp_path_factory):
    """Run ginjax (tests/ginjax_bridge.py in its own environment) once on the 2D and the 3D case."""
    py = _ginjax_python()
    if py is None:
        pytest.skip("no ginjax environment (.venv-ginjax or ESCNN_TENSOR_GINJAX_PYTHON)")
    cases = {d: _vn_case(d) for d in (2, 3)}
    arrays = {name: a for c in cases.values() for name, a in c[1].items()}
    tmp = tmp_path_factory.mktemp("ginjax_vn")
    src, dst = tmp / "in.npz", tmp / "out.npz"
    np.savez(src, spec=np.asarray(json.dumps([c[0] for c in cases.values()])), **arrays)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("ESCNN_TENSOR_JAX_CACHE", str(Path.home() / ".cache" / "escnn_tensor" / "jax"))
    bridge = Path(__file__).resolve().parents[1] / "ginjax_bridge.py"
    proc = subprocess.run([py, str(bridge), str(src), str(dst)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(dst) as f:
        return {d: (f[c[0]["id"]], c[2], c[3]) for d, c in cases.items()}


@pytest.mark.parametrize("d", [2, 3])
def test_vector_neuron_agrees_with_ginjax(ginjax_vn, d):
    """ginjax's VectorNeuronNonlinear (default ReLU) with our weights gives our output (negative_slope=0).

    Both at eps ~ 0, where the two placements of eps agree: ginjax's q/(|q| + eps) and relu(t)/(|t| + eps),
    ours eps added to |q|^2."""
    theirs, ours, inputs = ginjax_vn[d]
    assert ours.shape == theirs.shape
    # the layer does something here (some fields are projected): not two identities being compared
    assert np.abs(ours - inputs).max() > 1e-2
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9 * np.abs(theirs).max())


# ------------------------------------------------------------------------------------------------------------------
# TensorProductNonLinearity: completeness (character formula), non-redundancy (rank), quadratic, init, limits


def expected_weight_count(gs, spec_in, spec_out):
    """dim of the equivariant quadratic maps, from the character formulas of tests/reference.py."""
    mult_in, mult_out = {}, {}
    for k, p, m in spec_in:
        mult_in[(k, p)] = mult_in.get((k, p), 0) + m
    for k, p, m in spec_out:
        mult_out[(k, p)] = mult_out.get((k, p), 0) + m
    types = list(mult_in)
    total = 0
    for (ko, po), mo in mult_out.items():
        for i, (ka, pa) in enumerate(types):
            ma = mult_in[(ka, pa)]
            for kb, pb in types[i + 1 :]:
                total += mo * ma * mult_in[(kb, pb)] * invariant_count(gs, 1, ko + ka + kb, po * pa * pb)
            total += mo * ma * (ma - 1) // 2 * invariant_count(gs, 1, ko + 2 * ka, po)
            total += mo * ma * symmetric_square_count(gs, ka, pa, ko, po)
    return total


COUNT_CASES = [
    (2, "full", SPEC[2], None),
    (2, "full", [(1, 1, 3), (0, -1, 1)], [(2, -1, 2), (0, 1, 1)]),
    (2, "full", [(2, 1, 2), (1, -1, 1)], [(0, -1, 1), (1, 1, 1)]),
    (2, "C4", SPEC[2], None),
    (2, "flip_diag", [(1, 1, 2), (2, -1, 1)], [(1, -1, 1), (0, 1, 2)]),
    (2, "trivial2", [(1, 1, 2), (0, -1, 1)], None),
    (3, "full", SPEC[3], None),
    (3, "full", [(1, 1, 2), (2, 1, 2)], [(3, -1, 1), (0, -1, 1), (2, 1, 1)]),
    (3, "O", SPEC3_SMALL, None),
    (3, "D4h", [(1, -1, 2), (2, 1, 1)], [(1, -1, 1), (0, 1, 1), (2, 1, 1)]),
    (3, "inversion", [(1, 1, 2), (0, -1, 1)], [(0, 1, 1), (1, -1, 1), (2, 1, 1), (3, -1, 1)]),
]


@pytest.mark.parametrize("d,group,spec_in,spec_out", COUNT_CASES)
def test_tensor_product_weight_count_is_character_formula(d, group, spec_in, spec_out):
    gs = GS[d] if group == "full" else (SUBGROUP_GSPACES_2D if d == 2 else SUBGROUP_GSPACES_3D)[group]()
    fin = et.tensor_type(gs, spec_in)
    fout = et.tensor_type(gs, spec_out) if spec_out else None
    layer = TensorProductNonLinearity(fin, fout)
    expected = expected_weight_count(gs, spec_in, spec_out or spec_in)
    assert expected > 0
    assert layer.weights.numel() == expected
    if fout is not None:
        layer = randomize(layer).double()
        assert_equivariant(layer, inp(fin, seed=21))


def quadratic_coefficients(layer, ft):
    """The coefficient of every monomial x_c x_c' (c <= c') in every output channel, read off the outputs by
    polarisation: Q(e_c) and Q(e_c + e_c') - Q(e_c) - Q(e_c') on 1-pixel inputs. Returns (C_out, C(C+1)/2)."""
    C, d = ft.size, ft.gspace.dimensionality
    eye = torch.eye(C, dtype=torch.float64)
    iu, ju = np.triu_indices(C, 1)
    batch = torch.cat([eye, eye[iu] + eye[ju]]).view((-1, C) + (1,) * d)
    y = layer(GeometricTensor(batch, ft)).tensor.reshape(len(batch), -1)
    diag, cross = y[:C], y[C:] - y[iu] - y[ju]
    return torch.cat([diag, cross]).T


def quadratic_map_rank(layer, ft):
    """The rank of weights -> monomial coefficients of a tensor-product layer on ``ft`` (one weight set to 1 at a
    time; the layer's weights are left at the last one)."""
    rows = []
    with torch.no_grad():
        for w in range(layer.weights.numel()):
            layer.weights.zero_()
            layer.weights[w] = 1.0
            rows.append(quadratic_coefficients(layer, ft).reshape(-1))
    return torch.linalg.matrix_rank(torch.stack(rows)).item()


@pytest.mark.parametrize("d,spec", [(2, [(1, 1, 2), (0, -1, 1), (2, 1, 1), (0, 1, 1), (1, -1, 1), (2, -1, 1)]),
                                    (3, [(1, 1, 2), (0, -1, 1), (2, 1, 1)])])
def test_tensor_product_maps_are_linearly_independent(d, spec):
    """weights -> quadratic map is injective: its rank (on the monomial coefficients) is the number of weights.
    With the count test and equivariance, the layer spans exactly the equivariant quadratic maps."""
    ft = et.tensor_type(GS[d], spec)
    layer = TensorProductNonLinearity(ft, initialize=False).double()
    assert quadratic_map_rank(layer, ft) == layer.weights.numel()
    # and every coefficient the random layer uses is one an equivariant map may have: equivariance of a random one
    randomize(layer)
    assert_equivariant(layer, inp(ft, seed=22))


def test_tensor_product_is_homogeneous_quadratic_and_bias_is_invariant():
    ft = et.tensor_type(GS[2], SPEC[2])
    layer = randomize(TensorProductNonLinearity(ft)).double()
    x = inp(ft, seed=23).tensor
    y = layer(GeometricTensor(x, ft)).tensor
    torch.testing.assert_close(layer(GeometricTensor(-2.5 * x, ft)).tensor, 6.25 * y, rtol=1e-12, atol=1e-12)
    with_bias = randomize(TensorProductNonLinearity(ft, bias=True)).double()
    b = with_bias(GeometricTensor(torch.zeros(1, ft.size, 1, 1, dtype=torch.float64), ft)).tensor
    assert b.abs().max() > 0
    # the bias is a constant invariant field: nonzero only on true scalars, true 2-tensors (a delta_ij) and
    # pseudo-2-tensors (an epsilon_ij) in 2D
    c = 0
    for k, p in fields(SPEC[2]):
        blk = b[0, c : c + 2**k, 0, 0]
        if (k, p) == (2, 1):
            assert blk[1] == 0 and blk[2] == 0 and blk[0] == blk[3] != 0
        elif (k, p) == (2, -1):
            assert blk[0] == 0 and blk[3] == 0 and blk[1] == -blk[2] != 0
        elif (k, p) != (0, 1):
            assert torch.equal(blk, torch.zeros_like(blk))
        c += 2**k


@pytest.mark.parametrize("d", [2, 3])
def test_tensor_product_init_output_mean_square_is_input_variance_squared(d):
    spec = SPEC[2] if d == 2 else SPEC3_SMALL
    ft = et.tensor_type(GS[d], spec)
    v = 2.0
    ratios = []
    for seed in range(12):
        layer = TensorProductNonLinearity(ft).double()
        layer.reset_parameters(generator=torch.Generator().manual_seed(seed))
        x = torch.randn((16, ft.size) + (4,) * d, generator=torch.Generator().manual_seed(100 + seed),
                        dtype=torch.float64) * np.sqrt(v)
        ratios.append((layer(GeometricTensor(x, ft)).tensor ** 2).mean().item() / v**2)
    assert 0.75 < np.mean(ratios) < 1.33, ratios


def test_tensor_product_eval_cache_and_chunking(monkeypatch):
    ft = et.tensor_type(GS[2], SPEC[2])
    layer = randomize(TensorProductNonLinearity(ft, bias=True)).double()
    x = inp(ft, seed=24)
    y = layer(x).tensor
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x).tensor, y, rtol=1e-13, atol=1e-13)
        layer.weights.data.mul_(2.0)  # changed in place through .data in eval mode: the cache must follow
        layer.bias.zero_()
        y_eval = layer(x).tensor
    layer.train()
    torch.testing.assert_close(layer(x).tensor, y_eval, rtol=1e-13, atol=1e-13)
    assert not torch.allclose(y_eval, y)
    monkeypatch.setattr(_tensor_product, "_CHUNK_BYTES", 1)  # 64 pixels at a time: several chunks
    torch.testing.assert_close(layer(x).tensor, y_eval, rtol=1e-13, atol=1e-13)


def test_tensor_product_refuses_above_memory_limit(monkeypatch):
    # the trivial 3D group with pseudo-3-tensors: 19683 invariant tensors of order 9, 2.9 GiB dense
    ft = et.tensor_type(SUBGROUP_GSPACES_3D["trivial3"](), [(3, -1, 1)])
    with pytest.raises(ValueError, match=r"TensorProductNonLinearity.*GiB.*order 9.*MEMORY_LIMIT_BYTES"):
        TensorProductNonLinearity(ft)
    monkeypatch.setattr(reps, "MEMORY_LIMIT_BYTES", 10_000)
    with pytest.raises(ValueError, match=r"entries.*limit"):
        TensorProductNonLinearity(et.tensor_type(GS[2], SPEC[2]))
