"""_batch_norm.py / _layer_norm.py: TensorBatchNorm and TensorLayerNorm — equivariance over every element (train and
eval), invariant running statistics, outputs against a from-the-definition computation (Reynolds projector of the
reference rho), against torch.nn.BatchNorm for scalars, the normalised statistics, the shift's invariant subspace
against the character formula, state_dict, gradients, dtypes and bad input."""
import copy
import pickle

import numpy as np
import pytest
import torch
from escnn import nn as enn

import escnn_tensor as et
from escnn_tensor.nn._batch_norm import TensorBatchNorm
from escnn_tensor.nn._layer_norm import TensorLayerNorm
from escnn_tensor.testing import assert_equivariant, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D, invariant_count, randomize, rho

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
# interleaved, with repeated types apart from each other
SPEC = {
    2: [(0, 1, 1), (1, 1, 1), (2, -1, 1), (0, -1, 1), (1, -1, 1), (2, 1, 1), (0, 1, 1), (1, 1, 1)],
    3: [(1, 1, 1), (0, 1, 1), (2, 1, 1), (3, -1, 1), (1, -1, 1), (0, 1, 1)],
}
SPATIAL = {2: 6, 3: 4}
SUBGROUPS = [(2, "C4"), (2, "flip_diag"), (3, "D4h")]


def field_type(d, gs=None):
    return et.tensor_type(GS[d] if gs is None else gs, SPEC[d])


def subgroup(d, name):
    return (SUBGROUP_GSPACES_2D if d == 2 else SUBGROUP_GSPACES_3D)[name]()


def data(ft, seed, batch=3, spatial=None, offset=0.7):
    """Gaussian input plus a constant offset on every channel (so that non-invariant components have a nonzero
    batch mean too, which must NOT be removed)."""
    d = ft.gspace.dimensionality
    x = random_input(ft, spatial or SPATIAL[d], batch, torch.float64, torch.Generator().manual_seed(seed))
    return type(x)(x.tensor * 1.5 + offset, ft)


def train_batches(layer, ft, n=3, seed=10):
    layer.train()
    with torch.no_grad():
        for i in range(n):
            layer(data(ft, seed + i, offset=0.3 * i))
    return layer


# ------------------------------------------------------------------------------------------------------------------
# the reference: Reynolds projector onto the invariant subspace, from the reference rho


def projector(gs, k, p):
    mats = et.group_matrices(gs)
    return sum(rho(m, k, p) for m in mats) / len(mats)


def fields_of(ft):
    """(k, p, start, D) per field, from the spec the test built the FieldType with."""
    d = ft.gspace.dimensionality
    out, start = [], 0
    for k, p in et.field_signature(ft):
        out.append((k, p, start, d**k))
        start += d**k
    return out


def reference_batch_stats(x, ft):
    """Per field (mu (D,), var, tr P): mu = P mean over (batch, pixels); var = mean |x - mu|^2 / D."""
    x = x.detach().numpy()
    res = []
    for k, p, s, D in fields_of(ft):
        xf = np.moveaxis(x[:, s : s + D], 1, -1).reshape(-1, D)
        P = projector(ft.gspace, k, p)
        mu = P @ xf.mean(0)
        res.append((mu, ((xf - mu) ** 2).sum(1).mean() / D, np.trace(P)))
    return res


def reference_normalise(x, ft, stats, weight, eps):
    x = x.detach().numpy().copy()
    y = np.empty_like(x)
    for f, ((k, p, s, D), (mu, var, _)) in enumerate(zip(fields_of(ft), stats)):
        shape = (1, D) + (1,) * (x.ndim - 2)
        y[:, s : s + D] = weight[f] * (x[:, s : s + D] - mu.reshape(shape)) / np.sqrt(var + eps)
    return y


# ------------------------------------------------------------------------------------------------------------------
# equivariance over every group element, train and eval


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_equivariant_train_and_eval(d, affine):
    ft = field_type(d)
    layer = randomize(TensorBatchNorm(ft, affine=affine)).double()  # built in float32, then .double()
    train_batches(layer, ft)
    x = data(ft, 0)
    assert_equivariant(layer, x)  # train: batch statistics (and running-stat updates on the way)
    layer.eval()
    assert layer.running_mean.abs().max() > 0.05 and (layer.running_var - 1).abs().max() > 0.05
    assert_equivariant(layer, x)  # eval: running statistics


