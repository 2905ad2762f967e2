"""Edge cases of the pixelwise layers, as torch's layers behave (issue 20, item 5).

- An empty batch (N = 0) gives an empty output of the right shape, in train and eval mode, and a backward pass gives
  empty input gradients and zero parameter gradients (torch.nn.Conv2d / LayerNorm / ReLU do the same).
- One +inf (or -inf) in a sample makes TensorLayerNorm return NaN for that whole sample, as torch.nn.LayerNorm does
  for its normalised group, instead of zeroing the sample's finite values; the other samples are unaffected.
"""
import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
import escnn_tensor.nn as etnn
from escnn_tensor.testing import random_input

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def mixed(d):
    return et.tensor_type(GS[d], [(0, 1, 2), (1, 1, 1), (1, -1, 1), (2, 1, 1), (0, -1, 1)])


def small(d):
    return et.tensor_type(GS[d], [(0, 1, 1), (1, 1, 1), (2, -1, 1)])


LAYERS = {
    "TensorLayerNorm": lambda d: etnn.TensorLayerNorm(mixed(d)),
    "GatedNonLinearity": lambda d: etnn.GatedNonLinearity(mixed(d)),
    "GatedQuadratic": lambda d: etnn.GatedQuadratic(mixed(d)),
    "VectorNeuronNonLinearity": lambda d: etnn.VectorNeuronNonLinearity(mixed(d)),
    "NormMaxPool": lambda d: etnn.NormMaxPool(mixed(d), 2),
    "TensorProductNonLinearity": lambda d: etnn.TensorProductNonLinearity(mixed(d), small(d), bias=True),
    "PointwiseNonLinearity": lambda d: etnn.PointwiseNonLinearity(mixed(d), "elu", nonscalars="norm"),
    "PointwiseNonLinearity unchanged": lambda d: etnn.PointwiseNonLinearity(mixed(d), "relu"),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(LAYERS))
def test_empty_batch_gives_empty_output(name, d, train):
    layer = LAYERS[name](d).train(train)
    x = torch.zeros((0, layer.in_type.size) + (4,) * d, requires_grad=True)
    y = layer(GeometricTensor(x, layer.in_type))
    assert y.type == layer.out_type
    assert tuple(y.tensor.shape) == layer.evaluate_output_shape(tuple(x.shape)) and y.tensor.numel() == 0
    y.tensor.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for p in layer.parameters():
        assert p.grad is None or torch.equal(p.grad, torch.zeros_like(p))


def test_torch_layers_also_give_empty_outputs():
    """The behaviour matched: torch's own layers on an empty batch."""
    x = torch.zeros(0, 3, 4, 4)
    for layer in (torch.nn.Conv2d(3, 2, 3), torch.nn.LayerNorm([3, 4, 4]), torch.nn.ReLU(), torch.nn.MaxPool2d(2)):
        assert layer(x).shape[0] == 0


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
@pytest.mark.parametrize("channel", [0, 3, 9])  # a scalar, a vector component, a 2-tensor component (2D)
def test_layer_norm_gives_nan_for_a_sample_with_an_infinite_value(channel, value):
    layer = etnn.TensorLayerNorm(mixed(2)).double()
    x = random_input(mixed(2), 5, 3, torch.float64, torch.Generator().manual_seed(0)).tensor
    clean = layer(GeometricTensor(x, layer.in_type)).tensor
    x = x.clone()
    x[1, channel, 2, 3] = value
    y = layer(GeometricTensor(x, layer.in_type)).tensor
    assert torch.isnan(y[1]).all()  # the whole sample, as torch.nn.LayerNorm's normalised group
    assert torch.equal(y[0], clean[0]) and torch.equal(y[2], clean[2])
    ref = torch.nn.LayerNorm([5, 5], elementwise_affine=False).double()(x[1:2, channel])
    assert torch.isnan(ref).all()  # the torch behaviour this matches
