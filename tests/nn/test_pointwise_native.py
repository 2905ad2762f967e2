"""``PointwiseNonLinearity`` by its C kernel (``escnn_tensor/nn/csrc/pointwise_kernels.h``, ``_PointwiseNative``)
against its PyTorch formulation (``ESCNN_TENSOR_NATIVE=0``): outputs and input gradients in float64 to 1e-12 and
float32 to 1e-5 relative, for every activation the kernel implements, both ``nonscalars`` rules, a threshold, 2D and
3D fields of every kind (true and pseudo scalars, vectors, 2-tensors, symmetric tensors); zero and tiny fields (the
clamped norms), NaN kept; gradcheck and gradgradcheck (second derivatives through the PyTorch formulation); the
layer with its kernel is exactly equivariant over every group element; where the kernel is not used."""
import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor import _native
from escnn_tensor.nn import PointwiseNonLinearity
from escnn_tensor.nn import _native_kernels as kn
from escnn_tensor.testing import assert_equivariant, random_input

pytestmark = pytest.mark.skipif(_native._compiler() is None or not _native.enabled(),
                                reason="no C compiler (or ESCNN_TENSOR_NATIVE=0): the native kernel is not built")

FIELDS = {
    2: [(0, 1, 2), (1, 1, 2), (2, 1, 1), (0, -1, 2), (2, -1, 1, "symmetric"), (1, -1, 1)],
    3: [(0, 1, 1), (1, -1, 1), (2, 1, 1, "symmetric_traceless"), (0, -1, 1), (2, 1, 1)],
}


def layer_and_input(d, function="tanh", nonscalars="norm", threshold=0.3, dtype=torch.float64, seed=0):
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), FIELDS[d])
    layer = PointwiseNonLinearity(ft, function=function, threshold=threshold, nonscalars=nonscalars).to(dtype)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((3, ft.size) + (5 if d == 2 else 3,) * d, generator=g, dtype=torch.float64).to(dtype)
    return layer, x


def outputs(layer, x, native, monkeypatch):
    """``(z, dz/dx . g)`` with the kernel (checked to be the path taken) or the PyTorch formulation."""
    if not native:
        monkeypatch.setenv("ESCNN_TENSOR_NATIVE", "0")
    x = x.clone().requires_grad_(True)
    z = layer(GeometricTensor(x, layer.in_type)).tensor
    assert (type(z.grad_fn).__name__ == "_PointwiseNativeBackward") == native
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(z.dtype)
    (gx,) = torch.autograd.grad(z, x, g)
    monkeypatch.delenv("ESCNN_TENSOR_NATIVE", raising=False)
    return z, gx


def assert_same(got, want, dtype):
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, e in zip(got, want):
        assert a.dtype == e.dtype and a.shape == e.shape
        err = ((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()
        assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nonscalars", ["norm", "unchanged"])
@pytest.mark.parametrize("function", sorted(kn.ACTIVATION_ID))
@pytest.mark.parametrize("d", [2, 3])
def test_native_equals_pytorch(d, function, nonscalars, dtype, monkeypatch):
    layer, x = layer_and_input(d, function, nonscalars, dtype=dtype)
    want = outputs(layer, x, False, monkeypatch)
    assert_same(outputs(layer, x, True, monkeypatch), want, dtype)
    assert want[1].abs().max() > 0


def test_zero_tiny_and_nan_fields(monkeypatch):
    """A zero vector (clamped norm), a vector of norm below eps, a zero pseudoscalar: finite, equal to the PyTorch
    formulation; a NaN stays NaN."""
    layer, x = layer_and_input(2, "elu", threshold=0.0)
    x[0, 2:4] = 0.0  # the first vector field (channels 2, 3), everywhere in sample 0
    x[1, 2:4] = 1e-8  # norm below eps = 1e-6
    x[2, 8] = 0.0  # a pseudoscalar
    got, want = outputs(layer, x, True, monkeypatch), outputs(layer, x, False, monkeypatch)
    assert all(torch.isfinite(t).all() for t in got)
    assert_same(got, want, torch.float64)
    x[1, 0, 2, 2] = float("nan")
    z = layer(GeometricTensor(x, layer.in_type)).tensor
    monkeypatch.setenv("ESCNN_TENSOR_NATIVE", "0")
    ref = layer(GeometricTensor(x, layer.in_type)).tensor
    assert torch.isnan(z).any() and torch.equal(torch.isnan(z), torch.isnan(ref))


@pytest.mark.parametrize("d", [2, 3])
def test_native_gradcheck_and_gradgradcheck(d):
    layer, x = layer_and_input(d, "silu")
    x = x[:2].clone().requires_grad_(True)
    f = lambda t: layer(GeometricTensor(t, layer.in_type)).tensor  # noqa: E731
    assert type(f(x).grad_fn).__name__ == "_PointwiseNativeBackward"
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("d", [2, 3])
def test_native_layer_is_equivariant(d):
    layer, _ = layer_and_input(d, "gelu")
    x = random_input(layer.in_type, spatial=5 if d == 2 else 3, batch=2)
    probe = GeometricTensor(x.tensor.clone().requires_grad_(True), x.type)
    assert type(layer(probe).tensor.grad_fn).__name__ == "_PointwiseNativeBackward"  # the kernel's path
    assert_equivariant(layer, x)


def test_where_the_kernel_is_not_used(monkeypatch):
    layer, x = layer_and_input(2)

    def run(lay, t):
        return type(lay(GeometricTensor(t.requires_grad_(True), lay.in_type)).tensor.grad_fn).__name__

    assert run(layer, x.clone()) == "_PointwiseNativeBackward"
    softplus = PointwiseNonLinearity(layer.in_type, function="softplus", nonscalars="norm").double()
    assert run(softplus, x.clone()) != "_PointwiseNativeBackward"  # an activation the kernel does not implement
    assert run(layer.float(), x.float()) == "_PointwiseNativeBackward"
    assert run(layer.bfloat16(), x.bfloat16()) != "_PointwiseNativeBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert run(layer.float(), x.float()) != "_PointwiseNativeBackward"
    monkeypatch.setenv("ESCNN_TENSOR_NATIVE", "0")
    assert run(layer.double(), x.clone()) != "_PointwiseNativeBackward"


def test_a_layer_pickled_before_the_kernel_still_runs(monkeypatch):
    """A module unpickled from before the kernel has no ``_native_fields`` buffer: it runs its PyTorch formulation."""
    layer, x = layer_and_input(2)
    want = layer(GeometricTensor(x, layer.in_type)).tensor
    del layer._buffers["_native_fields"]
    z = layer(GeometricTensor(x.clone().requires_grad_(True), layer.in_type)).tensor
    assert type(z.grad_fn).__name__ != "_PointwiseNativeBackward"
    torch.testing.assert_close(z, want, rtol=1e-13, atol=1e-13)
