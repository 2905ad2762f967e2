"""models.autoregressive_step / autoregressive_map: the harness's rollouts of GeometricTensor models."""
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.image import from_geometric_tensor
from escnn_tensor.image import time_series as ts
from escnn_tensor.models import GroupAverage, ResNet, autoregressive_map, autoregressive_step
from escnn_tensor.testing import random_input

GS = et.hyperoctahedral_gspace(2)
T = et.tensor_type(GS, [(0, 1, 1), (1, 1, 1)])


def model(seed=0, family="plain"):
    torch.manual_seed(seed)
    return ResNet(T, T, family=family, width=2).double().eval()


def test_rollout_feeds_predictions_back():
    m = model()
    x = random_input(T, 6, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = autoregressive_map(m, x, 4)
        assert out.shape == (3, 4, T.size, 6, 6)
        y = x
        for t in range(4):  # by hand
            y = m(y)
            torch.testing.assert_close(out[:, t], y.tensor, rtol=0, atol=0)
        # a plain tensor -> tensor callable gives the same
        plain = autoregressive_map(lambda t: m(GeometricTensor(t, T)).tensor, x.tensor, 4)
        torch.testing.assert_close(plain, out, rtol=0, atol=0)


def test_rollout_of_an_equivariant_model_commutes_with_the_group():
    m = GroupAverage(model(1), T, T).eval()
    x = random_input(T, 6, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = autoregressive_map(m, x, 3)
        for g in et.group_elements(GS):
            moved = autoregressive_map(m, x.transform(g), 3)
            for t in range(3):
                ref = GeometricTensor(out[:, t], T).transform(g).tensor
                assert (moved[:, t] - ref).abs().max() <= 1e-12 * ref.abs().max()


def test_past_steps_and_constant_fields_follow_the_multi_image_step():
    """With two past steps and a constant field the GeometricTensor step is the MultiImage step (one implementation)."""
    types = et.tensor_type(GS, [(0, 1, 3), (1, 1, 2)])  # scalars: 1 field x 2 steps + 1 constant; vectors: 2 steps
    x = random_input(types, 5, 2, generator=torch.Generator().manual_seed(2))
    y = random_input(T, 5, 2, generator=torch.Generator().manual_seed(3))
    new = autoregressive_step(x, y, past_steps=2, constant_fields={(0, 1): 1})
    ref = ts.autoregressive_step(from_geometric_tensor(x), from_geometric_tensor(y), 2, {(0, 1): 1})
    assert new.type == types and from_geometric_tensor(new).equal(ref)
    s = x.tensor
    # scalars: [step t-1, step t, constant] -> [step t, prediction, constant]
    torch.testing.assert_close(new.tensor[:, 0], s[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(new.tensor[:, 1], y.tensor[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(new.tensor[:, 2], s[:, 2], rtol=0, atol=0)
    torch.testing.assert_close(new.tensor[:, 3:5], s[:, 5:7], rtol=0, atol=0)  # vector: newer step moves first
    torch.testing.assert_close(new.tensor[:, 5:7], y.tensor[:, 1:3], rtol=0, atol=0)