@pytest.mark.parametrize("d", [2, 3])
def test_batch_norm_equivariant_without_running_stats_and_cumulative(d):
    ft = field_type(d)
    x = data(ft, 1)
    layer = randomize(TensorBatchNorm(ft, track_running_stats=False)).double().eval()
    assert layer.running_mean is None and layer.running_var is None
    assert_equivariant(layer, x)  # eval with batch statistics
    layer = randomize(TensorBatchNorm(ft, momentum=None)).double()
    assert_equivariant(train_batches(layer, ft).eval(), x)


@pytest.mark.parametrize("d", [2, 3])
def test_layer_norm_equivariant_train_and_eval(d):
    ft = field_type(d)
    x = data(ft, 2)
    for affine in (True, False):
        layer = randomize(TensorLayerNorm(ft, affine=affine)).double()
        assert_equivariant(layer, x)
        layer.eval()
        assert_equivariant(layer, x)


@pytest.mark.parametrize("d,name", SUBGROUPS)
def test_subgroup_gspaces(d, name):
    gs = subgroup(d, name)
    ft = field_type(d, gs)
    x = data(ft, 3)
    bn = train_batches(randomize(TensorBatchNorm(ft)).double(), ft)
    assert_equivariant(bn, x)
    assert_equivariant(bn.eval(), x)
    assert_equivariant(randomize(TensorLayerNorm(ft)).double(), x)


def test_float32():
    ft = field_type(2)
    x = data(ft, 4)
    x32 = type(x)(x.tensor.float(), ft)
    bn = train_batches(randomize(TensorBatchNorm(ft)).double(), ft).float()
    ln = randomize(TensorLayerNorm(ft))
    for layer in (bn, ln):
        y = layer(x32).tensor
        assert y.dtype == torch.float32
        assert_equivariant(layer, x32)  # rtol 1e-5 for float32
    bn.eval()
    assert_equivariant(bn, x32)
    # float32 -> float64 round trip keeps the exact float64 bases
    ln.float().double()
    assert_equivariant(ln, x)


# ------------------------------------------------------------------------------------------------------------------
# statistics


@pytest.mark.parametrize("d,name", [(2, None), (3, None), (2, "C4"), (3, "D4h")])
def test_shift_spans_exactly_the_invariant_subspace(d, name):
    """bias / running_mean hold one coefficient per invariant direction (count by the character formula); the shift
    they produce is an invariant vector of the field, of norm |coefficients| (orthonormal basis), and the shifts of
    the unit coefficients span the whole invariant subspace."""
    gs = GS[d] if name is None else subgroup(d, name)
    ft = field_type(d, gs)
    expected = sum(invariant_count(gs, 1, k, p) for k, p in et.field_signature(ft))
    for layer in (TensorBatchNorm(ft).double(), TensorLayerNorm(ft).double()):
        assert layer.bias.numel() == expected
        if isinstance(layer, TensorBatchNorm):
            assert layer.running_mean.numel() == expected and layer.running_var.numel() == len(SPEC[d])
        x = data(ft, 5)
        with torch.no_grad():
            base = layer(x).tensor
            shifts = []
            for j in range(expected):
                layer.bias.zero_()
                layer.bias[j] = 1.0
                shifts.append((layer(x).tensor - base)[0, :, 0, 0] if d == 2 else (layer(x).tensor - base)[0, :, 0, 0, 0])
            layer.bias.zero_()
        shifts = torch.stack(shifts).numpy()  # (n, C)
        for k, p, s, D in fields_of(ft):
            block = shifts[:, s : s + D]
            P = projector(gs, k, p)
            np.testing.assert_allclose(block @ P.T, block, atol=1e-12)  # invariant
            assert np.linalg.matrix_rank(block, tol=1e-9) == invariant_count(gs, 1, k, p)  # spans V_f
        np.testing.assert_allclose(shifts @ shifts.T, np.eye(expected), atol=1e-12)  # orthonormal coefficients


