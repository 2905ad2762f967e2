"""The C kernel of the fused TensorBatchNorm -> GatedNonLinearity node (``csrc/norm_gate_kernels.h``, run by
``_NormGateNative``; test_norm_gate.py runs its float64 cases on both formulations) against the two layers run one
after the other: outputs, running statistics and every first derivative, in float64 to 1e-12 and float32 to 1e-5
relative, for every activation it implements, 2D and 3D mixed types (with and without true scalars, fields without
an invariant mean), with and without affine parameters and gate bias, odd pixel counts, NaN kept; gradcheck, and
gradgradcheck through the traced references; a geometric ResNet that uses it is exactly equivariant in training over
every group element. Where it is not used (turned off,
autocast, half precision, the meta device, large inputs on many threads) and what a failed build does (one warning,
the PyTorch formulation, same values); the build cache is reused and leaves no temporary files."""
import copy
import warnings

import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor import _native
from escnn_tensor.models import ResNet
from escnn_tensor.nn import GatedNonLinearity, TensorBatchNorm
from escnn_tensor.nn import _native_kernels as kn
from escnn_tensor.nn import _norm_gate as ng
from escnn_tensor.testing import assert_equivariant, random_input

pytestmark = pytest.mark.skipif(_native._compiler() is None or not _native.enabled(),
                                reason="no C compiler (or ESCNN_TENSOR_NATIVE=0): the native kernel is not built")

CASES = [
    (2, [(0, 1, 2), (1, 1, 2), (2, 1, 1), (0, -1, 1)]),
    (2, [(1, -1, 2), (0, -1, 1), (2, 1, 1)]),  # no true scalars
    (2, [(1, 1, 3), (2, -1, 2)]),  # no invariant component of the mean (no bias, nothing centred)
    (3, [(0, 1, 2), (1, 1, 1), (2, -1, 1), (0, -1, 1)]),
]


def pair(d, fields, function="elu", affine=True, bias=True, momentum=0.1, dtype=torch.float64, shape=(3, 5)):
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), fields)
    norm = TensorBatchNorm(ft, affine=affine, momentum=momentum).to(dtype)
    gate = GatedNonLinearity(ft, function=function, bias=bias).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in list(norm.parameters()) + list(gate.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7 + (1.0 if p.dim() == 1 else 0.0))
    batch, side = shape
    x = 2.0 + torch.randn((batch, ft.size) + (side,) * d, generator=g, dtype=torch.float64)  # a mean to remove
    return norm, gate, x.to(dtype)


def run(norm, gate, x, native):
    """Outputs, gradients (input and every parameter) and running statistics: the fused node with the C kernel
    (``native``, checked to be the path taken) or the two layers."""
    x = x.clone().requires_grad_(True)
    params = list(norm.parameters()) + list(gate.parameters())
    if native:
        assert ng._use_native(x, norm, gate)
        z = ng.batch_norm_gate(norm, gate, x)
        assert type(z.grad_fn).__name__ == "_NormGateNativeBackward"
    else:
        z = gate(norm(GeometricTensor(x, norm.in_type))).tensor
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(z.dtype)
    grads = torch.autograd.grad(z, [x] + params, g)
    return z, grads, (norm.running_mean.clone(), norm.running_var.clone())


def assert_same(got, ref, dtype):
    """float64 to 1e-12, float32 to 1e-5, relative to each tensor's largest entry."""
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, e in zip([got[0], *got[1], *got[2]], [ref[0], *ref[1], *ref[2]]):
        assert a.dtype == e.dtype and a.shape == e.shape
        scale = e.abs().max().clamp_min(1e-30)
        err = ((a - e).abs().max() / scale).item()
        assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("function", sorted(kn.ACTIVATION_ID))
def test_native_equals_layers_every_activation_float32(function):  # float64: test_norm_gate.py
    d, fields = CASES[0]
    dtype = torch.float32
    norm, gate, x = pair(d, fields, function, dtype=dtype)
    ref = run(copy.deepcopy(norm), copy.deepcopy(gate), x, native=False)
    got = run(norm, gate, x, native=True)
    assert_same(got, ref, dtype)
    assert all(e.abs().max() > 0 for e in ref[1])


