"""The geometric family's option hidden_symmetry (issue 17): hidden 2-tensors (and higher) stored as symmetric or
symmetric traceless tensors. Channels against an independent count, fewer parameters, exact equivariance over every
element, the parameter budget, and refusals."""
import pickle
from math import comb

import pytest
import torch

import escnn_tensor as et
from escnn_tensor.models import MODELS
from escnn_tensor.testing import equivariance_errors, random_input
from tests.models.test_models import TINY, randomize

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def size(d, k, symmetry):
    """Components of an order-k tensor: d^k, C(d+k-1, k), or that minus C(d+k-3, k-2)."""
    if symmetry is None or k < 2:
        return d**k
    n = comb(d + k - 1, k)
    return n - comb(d + k - 3, k - 2) if symmetry == "symmetric_traceless" else n


@pytest.mark.parametrize("symmetry", ["symmetric", "symmetric_traceless"])
@pytest.mark.parametrize("arch", list(TINY))
def test_hidden_symmetric_tensors_exactly_equivariant_2d(arch, symmetry):
    t_in, t_out = et.tensor_type(GS[2], [(0, 1, 1)]), et.tensor_type(GS[2], [(2, 1, 1)])
    torch.manual_seed(0)
    model = MODELS[arch](t_in, t_out, "geometric", width=1, hidden_symmetry=symmetry, **TINY[arch]).double()
    full = MODELS[arch](t_in, t_out, "geometric", width=1, **TINY[arch]).double()
    assert model.options["hidden_symmetry"] == symmetry
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(model) < count(full)
    randomize(model)
    model.eval()
    errors = equivariance_errors(model, random_input(t_in, spatial=8, generator=torch.Generator().manual_seed(1)))
    assert len(errors) == 8 and max(errors.values()) < 1e-10
    x = random_input(t_in, spatial=8)
    assert torch.equal(pickle.loads(pickle.dumps(model))(x).tensor, model(x).tensor)


@pytest.mark.parametrize("symmetry", [None, "symmetric", "symmetric_traceless"])
def test_3d_hidden_channels_and_equivariance(symmetry):
    t_in, t_out = et.tensor_type(GS[3], [(0, 1, 1)]), et.tensor_type(GS[3], [(2, 1, 1)])
    model = MODELS["resnet"](t_in, t_out, "geometric", width=2, num_blocks=1, hidden_symmetry=symmetry).double()
    # the hidden ladder (0,+), (1,+), (2,+), 2 fields each: channels 2 (1 + 3 + size(2))
    expected = 2 * (1 + 3 + size(3, 2, symmetry))
    convs = [m for m in model.modules() if type(m).__name__ == "GeometricConv"]
    assert any(c.in_type.size == expected and c.out_type.size == expected for c in convs), [
        (c.in_type.size, c.out_type.size) for c in convs]
    randomize(model)
    model.eval()
    errors = equivariance_errors(model, random_input(t_in, spatial=6, generator=torch.Generator().manual_seed(2)))
    assert len(errors) == 48 and max(errors.values()) < 1e-10


def test_parameter_budget_and_refusals():
    t_in, t_out = et.tensor_type(GS[2], [(0, 1, 1)]), et.tensor_type(GS[2], [(1, 1, 1)])
    model = MODELS["resnet"](t_in, t_out, "geometric", params=3000, num_blocks=1, hidden_symmetry="symmetric")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 3000) <= 0.1 * 3000
    with pytest.raises(ValueError, match="steerable family does not use the option.*hidden_symmetry"):
        MODELS["resnet"](t_in, t_out, "steerable", hidden_symmetry="symmetric")
    with pytest.raises(ValueError, match="hidden_symmetry must be one of"):
        MODELS["resnet"](t_in, t_out, "geometric", hidden_symmetry="antisymmetric")