@pytest.mark.parametrize("d", [2, 3])
def test_batch_norm_running_stats_invariant(d):
    ft = field_type(d)
    x = data(ft, 6)
    stats = []
    for g in et.group_elements(ft.gspace):
        layer = TensorBatchNorm(ft).double()
        layer(x.transform(g))
        stats.append(torch.cat([layer.running_mean, layer.running_var]))
    stats = torch.stack(stats)
    assert stats.shape[0] == (8 if d == 2 else 48)
    assert stats[0].abs().max() > 0.1
    assert (stats - stats[0]).abs().max() <= 1e-10 * stats[0].abs().max()


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("momentum", [0.3, None])
def test_batch_norm_against_definition_train_and_eval(d, momentum):
    """Train output from the batch statistics, running statistics, and eval output from the running statistics,
    all recomputed from the definitions (Reynolds projector, |x - mu|^2 / D, torch's momentum rule, running variance
    corrected by n D / (n D - dim V_f))."""
    ft = field_type(d)
    eps = 1e-3
    layer = TensorBatchNorm(ft, eps=eps, momentum=momentum).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, dtype=torch.float64) + 0.5)
    w = layer.weight.detach().numpy()
    run_mu = [np.zeros(D) for *_, D in fields_of(ft)]
    run_var = [1.0 for _ in fields_of(ft)]
    for step in range(3):
        x = data(ft, 20 + step, offset=0.5 + step)
        n = x.tensor.numel() // x.tensor.shape[1]
        stats = reference_batch_stats(x.tensor, ft)
        y = layer(x).tensor.detach().numpy()
        np.testing.assert_allclose(y, reference_normalise(x.tensor, ft, stats, w, eps), rtol=0, atol=1e-12)
        factor = momentum if momentum is not None else 1.0 / (step + 1)
        for f, ((mu, var, m), (*_, D)) in enumerate(zip(stats, fields_of(ft))):
            run_mu[f] = (1 - factor) * run_mu[f] + factor * mu
            run_var[f] = (1 - factor) * run_var[f] + factor * var * n * D / (n * D - m)
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    x = data(ft, 30)
    ref = reference_normalise(x.tensor, ft, list(zip(run_mu, run_var, [0] * len(run_var))), w, eps)
    np.testing.assert_allclose(layer(x).tensor.detach().numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), run_var, rtol=1e-12)


def test_batch_norm_non_invariant_means_are_kept():
    """A vector field with a constant offset keeps its mean (an invariant distribution has none to remove)."""
    ft = et.tensor_type(GS[2], [(1, 1, 1), (0, 1, 1)])
    x = data(ft, 7, batch=4, offset=2.0)
    y = TensorBatchNorm(ft, affine=False).double()(x).tensor
    means = y.mean(dim=(0, 2, 3))
    assert means[:2].abs().min() > 0.5  # vector components: mean not removed
    assert means[2].abs() < 1e-12  # scalar: mean removed


@pytest.mark.parametrize("d", [2, 3])
def test_batch_norm_output_statistics(d):
    """Train-mode output: invariant part of each field's mean is 0, mean |y_f|^2 / D is var / (var + eps)."""
    ft = field_type(d)
    x = data(ft, 8, batch=4)
    for eps, tol in ((0.0, 1e-12), (1e-5, 1e-4)):
        y = TensorBatchNorm(ft, eps=eps).double()(x).tensor.detach().numpy()
        for k, p, s, D in fields_of(ft):
            yf = np.moveaxis(y[:, s : s + D], 1, -1).reshape(-1, D)
            assert np.abs(projector(ft.gspace, k, p) @ yf.mean(0)).max() < 1e-12
            assert abs((yf**2).sum(1).mean() / D - 1) < tol


def test_large_means_in_float32():
    """Statistics are taken in two passes (mean, then squares of the centred input): a mean 1000x the spread does not
    cancel away the variance in float32 (a one-pass E[x^2] - E[x]^2 would lose it)."""
    ft = et.tensor_type(GS[2], [(0, 1, 2), (2, 1, 1)])
    x = data(ft, 16, batch=4, spatial=8, offset=0.0).tensor.float()
    x = x + torch.tensor([1000.0, -1000.0, 1000.0, 0.0, 0.0, 1000.0]).view(1, -1, 1, 1)  # invariant means
    for layer in (TensorBatchNorm(ft, affine=False), TensorLayerNorm(ft, affine=False)):
        y = layer(enn.GeometricTensor(x, ft)).tensor.double()
        per_field = [(y[:, 0] ** 2).mean(), (y[:, 1] ** 2).mean(), (y[:, 2:] ** 2).sum(1).mean() / 4]
        mean_square = torch.stack(per_field)
        if isinstance(layer, TensorBatchNorm):
            assert (mean_square - 1).abs().max() < 1e-3
        else:
            assert (mean_square.mean() - 1).abs() < 1e-3
        assert y[:, :2].mean().abs() < 1e-3


