"""TensorBatchNorm -> GatedNonLinearity as one autograd node (``batch_norm_gate``) equals the two layers, in both of
its formulations (PyTorch, ``_NormGate``, and the C kernel, ``_NormGateNative``: the ``formulation`` fixture):
outputs, running statistics and every first derivative to float64 rounding, for every named activation it fuses,
mixed 2D / 3D types, zero fields (clamped gate norms), with and without affine parameters and gate bias; a norm
followed by a GatedQuadratic (its gate fused, its quadratic term fed by the node's second output); gradcheck and
gradgradcheck (second derivatives through the traced references), also of both outputs; geometric ResNets (which
fuse their pairs) with either nonlinearity are exactly equivariant in training mode over every group element and
equal to the same model run layer by layer; the cases it cannot fuse fall back. More on the C kernel:
test_norm_gate_native.py."""
import copy

import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor import _native
from escnn_tensor.models import ResNet
from escnn_tensor.nn import GatedNonLinearity, GatedQuadratic, TensorBatchNorm
from escnn_tensor.nn._norm_gate import _ACTIVATION_BACKWARD, _NormGate, _use_native, batch_norm_gate, can_fuse
from escnn_tensor.nn._norm_gate import _NormGateNative as ng_native
from escnn_tensor.testing import assert_equivariant, random_input

CASES = [
    (2, [(0, 1, 2), (1, 1, 2), (2, 1, 1), (0, -1, 1)]),
    (2, [(1, -1, 2), (0, -1, 1), (2, 1, 1)]),  # no true scalars
    (3, [(0, 1, 2), (1, 1, 1), (2, -1, 1)]),
]


def pair(d, fields, function="elu", affine=True, bias=True, momentum=0.1):
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), fields)
    norm = TensorBatchNorm(ft, affine=affine, momentum=momentum).double()
    gate = GatedNonLinearity(ft, function=function, bias=bias).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in list(norm.parameters()) + list(gate.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7 + (1.0 if p.dim() == 1 else 0.0))
    x = 2.0 + torch.randn((3, ft.size) + (4,) * d, generator=g, dtype=torch.float64)  # a mean to remove
    return norm, gate, x


@pytest.fixture(params=["pytorch", "native"])
def formulation(request, monkeypatch):
    """The fused node's formulation the test runs: ``"pytorch"`` (``ESCNN_TENSOR_NATIVE=0``) or ``"native"`` (the C
    kernel; skipped without a C compiler)."""
    if request.param == "pytorch":
        monkeypatch.setenv("ESCNN_TENSOR_NATIVE", "0")
    elif _native._compiler() is None or not _native.enabled():
        pytest.skip("no C compiler (or ESCNN_TENSOR_NATIVE=0): the native kernel is not built")
    return request.param


def run(norm, gate, x, fused, formulation="pytorch"):
    x = x.clone().requires_grad_(True)
    params = [p for p in list(norm.parameters()) + list(gate.parameters())]
    if fused:
        assert can_fuse(norm, gate)
        assert _use_native(x, norm, gate) == (formulation == "native")
        z = batch_norm_gate(norm, gate, x)
    else:
        z = gate(norm(GeometricTensor(x, norm.in_type))).tensor
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=z.dtype)
    grads = torch.autograd.grad(z, [x] + params, g)
    return z, grads, (norm.running_mean.clone(), norm.running_var.clone())


@pytest.mark.parametrize("function", sorted(_ACTIVATION_BACKWARD))
def test_fused_equals_layers_every_activation(function, formulation):
    d, fields = CASES[0]
    norm, gate, x = pair(d, fields, function)
    ref = run(copy.deepcopy(norm), copy.deepcopy(gate), x, fused=False)
    got = run(norm, gate, x, fused=True, formulation=formulation)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-13, atol=1e-13)
    for a, e in zip(got[1], ref[1]):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)
        assert e.abs().max() > 0
    for a, e in zip(got[2], ref[2]):
        torch.testing.assert_close(a, e, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("affine,bias,momentum", [(True, True, 0.1), (False, False, None), (True, False, 0.3)])
@pytest.mark.parametrize("d,fields", CASES)
def test_fused_equals_layers(d, fields, affine, bias, momentum, formulation):
    norm, gate, x = pair(d, fields, "silu", affine, bias, momentum)
    x[0, :, 0] = 0.0
    ref_norm, ref_gate = copy.deepcopy(norm), copy.deepcopy(gate)
    for _ in range(2):  # twice: running statistics after two updates
        ref = run(ref_norm, ref_gate, x, fused=False)
        got = run(norm, gate, x, fused=True, formulation=formulation)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-13, atol=1e-13)
    for a, e in zip(got[1], ref[1]):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)
    for a, e in zip(got[2], ref[2]):
        torch.testing.assert_close(a, e, rtol=1e-14, atol=1e-15)
    assert int(norm.num_batches_tracked) == 2


