"""The eval-mode caches of GeometricConv, GeometricConvTransposed (dense kernel) and TensorProductNonLinearity
(expanded quadratic coefficients) are keyed on the parameters' identity, storage and autograd version counters (no
value is read, so no host synchronisation): every way of changing the weights or the bias that autograd sees, after
a cached eval forward, gives the output of a fresh expansion (the convolutions' export(), which expands the current parameters into
a plain torch conv; for the tensor product a deep copy run in train mode, where nothing is cached). Plus the clear
errors shared by these layers."""
import copy
import io

import pytest
import torch
from torch.nn import Parameter
from torch.nn.utils import vector_to_parameters

import escnn_tensor as et
from escnn_tensor.nn._conv import GeometricConv
from escnn_tensor.nn._conv_transposed import GeometricConvTransposed
from escnn_tensor.nn._tensor_product import TensorProductNonLinearity
from escnn_tensor.testing import random_input

GS2 = et.hyperoctahedral_gspace(2)
FIN = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1), (2, 1, 1)])
FOUT = et.tensor_type(GS2, [(2, 1, 1), (0, 1, 2), (1, -1, 1)])

LAYERS = {
    "conv": lambda: GeometricConv(FIN, FOUT, 3, padding=1),
    "transposed": lambda: GeometricConvTransposed(FIN, FOUT, 2, stride=2),
    "tensor_product": lambda: TensorProductNonLinearity(FIN, FOUT, bias=True),
}
KIND = {GeometricConv: "conv", GeometricConvTransposed: "transposed", TensorProductNonLinearity: "tensor_product"}
CONVS = ["conv", "transposed"]


def make(kind, seed=0):
    layer = LAYERS[kind]()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weights.copy_(torch.randn(layer.weights.shape, generator=g))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    return layer.eval()


def x_like(layer, seed=1):
    return random_input(FIN, 5, 2, layer.weights.dtype, torch.Generator().manual_seed(seed))


def cached_forward(layer, x):
    with torch.no_grad():
        return layer(x).tensor.clone()


def fresh_reference(layer, x):
    """The output of a fresh expansion: export() expands the current parameters into a torch conv; the tensor
    product has no export, and a deep copy of it in train mode expands its current parameters at every call."""
    with torch.no_grad():
        if isinstance(layer, TensorProductNonLinearity):
            return copy.deepcopy(layer).train()(x).tensor
        return layer.export()(x.tensor)


def check_not_stale(layer, change, x=None):
    x = x_like(layer) if x is None else x
    before = cached_forward(layer, x)  # fills the cache
    cached_forward(layer, x)
    x = change(layer) or x
    after = cached_forward(layer, x)
    if after.dtype == before.dtype:  # (after .double(): a stale float32 kernel could not even give float64 output)
        assert not torch.allclose(after, before), "the change must change the output for the test to mean anything"
    assert torch.equal(after, fresh_reference(layer, x))
    assert not layer.training


# one function per way of changing the parameters; each returns a new input when the dtype changed


def weights_data_mul(layer):
    layer.weights.data.mul_(2)  # .data has its own version counter: _version of the parameter does not move


def bias_data_add(layer):
    layer.bias.data.add_(1)


def weights_no_grad_mul(layer):
    with torch.no_grad():
        layer.weights.mul_(2)


def bias_no_grad_add(layer):
    with torch.no_grad():
        layer.bias.add_(1)


def no_grad_in_place(layer):
    with torch.no_grad():
        layer.weights.add_(0.5)
        layer.bias.mul_(-1)


def data_assignment(layer):
    layer.weights.data = layer.weights.data * -3  # new storage behind the same Parameter


def new_parameter(layer):
    layer.weights = Parameter(layer.weights.detach() * 0.5 + 1)


def new_bias_parameter(layer):
    layer.bias = Parameter(layer.bias.detach() + 2)