def test_batch_norm_equals_torch_for_scalars():
    """For scalar fields the layer is torch.nn.BatchNorm2d/3d: train and eval output, running stats, gradients."""
    for d, spatial in ((2, 5), (3, 3)):
        ft = et.tensor_type(GS[d], [(0, 1, 3)])
        ours = randomize(TensorBatchNorm(ft, momentum=0.2)).double()
        ref = (torch.nn.BatchNorm2d if d == 2 else torch.nn.BatchNorm3d)(3, momentum=0.2).double()
        with torch.no_grad():
            ref.weight.copy_(ours.weight)
            ref.bias.copy_(ours.bias)
        for step in range(2):
            x = data(ft, 40 + step, spatial=spatial)
            a = x.tensor.clone().requires_grad_(True)
            b = x.tensor.clone().requires_grad_(True)
            ya = ours(type(x)(a, ft)).tensor
            yb = ref(b)
            torch.testing.assert_close(ya, yb, rtol=0, atol=1e-12)
            up = torch.randn_like(ya)
            (ya * up).sum().backward()
            (yb * up).sum().backward()
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=0, atol=1e-14)
        torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-13, atol=0)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
        ours.eval(), ref.eval()
        x = data(ft, 50, spatial=spatial)
        torch.testing.assert_close(ours(x).tensor, ref(x.tensor), rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_layer_norm_against_definition_and_statistics(d):
    ft = field_type(d)
    eps = 1e-3
    layer = TensorLayerNorm(ft, eps=eps).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.weight.shape, dtype=torch.float64) + 0.5)
    w = layer.weight.detach().numpy()
    x = data(ft, 9)
    y = layer(x).tensor.detach().numpy()
    for b in range(x.tensor.shape[0]):
        xb = x.tensor[b : b + 1]
        stats = reference_batch_stats(xb, ft)  # batch of one sample: statistics over its pixels
        var = np.mean([v for _, v, _ in stats])  # one scale per sample: mean over fields
        ref = reference_normalise(xb, ft, [(mu, var, m) for mu, _, m in stats], w, eps)
        np.testing.assert_allclose(y[b : b + 1], ref, rtol=0, atol=1e-12)
    # statistics with eps = 0 and no affine: invariant means 0, per-sample mean over fields of |y_f|^2 / D is 1
    y = TensorLayerNorm(ft, eps=0.0, affine=False).double()(x).tensor.detach().numpy()
    for b in range(y.shape[0]):
        per_field = []
        for k, p, s, D in fields_of(ft):
            yf = np.moveaxis(y[b, s : s + D], 0, -1).reshape(-1, D)
            assert np.abs(projector(ft.gspace, k, p) @ yf.mean(0)).max() < 1e-12
            per_field.append((yf**2).sum(1).mean() / D)
        assert abs(np.mean(per_field) - 1) < 1e-12
        assert np.std(per_field) > 1e-3  # one scale per sample, not per field


# ------------------------------------------------------------------------------------------------------------------
# parameters, state, gradients


def test_state_dict_round_trip():
    ft = field_type(2)
    layer = train_batches(randomize(TensorBatchNorm(ft)).double(), ft).eval()
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    fresh = TensorBatchNorm(ft).double().eval()
    fresh.load_state_dict(layer.state_dict())
    x = data(ft, 11)
    assert torch.equal(fresh(x).tensor, layer(x).tensor)
    ln = randomize(TensorLayerNorm(ft), seed=3).double()
    assert set(ln.state_dict()) == {"weight", "bias"}
    fresh = TensorLayerNorm(ft).double()
    fresh.load_state_dict(ln.state_dict())
    assert torch.equal(fresh(x).tensor, ln(x).tensor)


@pytest.mark.parametrize("d", [2, 3])
def test_pickle_and_deepcopy(d):
    ft = field_type(d)
    x = data(ft, 17)
    for layer in (train_batches(randomize(TensorBatchNorm(ft)).double(), ft).eval(), randomize(TensorLayerNorm(ft)).double()):
        for other in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            assert other.in_type == ft and other.out_type == ft
            assert torch.equal(other(x).tensor, layer(x).tensor)
            assert_equivariant(other, x)