@pytest.mark.parametrize("affine,bias,momentum", [(True, True, 0.1), (False, False, None), (True, False, 0.3)])
@pytest.mark.parametrize("d,fields", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_equals_layers(d, fields, affine, bias, momentum, dtype):
    norm, gate, x = pair(d, fields, "silu", affine, bias, momentum, dtype=dtype, shape=(4, 6 if d == 2 else 3))
    x[0, :, 0] = 0.0
    ref_norm, ref_gate = copy.deepcopy(norm), copy.deepcopy(gate)
    for _ in range(2):  # twice: running statistics after two updates
        ref = run(ref_norm, ref_gate, x, native=False)
        got = run(norm, gate, x, native=True)
    assert_same(got, ref, dtype)
    assert int(norm.num_batches_tracked) == 2


def test_native_odd_pixel_counts_and_one_sample():
    """Pixel counts that are not a multiple of the kernel's 8-wide sums, a batch of one."""
    for shape in [(1, 7), (2, 9), (5, 1)]:
        norm, gate, x = pair(*CASES[0], "gelu", shape=shape)
        ref = run(copy.deepcopy(norm), copy.deepcopy(gate), x, native=False)
        assert_same(run(norm, gate, x, native=True), ref, torch.float64)


def test_native_nan_input_gives_nan():
    """A NaN in the input is not hidden (the kernel keeps IEEE semantics): the output is NaN, as the layers'."""
    for channel in (0, 5):  # a true scalar, a vector's component
        norm, gate, x = pair(*CASES[0])
        x[1, channel, 2, 2] = float("nan")
        z = ng.batch_norm_gate(norm, gate, x)
        ref = gate(copy.deepcopy(norm)(GeometricTensor(x, norm.in_type))).tensor
        assert torch.isnan(z).any() and torch.equal(torch.isnan(z), torch.isnan(ref))


@pytest.mark.parametrize("d,fields", CASES)
def test_native_gradcheck_and_gradgradcheck(d, fields):
    norm, gate, x = pair(d, fields, "elu", shape=(2, 3))
    x = x.clone().requires_grad_(True)
    f = lambda x, w, b, gw, gb: ng._NormGateNative.apply(x, w, b, gw, gb, norm, gate)[0]  # noqa: E731
    args = (x, norm.weight, norm.bias, gate.gate_weight, gate.gate_bias)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize("d", [2, 3])
def test_geometric_resnet_with_native_pairs_is_equivariant_in_training(d, monkeypatch):
    calls = []
    forward = ng._NormGateNative.forward
    monkeypatch.setattr(ng._NormGateNative, "forward", staticmethod(lambda *a: calls.append(1) or forward(*a)))
    gs = et.hyperoctahedral_gspace(d)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    torch.manual_seed(0)
    model = ResNet(in_type, out_type, "geometric", width=2, num_blocks=1, norm="batch",
                   nonlinearity="gated").double().train()
    assert_equivariant(model, random_input(in_type, spatial=6 if d == 2 else 4, batch=3))
    assert len(calls) >= 5  # its 5 pairs, on every transformed input


def test_where_the_native_kernel_is_not_used(monkeypatch):
    norm, gate, x = pair(*CASES[0])
    assert ng._use_native(x, norm, gate)
    monkeypatch.setenv("ESCNN_TENSOR_NATIVE", "0")
    assert not ng._use_native(x, norm, gate)
    ref = gate(copy.deepcopy(norm)(GeometricTensor(x, norm.in_type))).tensor
    z = ng.batch_norm_gate(copy.deepcopy(norm), gate, x.requires_grad_(True))
    assert type(z.grad_fn).__name__ == "_NormGateBackward"  # the PyTorch formulation
    torch.testing.assert_close(z, ref, rtol=1e-13, atol=1e-13)
    monkeypatch.delenv("ESCNN_TENSOR_NATIVE")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ng._use_native(x, norm, gate)
    assert not ng._use_native(x.to("meta"), copy.deepcopy(norm).to("meta"), copy.deepcopy(gate).to("meta"))
    assert not ng._use_native(x.bfloat16(), copy.deepcopy(norm).bfloat16(), copy.deepcopy(gate).bfloat16())
    assert not ng._use_native(x.float(), norm, gate)  # float32 input, float64 layers
    assert not ng._use_native(x, norm, GatedNonLinearity(norm.in_type, function="softplus").double())
    big = torch.zeros((1, norm.in_type.size, 1, kn.MAX_VALUES_THREADED // norm.in_type.size + 1),
                      dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert not ng._use_native(big, norm, gate)
        assert ng._use_native(x, norm, gate)
        torch.set_num_threads(2)
        assert ng._use_native(big, norm, gate)
    finally:
        torch.set_num_threads(threads)


def test_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setattr(kn, "_FUNCTIONS", {})
    monkeypatch.setenv("ESCNN_TENSOR_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    norm, gate, x = pair(*CASES[0])
    with pytest.warns(RuntimeWarning, match=r"native kernel 'kernels.c' unavailable \(no C compiler found"):
        assert not ng._use_native(x, norm, gate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert not ng._use_native(x, norm, gate)
        ref = gate(copy.deepcopy(norm)(GeometricTensor(x, norm.in_type))).tensor
        torch.testing.assert_close(ng.batch_norm_gate(norm, gate, x), ref, rtol=1e-13, atol=1e-13)
    assert not any(tmp_path.rglob("*.so"))


def test_build_is_cached_and_atomic(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setenv("ESCNN_TENSOR_CACHE", str(tmp_path))
    lib = _native.load(kn.SOURCE, kn.ABI)
    assert lib is not None and lib.etn_abi_version() == kn.ABI
    (built,) = (tmp_path / "native").iterdir()  # one library, no temporary file left
    assert built.name.startswith("kernels-") and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    monkeypatch.setattr(_native, "_LOADED", {})  # as a new process would
    assert _native.load(kn.SOURCE, kn.ABI) is not None
    assert [p.name for p in (tmp_path / "native").iterdir()] == [built.name] and built.stat().st_mtime_ns == stamp


def test_library_of_another_calling_convention_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setenv("ESCNN_TENSOR_CACHE", str(tmp_path))
    with pytest.warns(RuntimeWarning, match=f"calling convention {kn.ABI}, expected {kn.ABI + 1}"):
        assert _native.load(kn.SOURCE, kn.ABI + 1) is None
