"""GatedNonLinearity's closed-form gate (``_Gate``) equals its autograd-traced reference: values and first
derivatives to float64 rounding, gradcheck and gradgradcheck (second derivatives go through the reference), with
zero fields (clamped norms), without true scalars, in 2D and 3D."""
import pytest
import torch

import escnn_tensor as et
from escnn_tensor.nn import GatedNonLinearity
from escnn_tensor.nn._gated import _Gate

CASES = [
    (2, [(0, 1, 2), (1, 1, 2), (2, 1, 1), (0, -1, 1)]),
    (2, [(1, -1, 2), (0, -1, 1), (2, 1, 1)]),  # no true scalars
    (3, [(0, 1, 2), (1, 1, 1), (2, -1, 1)]),
]


def parts(d, fields, bias=True):
    gs = et.hyperoctahedral_gspace(d)
    layer = GatedNonLinearity(et.tensor_type(gs, fields), function="elu", bias=bias).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.gate_weight.copy_(torch.randn(layer.gate_weight.shape, generator=g, dtype=torch.float64))
        if layer.gate_bias is not None:
            layer.gate_bias.copy_(torch.randn(layer.gate_bias.shape, generator=g, dtype=torch.float64))
    x = torch.randn((3, layer.in_type.size) + (3,) * d, generator=g, dtype=torch.float64)
    x[0, :, 0] = 0.0  # zero fields: the clamped norm, zero gradient through it
    xg = layer.groups.gather(x)
    ns = layer._n_scalar_channels
    s = xg[:, :ns].clone().requires_grad_(True)
    v = xg[:, ns:].clone().requires_grad_(True)
    return layer, s, v


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d,fields", CASES)
def test_closed_form_gate_equals_reference(d, fields, bias):
    layer, s, v = parts(d, fields, bias)
    w, b = layer.gate_weight, layer.gate_bias
    y = _Gate.apply(s, v, w, b, layer)
    ref = layer._gate_reference(s, v, w, b)
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-14)
    g = torch.randn_like(y)
    inputs = [t for t in (s, v, w, b) if t is not None]
    got = torch.autograd.grad(y, inputs, g, allow_unused=True)
    want = torch.autograd.grad(ref, inputs, g, allow_unused=True)
    for a, e in zip(got, want):
        if e is None:
            assert a is None or a.numel() == 0 or not a.abs().max() > 0
        else:
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)
    assert got[1].abs().max() > 0 and got[2].abs().max() > 0


@pytest.mark.parametrize("d,fields", CASES)
def test_closed_form_gate_gradcheck_and_gradgradcheck(d, fields):
    layer, s, v = parts(d, fields)
    f = lambda s, v, w, b: _Gate.apply(s, v, w, b, layer)  # noqa: E731
    args = (s, v, layer.gate_weight, layer.gate_bias)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)