def test_fused_zero_fields_after_norm(formulation):
    """A gated field that is exactly zero after the norm (weight 0): its norm is clamped, its gradient finite and equal
    to the layers'."""
    d, fields = CASES[0]
    norm, gate, x = pair(d, fields)
    with torch.no_grad():
        norm.weight[2] = 0.0  # the first vector field
    ref = run(copy.deepcopy(norm), copy.deepcopy(gate), x, fused=False)
    got = run(norm, gate, x, fused=True, formulation=formulation)
    for a, e in zip((got[0],) + got[1], (ref[0],) + ref[1]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("d,fields", CASES)
def test_fused_gradcheck_and_gradgradcheck(d, fields):
    norm, gate, x = pair(d, fields, "elu")
    x = x[:2, ..., :3].clone().requires_grad_(True)  # small: gradgradcheck differentiates every entry twice
    f = lambda x, w, b, gw, gb: _NormGate.apply(x, w, b, gw, gb, norm, gate)[0]  # noqa: E731
    args = (x, norm.weight, norm.bias, gate.gate_weight, gate.gate_bias)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def randomize_quadratic(module, seed=3):
    """Non-zero weights for every GatedQuadratic's quadratic term (they start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, GatedQuadratic) and m.product is not None:
                for p in list(m.product.parameters()) + list(m.probe.parameters()):
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p) * 0.5)
    return module


@pytest.mark.parametrize("d,fields", CASES)
def test_fused_norm_then_gated_quadratic(d, fields, formulation):
    """A norm followed by a GatedQuadratic: the norm and its gate are one node whose second output (the norm's) feeds
    the quadratic term; equal to the layers (outputs, every parameter's gradient, running statistics)."""
    norm, _, x = pair(d, fields, "elu")
    layer = randomize_quadratic(GatedQuadratic(norm.in_type).double())
    assert can_fuse(norm, layer) and layer.product is not None
    ref_norm, ref_layer = copy.deepcopy(norm), copy.deepcopy(layer)
    outs = []
    for nm, lay, fused in ((ref_norm, ref_layer, False), (norm, layer, True)):
        xi = x.clone().requires_grad_(True)
        if fused:
            assert _use_native(xi, nm, lay.gate) == (formulation == "native")
            z = batch_norm_gate(nm, lay, xi)
        else:
            z = lay(nm(GeometricTensor(xi, nm.in_type))).tensor
        params = list(nm.parameters()) + list(lay.parameters())
        g = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=z.dtype)
        outs.append((z, torch.autograd.grad(z, [xi] + params, g), (nm.running_mean.clone(), nm.running_var.clone())))
    (z, grads, stats), (z_ref, grads_ref, stats_ref) = outs[1], outs[0]
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(grads, grads_ref):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-11)
        assert e.abs().max() > 0
    for a, e in zip(stats, stats_ref):
        torch.testing.assert_close(a, e, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("d,fields", CASES[:2])
def test_fused_gradcheck_with_the_norms_output(d, fields, formulation):
    """Both outputs (the gate's and the norm's) differentiated together: gradcheck, gradgradcheck."""
    norm, gate, x = pair(d, fields, "silu")
    x = x[:2, ..., :3].clone().requires_grad_(True)
    fn = ng_native if formulation == "native" else _NormGate

    def f(x, w, b, gw, gb):
        z, _, _, y = fn.apply(x, w, b, gw, gb, norm, gate, True)
        return z, y

    args = (x, norm.weight, norm.bias, gate.gate_weight, gate.gate_bias)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_not_fused_falls_back():
    d, fields = CASES[0]
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), fields)
    norm = TensorBatchNorm(ft).double()
    assert not can_fuse(norm, GatedNonLinearity(ft, function="softsign"))  # no closed-form derivative listed
    assert not can_fuse(norm, GatedNonLinearity(ft, function=lambda t: t * 2))
    assert not can_fuse(norm, GatedNonLinearity(et.tensor_type(ft.gspace, [(0, 1, 3)])))  # no gates
    assert not can_fuse(norm, GatedNonLinearity(et.tensor_type(ft.gspace, fields[::-1])))  # other type
    assert can_fuse(norm, GatedNonLinearity(ft))
    gate = GatedNonLinearity(ft, function="softsign").double()
    x = torch.randn((2, ft.size, 4, 4), dtype=torch.float64)
    want = gate(copy.deepcopy(norm)(GeometricTensor(x, ft))).tensor
    torch.testing.assert_close(batch_norm_gate(norm, gate, x), want, rtol=0, atol=0)
    norm.eval()  # running statistics: the two layers
    torch.testing.assert_close(batch_norm_gate(norm, gate, x), gate(norm(GeometricTensor(x, ft))).tensor,
                               rtol=0, atol=0)