def load_state_dict(layer):
    other = LAYERS[KIND[type(layer)]]()
    buf = io.BytesIO()
    torch.save(other.state_dict(), buf)
    buf.seek(0)
    layer.load_state_dict(torch.load(buf))


def vector_to_params(layer):
    vec = torch.nn.utils.parameters_to_vector(layer.parameters())
    vector_to_parameters(vec.flip(0), layer.parameters())


def optimiser_step(layer):
    # gradients set from outside (e.g. all-reduced), so no forward of this layer runs between cache and step
    g = torch.Generator().manual_seed(5)
    for p in layer.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    torch.optim.SGD(layer.parameters(), lr=0.1).step()


def adam_steps_after_backward(layer):
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for seed in range(2):
        opt.zero_grad()
        (layer(x_like(layer, seed=seed)).tensor.sin()).sum().backward()  # eval mode, graph through the weights
        opt.step()


def to_double(layer):
    layer.double()
    return x_like(layer)


def to_dtype_round_trip(layer):
    with torch.no_grad():
        layer.weights.mul_(1.5)
    layer.to(torch.float64).to(dtype=torch.float32)
    return x_like(layer)


def copy_from_other(layer):
    with torch.no_grad():
        layer.weights.copy_(torch.randn(layer.weights.shape, generator=torch.Generator().manual_seed(9)))


WAYS = [
    weights_no_grad_mul,
    bias_no_grad_add,
    no_grad_in_place,
    data_assignment,
    new_parameter,
    new_bias_parameter,
    load_state_dict,
    vector_to_params,
    optimiser_step,
    adam_steps_after_backward,
    to_double,
    to_dtype_round_trip,
    copy_from_other,
]


@pytest.mark.parametrize("way", WAYS, ids=[w.__name__ for w in WAYS])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_cache_is_never_stale(kind, way):
    check_not_stale(make(kind), way)


@pytest.mark.parametrize("kind", CONVS)
def test_cache_is_reused_while_unchanged_and_dropped_by_train(kind):
    layer = make(kind)
    with torch.no_grad():
        k1, b1 = layer._kernel_and_bias()
        k2, b2 = layer._kernel_and_bias()
    assert k1 is k2 and b1 is b2  # no re-expansion while the parameters are untouched
    with torch.no_grad():
        layer.weights.add_(0.0)  # an in-place edit (version counter moves), even of the same values: rebuilt
        k3 = layer._kernel_and_bias()[0]
        assert k3 is not k1 and torch.equal(k3, k1) and layer._kernel_and_bias()[0] is k3
        k1 = k3
    layer.train()
    layer.eval()
    with torch.no_grad():
        assert layer._kernel_and_bias()[0] is not k1


def test_tensor_product_expansion_is_reused_while_unchanged_and_dropped_by_train():
    layer = make("tensor_product")
    with torch.no_grad():
        c1, b1 = layer._expanded()
        c2, b2 = layer._expanded()
    assert c1 is c2 and b1 is b2  # no re-expansion while the parameters are untouched
    with torch.no_grad():
        layer.weights.add_(0.0)  # an in-place edit: rebuilt (same values)
        c1 = layer._expanded()[0]
        assert c1 is not c2 and torch.equal(c1, c2) and layer._expanded()[0] is c1
        layer.bias.add_(1.0)  # only the bias changed: the cache is rebuilt all the same
        c3, b3 = layer._expanded()
    assert c3 is not c1 and torch.equal(b3, layer.expand_parameters()[1].detach()) and not torch.equal(b3, b1)
    layer.train()
    layer.eval()
    with torch.no_grad():
        assert layer._expanded()[0] is not c3
    with torch.enable_grad():  # gradients wanted in eval mode: expanded with a graph, never from the cache
        c4, _ = layer._expanded()
    assert c4.grad_fn is not None


