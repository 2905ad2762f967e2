"""GroupAverage (f̄(x) = 1/|G| sum_g g^-1 f(g x)) and FieldAction, checked with every group element."""
import itertools

import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.models import FieldAction, GroupAverage, ResNet
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
FIELDS = [(0, 1, 1), (0, -1, 1), (1, 1, 1), (1, -1, 1), (2, 1, 1)]


def plain(d, seed=0):
    torch.manual_seed(seed)
    in_type = et.tensor_type(GS[d], FIELDS[:4])
    out_type = et.tensor_type(GS[d], [(0, 1, 1), (1, 1, 1), (2, -1, 1)])
    size = dict(width=4) if d == 2 else dict(width=2, num_blocks=1)  # 3D: 48 x 48 forwards per check
    return ResNet(in_type, out_type, family="plain", **size).double(), in_type, out_type


@pytest.mark.parametrize("d,N", [(2, 8), (3, 4)])
def test_group_average_plain_model_is_equivariant(d, N):
    model, in_type, out_type = plain(d)
    x = random_input(in_type, N, 2, generator=torch.Generator().manual_seed(d))
    # the wrapped model is far from equivariant (so the check below can fail) ...
    assert max(equivariance_errors(model.eval(), x).values()) > 1e-2
    # ... and its group average is equivariant to round-off, for all 8 (2D) / 48 (3D) elements
    avg = GroupAverage(model, in_type, out_type).eval()
    errors = assert_equivariant(avg, x, rtol=1e-12)
    assert len(errors) == (8 if d == 2 else 48)
    if d == 2:
        with torch.no_grad():  # and in training mode (batch statistics of each of the |G| forwards)
            assert_equivariant(GroupAverage(model, in_type, out_type).train(), x, rtol=1e-12)


def test_group_average_definition_and_cost():
    model, in_type, out_type = plain(2, seed=3)
    model.eval()
    x = random_input(in_type, 6, 3, generator=torch.Generator().manual_seed(1))
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    avg = GroupAverage(model, in_type, out_type).eval()
    out = avg(x)
    handle.remove()
    assert len(calls) == 8 == avg.group_size  # |G| forwards
    # the definition, with escnn's own transform
    ref = sum(model(x.transform(g)).transform(~g).tensor for g in et.group_elements(GS[2])) / 8
    torch.testing.assert_close(out.tensor, ref, rtol=1e-13, atol=1e-13)
    assert out.type == out_type and avg.evaluate_output_shape(tuple(x.tensor.shape)) == tuple(out.tensor.shape)


def test_group_average_of_an_equivariant_model_is_the_model():
    gs = GS[2]
    t = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    torch.manual_seed(0)
    model = ResNet(t, t, family="geometric", width=1).double().eval()
    x = random_input(t, 6, 2, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(GroupAverage(model, t, t).eval()(x).tensor, model(x).tensor, rtol=1e-10, atol=1e-10)


def test_group_average_trains_and_accepts_a_tensor_callable():
    model, in_type, out_type = plain(2, seed=5)
    avg = GroupAverage(model, in_type, out_type)
    x = random_input(in_type, 6, 2, generator=torch.Generator().manual_seed(3))
    avg(x).tensor.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    # a plain tensor -> tensor callable
    conv = torch.nn.Conv2d(in_type.size, out_type.size, 3, padding=1, padding_mode="circular").double()
    assert_equivariant(GroupAverage(conv, in_type, out_type), x, rtol=1e-12)
    # ginjax's default: average only in evaluation
    lazy = GroupAverage(model, in_type, out_type, always_average=False)
    model.eval()
    lazy.train()
    with torch.no_grad():
        torch.testing.assert_close(lazy(x).tensor, model(x).tensor, rtol=0, atol=0)
        lazy.eval()
        torch.testing.assert_close(lazy(x).tensor, GroupAverage(model, in_type, out_type).eval()(x).tensor)


@pytest.mark.parametrize("d", [2, 3])
def test_field_action_is_escnn_transform_with_gradients(d):
    ft = et.tensor_type(GS[d], FIELDS)
    action = FieldAction(ft)
    x = random_input(ft, 4, 2, generator=torch.Generator().manual_seed(d))
    for i, g in enumerate(action.elements):
        torch.testing.assert_close(action(x.tensor, i), x.transform(g).tensor, rtol=0, atol=1e-14)
        j = action.inverse[i]
        torch.testing.assert_close(action(action(x.tensor, i), j), x.tensor, rtol=0, atol=1e-14)
    t = x.tensor.clone().requires_grad_()
    action(t, 1).sum().backward()
    assert t.grad is not None


def test_group_average_subgroup_gspace():
    from escnn import gspaces

    sub = gspaces.rot2dOnR2(N=4)  # C4 acting on the grid
    t = et.tensor_type(sub, [(0, 1, 1), (1, 1, 1)])
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(t.size, t.size, 3, padding=1).double()
    x = random_input(t, 7, 2, generator=torch.Generator().manual_seed(0))
    assert len(assert_equivariant(GroupAverage(conv, t, t), x, rtol=1e-12)) == 4


@pytest.mark.parametrize("d", [2])  # the 3D path is the same code (FieldAction), checked for equivariance above
def test_device_clean_on_meta(d):
    """No host synchronisation: GroupAverage trains (forward + backward) and rolls out on the meta device, where
    .item(), bool(tensor) and data-dependent shapes raise."""
    from escnn_tensor.models import autoregressive_map

    t = et.tensor_type(GS[d], [(0, 1, 1), (1, -1, 1)])
    avg = GroupAverage(ResNet(t, t, family="plain", width=2), t, t).to("meta").train()
    x = GeometricTensor(torch.empty((2, t.size) + (4,) * d, device="meta"), t)
    avg(x).tensor.sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in avg.parameters())
    avg.eval()
    with torch.no_grad():
        assert autoregressive_map(avg, x, 2).shape == (2, 2, t.size) + (4,) * d