@pytest.mark.parametrize("nonlinearity", ["gated", "gated_quadratic"])
@pytest.mark.parametrize("d", [2, 3])
def test_geometric_resnet_fuses_and_is_equivariant_in_training(d, nonlinearity, formulation):
    gs = et.hyperoctahedral_gspace(d)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    torch.manual_seed(0)
    model = randomize_quadratic(ResNet(in_type, out_type, "geometric", width=2, num_blocks=1, norm="batch",
                                       nonlinearity=nonlinearity).double().train())
    pairs = sum(can_fuse(a.module, b.module) for seq in model.modules() if type(seq).__name__ == "Chain"
                for a, b in zip(list(seq)[:-1], list(seq)[1:]))
    assert pairs == 5  # encoder 2, block 2, decoder 1
    assert_equivariant(model, random_input(in_type, spatial=6 if d == 2 else 4, batch=3))


@pytest.mark.parametrize("nonlinearity", ["gated", "gated_quadratic"])
@pytest.mark.parametrize("d,symmetry", [(2, None), (2, "symmetric"), (3, "symmetric_traceless")])
def test_model_fused_equals_unfused(d, symmetry, nonlinearity, formulation):
    """A geometric ResNet in training: the Chains (fused pairs) give the outputs, parameter gradients and running
    statistics of the same model run layer by layer (plain Sequentials), also with symmetric hidden 2-tensors."""
    gs = et.hyperoctahedral_gspace(d)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    torch.manual_seed(0)
    model = randomize_quadratic(ResNet(in_type, out_type, "geometric", width=2, num_blocks=1, norm="batch",
                                       nonlinearity=nonlinearity, hidden_symmetry=symmetry).double().train())
    assert sum(can_fuse(a.module, b.module) for seq in model.modules() if type(seq).__name__ == "Chain"
               for a, b in zip(list(seq)[:-1], list(seq)[1:])) == 5
    layered = copy.deepcopy(model)
    for m in layered.modules():
        if type(m).__name__ == "Chain":
            m.__class__ = torch.nn.Sequential
    x = random_input(in_type, spatial=5 if d == 2 else 3, batch=2)
    outs = []
    for m in (model, layered):
        y = m(x).tensor
        grads = torch.autograd.grad(y, list(m.parameters()), torch.ones_like(y))
        outs.append((y, grads, [b.clone() for b in m.buffers() if b.dtype == torch.float64]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    for a, e in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-11)
    for a, e in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-14)


def test_model_pair_with_a_forward_hook_runs_layer_by_layer():
    gs = et.hyperoctahedral_gspace(2)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    torch.manual_seed(0)
    model = ResNet(in_type, out_type, "geometric", width=2, num_blocks=1, norm="batch",
                   nonlinearity="gated").double().train()
    seen = []
    model.blocks[0][1].module.register_forward_hook(lambda mod, args, out: seen.append(out.tensor.shape))
    model(random_input(in_type, spatial=5, batch=2))
    assert seen == [(2, model.blocks[0][1].module.in_type.size, 5, 5)]