@pytest.mark.parametrize("kind", list(LAYERS))
def test_nan_weights_are_not_hidden_by_the_cache(kind):
    layer = make(kind)
    x = x_like(layer)
    cached_forward(layer, x)
    with torch.no_grad():
        layer.weights[0] = float("nan")
    assert torch.isnan(cached_forward(layer, x)).any()


@pytest.mark.parametrize("way", [weights_data_mul, bias_data_add], ids=["weights_data_mul", "bias_data_add"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_edits_through_data_are_seen_after_eval_again(kind, way):
    """In-place edits through ``.data`` bypass autograd's version counter (documented in ExpansionCache): the cache
    does not see them, and ``layer.eval()`` drops it, after which the output is the fresh expansion's."""
    layer = make(kind)
    x = x_like(layer)
    before = cached_forward(layer, x)
    way(layer)
    assert torch.equal(cached_forward(layer, x), before)  # the documented limit: a value-blind cache
    layer.eval()
    after = cached_forward(layer, x)
    assert not torch.allclose(after, before) and torch.equal(after, fresh_reference(layer, x))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_cache_reads_no_values_and_works_on_meta(kind):
    """The staleness check reads no parameter values: on the meta device (where reading one raises) the eval-mode
    forward runs twice from one cache, and an optimiser-style in-place edit still rebuilds it."""
    layer = make(kind).to(torch.device("meta"))
    x = type(x_like(layer))(torch.empty(x_like(layer).tensor.shape, device="meta"), FIN)
    with torch.no_grad():
        first = layer._expanded()[0] if kind == "tensor_product" else layer._kernel_and_bias()[0]
        layer(x)
        again = layer._expanded()[0] if kind == "tensor_product" else layer._kernel_and_bias()[0]
        assert again is first
        layer.weights.add_(1.0)
        rebuilt = layer._expanded()[0] if kind == "tensor_product" else layer._kernel_and_bias()[0]
    assert rebuilt is not first and rebuilt.device.type == "meta"


@pytest.mark.parametrize("kind", list(LAYERS))
def test_kernel_cached_in_inference_mode_serves_input_gradients(kind):
    layer = make(kind).requires_grad_(False)
    x = x_like(layer)
    with torch.inference_mode():
        y = layer(x).tensor.clone()
    xg = x.tensor.clone().requires_grad_(True)
    out = layer(type(x)(xg, x.type)).tensor  # grad enabled, weights frozen: the cache is used, with autograd
    out.sum().backward()
    assert torch.equal(out.detach(), y) and xg.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------------------
# clear errors shared by both layers


@pytest.mark.parametrize("kind", list(LAYERS))
def test_input_dtype_mismatch_names_layer_and_dtypes(kind):
    layer = make(kind)
    name = type(layer).__name__
    x64 = random_input(FIN, 5, 1, torch.float64)
    with pytest.raises(TypeError, match=rf"{name}: input dtype torch.float64 differs from the layer's dtype torch.float32"):
        layer(x64)
    layer.double()
    with pytest.raises(TypeError, match=rf"{name}: input dtype torch.float32 differs from the layer's dtype torch.float64"):
        layer(random_input(FIN, 5, 1, torch.float32))
    assert layer(x64).tensor.dtype == torch.float64


@pytest.mark.parametrize("kind", list(LAYERS))
def test_reset_parameters_rejects_bad_gain(kind):
    layer = make(kind)
    before = layer.weights.detach().clone()
    for gain, exc in [(float("nan"), ValueError), (float("inf"), ValueError), (-1, ValueError), (-0.5, ValueError),
                      ("2", TypeError), (None, TypeError), (False, TypeError), (1j, TypeError)]:
        with pytest.raises(exc, match=r"gain must be a finite real number >= 0, got"):
            layer.reset_parameters(gain=gain)
    assert torch.equal(layer.weights, before)  # nothing half-done
    layer.reset_parameters(gain=4)  # ints are fine
    assert torch.isfinite(layer.weights).all() and not torch.equal(layer.weights, before)
