"""``torch.compile(model, fullgraph=True)`` works for every geometric model (one graph, no graph break), in train and
eval mode, with outputs and gradients equal to eager mode within float32 round-off.

Compiling is slow on a small CPU, so the models are tiny (2D, 8x8 grid, width 1) and the backends are chosen to
test each stage once:

- ``backend="eager"`` (TorchDynamo's capture only, which is where graph breaks and data-dependent guards fail) for
  one model per architecture (between them both norms and both gated nonlinearities), train and eval;
- ``backend="aot_eager"`` (capture + AOTAutograd's tracing of forward and backward, including TensorBatchNorm's
  closed-form backward) for one ResNet in train mode;
- with ``ESCNN_TENSOR_TEST_COMPILE=full`` also ``aot_eager`` and the default inductor backend (code generation)
  for the model of every architecture in both modes: minutes on a small CPU (skipped with that reason otherwise).
"""
import copy
import os

import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.models import MODELS
from escnn_tensor.testing import random_input

GS = et.hyperoctahedral_gspace(2)
T_IN = et.tensor_type(GS, [(0, 1, 1), (1, 1, 1)])
T_OUT = et.tensor_type(GS, [(1, 1, 1), (0, -1, 1)])
TINY = {
    "resnet": dict(num_blocks=1),
    "unet": dict(num_downsamples=1, num_conv=1),
    "dilresnet": dict(num_blocks=1, dilations=(1, 2, 1)),
}


def build(arch, **options):
    torch.manual_seed(0)
    model = MODELS[arch](T_IN, T_OUT, "geometric", width=1, **TINY[arch], **options)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero biases and shifts, so that every parameter takes part
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def compare(model, backend, modes=(True, False)):
    """Compiled (fullgraph) and eager copies of ``model``: equal outputs and parameter gradients per mode."""
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    x = random_input(T_IN, 8, 3, torch.float32, torch.Generator().manual_seed(2))
    for mode in modes:
        model.train(mode)
        compiled_model.train(mode)
        for m in (model, compiled_model):
            m.zero_grad()
        want = model(x).tensor
        got = compiled(x).tensor
        scale = float(want.detach().abs().max())
        assert scale > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)
        (want * want).sum().backward()
        (got * got).sum().backward()
        # round-off is relative to the largest gradient: a gradient that vanishes in exact arithmetic (the bias of
        # a convolution followed by a batch norm, which removes its invariant part) is float32 noise of that size
        gscale = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
        for (name, p), q in zip(model.named_parameters(), compiled_model.parameters()):
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * gscale,
                                           msg=f"{name} ({'train' if mode else 'eval'})")
    if model.training is False:  # running statistics moved identically
        for (name, b), c in zip(model.named_buffers(), compiled_model.buffers()):
            if b.is_floating_point():
                torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-6, msg=name)


FULL = os.environ.get("ESCNN_TENSOR_TEST_COMPILE") == "full"
full_only = pytest.mark.skipif(
    not FULL, reason="compiling takes minutes on a small CPU; set ESCNN_TENSOR_TEST_COMPILE=full"
)
ONE_PER_ARCHITECTURE = {
    "resnet": dict(norm="batch", nonlinearity="gated_quadratic"),
    "unet": dict(norm="batch", nonlinearity="gated"),
    "dilresnet": dict(norm="layer", nonlinearity="gated"),
}


@pytest.mark.parametrize("arch", list(MODELS))
def test_dynamo_captures_one_graph(arch):
    torch._dynamo.reset()
    compare(build(arch, **ONE_PER_ARCHITECTURE[arch]), "eager")


def test_aot_autograd_traces_forward_and_backward():
    torch._dynamo.reset()
    compare(build("resnet", norm="batch"), "aot_eager", modes=(True,))


@full_only
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_full_compile_in_both_modes(arch, backend):
    torch._dynamo.reset()
    compare(build(arch, **ONE_PER_ARCHITECTURE[arch]), backend)