@pytest.mark.parametrize("cls", [TensorBatchNorm, TensorLayerNorm])
def test_gradients_reach_every_parameter_and_gradcheck(cls):
    ft = field_type(2)
    layer = randomize(cls(ft)).double()
    x = data(ft, 12)
    y = layer(x).tensor
    (y * torch.randn_like(y)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and (p.grad != 0).all(), name
    # gradients through the statistics, against finite differences
    small = et.tensor_type(GS[2], [(1, 1, 1), (0, 1, 1), (2, 1, 1)])
    layer = randomize(cls(small)).double()
    inp = data(small, 13, batch=2, spatial=3).tensor.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: layer(type(x)(t, small)).tensor, (inp,))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_closed_form_backward_equals_autograd(d, affine):
    """The training-mode closed-form backward gives autograd's gradients of the traced reference (input, weight,
    bias) to float64 rounding, for a mixed field type and a random upstream gradient."""
    ft = field_type(d)
    layer = TensorBatchNorm(ft, affine=affine).double().train()
    if affine:
        randomize(layer, seed=3)
    x = data(ft, 14).tensor.requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    params = [p for p in (layer.weight, layer.bias) if p is not None]
    y = layer(enn.GeometricTensor(x, ft)).tensor
    grads = torch.autograd.grad(y, [x] + params, g)
    shift = layer._invariant_vector(layer.bias) if layer.bias is not None else None
    y_ref = layer._normalise_reference(x, layer.weight, shift)[0]
    grads_ref = torch.autograd.grad(y_ref, [x] + params, g)
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    for a, b in zip(grads, grads_ref):
        assert a.abs().max() > 1e-3  # nonzero gradients
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_batch_norm_second_derivatives():
    """create_graph=True differentiates through the traced reference: second derivatives against finite
    differences."""
    small = et.tensor_type(GS[2], [(1, 1, 1), (0, 1, 1), (2, 1, 1)])
    layer = randomize(TensorBatchNorm(small)).double()
    inp = data(small, 16, batch=2, spatial=3).tensor.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: layer(enn.GeometricTensor(t, small)).tensor, (inp,))


def test_no_bias_without_invariant_subspace():
    ft = et.tensor_type(GS[2], [(1, 1, 2), (0, -1, 1)])  # vectors and a pseudoscalar: no invariant vector
    for layer in (TensorBatchNorm(ft), TensorLayerNorm(ft)):
        assert layer.bias is None and layer.weight.shape == (3,)
    assert TensorBatchNorm(ft).running_mean.numel() == 0
    assert TensorBatchNorm(ft, affine=False).weight is None


def test_evaluate_output_shape():
    ft = field_type(3)
    for layer in (TensorBatchNorm(ft).double(), TensorLayerNorm(ft).double()):
        x = data(ft, 14)
        assert layer.evaluate_output_shape(x.tensor.shape) == tuple(layer(x).tensor.shape)
        with pytest.raises(ValueError, match="input_shape must be"):
            layer.evaluate_output_shape((2, ft.size + 1, 4, 4, 4))


# ------------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("cls", [TensorBatchNorm, TensorLayerNorm])
def test_bad_field_types(cls):
    gs = GS[2]
    regular = enn.FieldType(gs, [gs.regular_repr])  # accepted: an orthogonal representation (test_layers_any_fields)
    assert cls(regular).in_type is regular
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        cls([(1, 1, 1)])
    layer = cls(field_type(2))
    with pytest.raises(ValueError, match="input has FieldType"):
        layer(data(et.tensor_type(gs, [(1, 1, 2)]), 0))
    with pytest.raises(TypeError, match="GeometricTensor"):
        layer(torch.zeros(2, field_type(2).size, 4, 4))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"eps": -1.0}, ValueError, "eps must be a real number in"),
        ({"eps": "small"}, TypeError, "eps must be a real number"),
        ({"momentum": 1.5}, ValueError, "momentum must be a real number in .0, 1. or None"),
        ({"momentum": True}, TypeError, "momentum must be"),
        ({"affine": 1}, TypeError, "affine must be True or False"),
        ({"track_running_stats": None}, TypeError, "track_running_stats must be True or False"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TensorBatchNorm(field_type(2), **kwargs)
    if set(kwargs) <= {"eps", "affine"}:
        with pytest.raises(exc, match=match):
            TensorLayerNorm(field_type(2), **kwargs)


def test_batch_norm_needs_more_than_one_value_when_training():
    ft = et.tensor_type(GS[2], [(0, 1, 1), (1, 1, 1)])
    layer = TensorBatchNorm(ft).double()
    x = data(ft, 15, batch=1, spatial=1)
    with pytest.raises(ValueError, match="more than one value per field"):
        layer(x)
    layer.eval()
    assert layer(x).tensor.shape == (1, 3, 1, 1)  # eval mode uses the running statistics
    vectors = et.tensor_type(GS[2], [(1, 1, 1)])  # no mean estimated: one sample is enough
    assert TensorBatchNorm(vectors).double()(data(vectors, 15, batch=1, spatial=1)).tensor.shape == (1, 2, 1, 1)
