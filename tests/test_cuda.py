"""The layers and models on a CUDA device: exact equivariance, agreement with the CPU, no host synchronisation.

Skipped, with the reason shown by ``pytest -rs``, when no CUDA device is available. On a machine with one
(``bash scripts/gpu_check.sh`` runs this module first):

- every layer of escnn_tensor.nn (the rows of tests/nn/test_device_clean.py), in float64 on the GPU, is equivariant
  to 1e-10 for every group element (8 in 2D, 48 in 3D) in train and eval mode, and equals the CPU layer to 1e-10;
- forward + backward of every layer and of every geometric model raise nothing under
  ``torch.cuda.set_sync_debug_mode("error")``, which turns every host-device synchronisation into an error;
- one training step (Adam) of a ResNet of each family on the GPU gives the parameters the CPU step gives (float64,
  1e-9), and a float32 step on the GPU is finite.

The group acts on CPU copies (escnn's ``GeometricTensor.transform``), so only the layers' own arithmetic runs on the
GPU.
"""
import copy

import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.models import MODELS
from escnn_tensor.testing import group_elements, random_input

from .nn.test_device_clean import GEOMETRIC_OPTIONS, LAYERS, SPATIAL, TINY

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False): the GPU checks need one"
)

CUDA = torch.device("cuda")
GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def on(device, module, x: GeometricTensor) -> torch.Tensor:
    """``module(x)`` computed on ``device``, returned on the CPU."""
    return module(GeometricTensor(x.tensor.to(device), x.type)).tensor.cpu()


def gpu_equivariance_errors(module, x):
    """``max |f(g x) - g f(x)| / max |f(x)|`` for every g, f on the GPU, the action of g on CPU tensors."""
    y = GeometricTensor(on(CUDA, module, x), module.out_type)
    scale = y.tensor.abs().max()
    assert scale > 0
    return {str(g): float((on(CUDA, module, x.transform(g)) - y.transform(g).tensor).abs().max() / scale)
            for g in group_elements(x.type.gspace)}


def randomized(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_layer_on_gpu_is_equivariant_and_equals_cpu(name, d):
    torch.manual_seed(0)
    cpu = randomized(dict(LAYERS)[name](d).double())
    spatial = 5 if "stride" in name else SPATIAL[d] + 2
    x = random_input(cpu.in_type, spatial, 3, torch.float64, torch.Generator().manual_seed(2))
    gpu = copy.deepcopy(cpu).to(CUDA)
    for mode in (True, False):
        cpu.train(mode)
        gpu.train(mode)
        with torch.no_grad():
            errors = gpu_equivariance_errors(gpu, x)
            assert len(errors) == (8 if d == 2 else 48)
            assert max(errors.values()) <= 1e-10, (mode, errors)
            want = cpu(x).tensor
            torch.testing.assert_close(on(CUDA, gpu, x), want, rtol=1e-10, atol=1e-10 * float(want.abs().max()))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_layer_forward_backward_without_host_sync(name, d):
    layer = dict(LAYERS)[name](d).to(CUDA)
    spatial = 5 if "stride" in name else SPATIAL[d]
    x = random_input(layer.in_type, spatial, 2, torch.float32).tensor.to(CUDA).requires_grad_(True)
    for mode in (True, False):
        layer.train(mode)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            y = layer(GeometricTensor(x, layer.in_type)).tensor
            y.square().sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(x.grad).all()


CASES = [(a, o) for a in MODELS for o in GEOMETRIC_OPTIONS]


@pytest.mark.parametrize("arch,options", CASES, ids=[f"{a}-{'-'.join(map(str, o.values()))}" for a, o in CASES])
def test_geometric_model_forward_backward_without_host_sync(arch, options):
    gs = GS[2]
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t_out = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    model = MODELS[arch](t_in, t_out, "geometric", width=1, **TINY[arch], **options).to(CUDA)
    x = random_input(t_in, 8, 2, torch.float32).tensor.to(CUDA)
    for mode in (True, False):
        model.train(mode)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            y = model(GeometricTensor(x, t_in)).tensor
            y.square().mean().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("family", ["geometric", "steerable", "plain"])
def test_training_step_on_gpu_equals_cpu(family):
    gs = GS[2]
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t_out = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    torch.manual_seed(0)
    width = {"geometric": 1, "steerable": 1, "plain": 4}[family]
    options = dict(norm="batch") if family != "steerable" else {}
    cpu = MODELS["resnet"](t_in, t_out, family, width=width, num_blocks=1, **options).double()
    gen = torch.Generator().manual_seed(3)
    x = random_input(t_in, 8, 4, torch.float64, gen).tensor
    target = random_input(t_out, 8, 4, torch.float64, gen).tensor
    gpu = copy.deepcopy(cpu).to(CUDA)
    for model, device in ((cpu, torch.device("cpu")), (gpu, CUDA)):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        loss = (model(GeometricTensor(x.to(device), t_in)).tensor - target.to(device)).square().mean()
        loss.backward()
        opt.step()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=1e-9, atol=1e-12, msg=name)
    gpu32 = copy.deepcopy(cpu).float().to(CUDA).train()
    loss = (gpu32(GeometricTensor(x.float().to(CUDA), t_in)).tensor - target.float().to(CUDA)).square().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in gpu32.parameters() if p.grad is not None)
