"""_isolate.py: isolate(module) gives escnn layers their own basis tensors, so casting one network never changes
another; escnn_tensor's own layers never share state."""
import copy
import pickle

import pytest
import torch
from escnn import gspaces
from escnn import nn as enn
from escnn.nn.modules.basismanager import BlocksBasisSampler, SingleBlockBasisExpansion, basisexpansion_singleblock

import escnn_tensor as et
from escnn_tensor.nn import GeometricConv
from escnn_tensor.nn._isolate import isolate
from escnn_tensor.testing import random_input

GS2 = et.hyperoctahedral_gspace(2)
T2 = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1)])
REG2 = enn.FieldType(GS2, [GS2.regular_repr] * 2)
GS3 = gspaces.octaOnR3()
T3 = et.tensor_type(GS3, [(0, 1, 1), (1, 1, 1)])

CASTS = {
    "double": lambda m: m.double(),
    "half": lambda m: m.half(),
    "to(bfloat16)": lambda m: m.to(torch.bfloat16),
    "to(float64)": lambda m: m.to(torch.float64),
}
CAST_DTYPE = {
    "double": torch.float64,
    "half": torch.float16,
    "to(bfloat16)": torch.bfloat16,
    "to(float64)": torch.float64,
}


@pytest.fixture(autouse=True)
def restore_escnn_cache():
    """Tests that cast a network that is not isolated cast escnn's cached bases: give the cache its tensors back."""
    escnn_network()  # every basis these tests use is in the cache before the snapshot
    cache = list(basisexpansion_singleblock._stored_filters.values())
    saved = [(m, dict(m._buffers)) for m in cache]
    yield
    for m, buffers in saved:
        m._buffers.update(buffers)


def escnn_network(seed=0):
    """escnn layers whose bases escnn caches and shares: two R2Conv with the same types, R3Conv, Linear."""
    torch.manual_seed(seed)
    net2 = enn.SequentialModule(
        enn.R2Conv(T2, REG2, 3),
        enn.ReLU(REG2),
        enn.R2Conv(REG2, REG2, 3),
        enn.R2Conv(REG2, REG2, 3),
        enn.R2Conv(REG2, T2, 3),
    )
    net3 = enn.R3Conv(T3, T3, 3)
    g0 = gspaces.no_base_space(GS2.fibergroup)
    lin_t = enn.FieldType(g0, [GS2.fibergroup.regular_representation] * 2)
    lin = enn.Linear(lin_t, lin_t)
    return torch.nn.ModuleDict({"net2": net2, "net3": net3, "lin": lin})


def inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(5)  # (the same values only for the same dtype: use as_double to compare)
    lin_t = enn.FieldType(gspaces.no_base_space(GS2.fibergroup), [GS2.fibergroup.regular_representation] * 2)
    return {
        "net2": random_input(T2, 11, 2, dtype, g),
        "net3": random_input(T3, 5, 1, dtype, g),
        "lin": enn.GeometricTensor(torch.randn(3, lin_t.size, generator=g, dtype=dtype), lin_t),
    }


def as_double(xs):
    return {k: enn.GeometricTensor(x.tensor.double(), x.type) for k, x in xs.items()}


def outputs(net, xs):
    with torch.no_grad():
        return {k: net[k](x).tensor for k, x in xs.items()}


def basis_modules(module):
    """(path, module) of every escnn SingleBlockBasisExpansion, also those named_modules() would skip as duplicates."""
    return [(n, m) for n, m in module.named_modules(remove_duplicate=False) if isinstance(m, SingleBlockBasisExpansion)]


def test_escnn_shares_bases_between_networks_without_isolate():
    """The control: escnn's cached bases are shared, so casting one network breaks another (the bug isolate fixes;
    if escnn stops sharing, this test fails and isolate may be retired)."""
    a, b = escnn_network(0), escnn_network(1)
    shared = {id(m) for _, m in basis_modules(a)} & {id(m) for _, m in basis_modules(b)}
    assert shared
    a.double()
    with pytest.raises(RuntimeError, match="expected|dtype|Double|Float"):
        outputs(b, inputs())


@pytest.mark.parametrize("which", ["cast one isolated", "other one isolated", "cast one isolated, copy_tensors"])
@pytest.mark.parametrize("cast", list(CASTS))
def test_isolated_network_cast_leaves_the_other_unchanged(cast, which):
    a, b = escnn_network(0), escnn_network(1)
    xs = inputs()
    ya, yb = outputs(a, xs), outputs(b, xs)
    isolate(b if which == "other one isolated" else a, copy_tensors=which.endswith("copy_tensors"))
    CASTS[cast](a)
    # b: still float32, same output
    assert all(t.dtype == torch.float32 for t in b.buffers() if t.is_floating_point())
    assert all(torch.equal(y, yb[k]) for k, y in outputs(b, xs).items())
    # a: every floating tensor of a was cast, and in float64 it computes what it computed in float32
    want = CAST_DTYPE[cast]
    assert all(t.dtype == want for t in list(a.parameters()) + list(a.buffers()) if t.is_floating_point())
    if want == torch.float64:
        for k, y in outputs(a, as_double(xs)).items():
            torch.testing.assert_close(y.float(), ya[k], rtol=1e-4, atol=1e-5)


def test_isolate_keeps_values_parameters_and_state_dict_keys():
    net = escnn_network(0)
    xs = inputs()
    y = outputs(net, xs)
    params = list(net.parameters())
    keys = list(net.state_dict())
    assert isolate(net) is net
    assert all(p is q for p, q in zip(params, net.parameters()))
    assert list(net.state_dict()) == keys
    assert all(torch.equal(v, y[k]) for k, v in outputs(net, xs).items())
    for mode in ("eval", "train"):
        getattr(net, mode)()
        assert all(torch.equal(v, y[k]) for k, v in outputs(net, xs).items())


def test_isolate_is_idempotent_and_gives_every_layer_its_own_module():
    net = escnn_network(0)
    isolate(net)
    mods = basis_modules(net)
    assert len({id(m) for _, m in mods}) == len(mods)  # the two R2Conv(REG2, REG2) no longer share one module
    before = [id(m) for _, m in net.named_modules(remove_duplicate=False)]
    isolate(net)
    assert [id(m) for _, m in net.named_modules(remove_duplicate=False)] == before


def test_casting_one_layer_leaves_its_twin_alone():
    net = escnn_network(0)["net2"]
    isolate(net)
    net[2].double()  # net[2] and net[3] are both R2Conv(REG2, REG2): escnn gave them one basis module
    assert all(t.dtype == torch.float64 for t in net[2].buffers() if t.is_floating_point())
    assert all(t.dtype == torch.float32 for t in net[3].buffers() if t.is_floating_point())
    x = random_input(REG2, 9, 1, torch.float32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        net[3](x)


def rr_basis(layer):
    return layer._basisexpansion.get_submodule("block_expansion_('regular', 'regular')")


def test_isolate_copies_no_tensor_by_default():
    """Private module objects, same storage as escnn's cache: nothing is copied until a cast replaces it."""
    ref = rr_basis(escnn_network(1)["net2"][2])  # escnn's cached module
    net = escnn_network(0)["net2"]
    isolate(net)
    b2, b3 = rr_basis(net[2]), rr_basis(net[3])
    assert b2 is not b3 and b2 is not ref
    assert b2.sampled_basis.data_ptr() == b3.sampled_basis.data_ptr() == ref.sampled_basis.data_ptr()


def test_copy_tensors_clones_once_per_network():
    ref = rr_basis(escnn_network(1)["net2"][2])
    net = escnn_network(0)["net2"]
    isolate(net)
    isolate(net, copy_tensors=True)  # upgrades the private modules of the first call
    b2, b3 = rr_basis(net[2]), rr_basis(net[3])
    assert b2 is not b3 and b2.sampled_basis is b3.sampled_basis  # one clone for the two layers that shared
    assert b2.sampled_basis.data_ptr() != ref.sampled_basis.data_ptr()
    assert torch.equal(b2.sampled_basis, ref.sampled_basis)
    before = [id(m) for _, m in net.named_modules(remove_duplicate=False)]
    isolate(net, copy_tensors=True)
    isolate(net)
    assert [id(m) for _, m in net.named_modules(remove_duplicate=False)] == before


@pytest.mark.parametrize("copy_tensors", [False, True])
def test_writes_into_the_basis_reach_other_networks_unless_copied(copy_tensors):
    """load_state_dict writes into the buffers: with shared storage (the default) other networks see it."""
    a, b = escnn_network(0)["net2"], escnn_network(1)["net2"]
    x = random_input(T2, 9, 1, torch.float32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        yb = b(x).tensor
    isolate(a, copy_tensors=copy_tensors)
    state = a.state_dict()
    key = next(k for k in state if k.endswith("sampled_basis"))
    state[key] = state[key] * 2
    a.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(b(x).tensor, yb) == copy_tensors


def test_copy_tensors_refuses_above_the_memory_limit(monkeypatch):
    import escnn_tensor.representations as representations

    net = escnn_network(0)
    monkeypatch.setattr(representations, "MEMORY_LIMIT_BYTES", 1000)
    with pytest.raises(ValueError, match=r"isolate\(copy_tensors=True\) of ModuleDict would need about .*KiB"):
        isolate(net, copy_tensors=True)
    isolate(net)  # without copies there is nothing to estimate


def test_copies_are_independent_of_the_cache():
    """Unpickled and deep-copied networks own their bases already (and isolate leaves them as they are)."""
    for make_copy in (copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))):
        a, b = escnn_network(0), escnn_network(1)
        xs = inputs()
        yb = outputs(b, xs)
        c = make_copy(a)
        c.double()
        assert all(torch.equal(y, yb[k]) for k, y in outputs(b, xs).items())
        ya = outputs(a, xs)
        for k, y in outputs(c, as_double(xs)).items():
            torch.testing.assert_close(y.float(), ya[k], rtol=1e-4, atol=1e-5)


def test_point_samplers_are_isolated_with_their_kernel_bases():
    """escnn's point-convolution samplers (SingleBlockBasisSampler) are cached too, with cached KernelBasis
    submodules holding buffers: the whole subtree becomes private."""
    gs = gspaces.rot2dOnR2(4)
    r = gs.regular_repr

    def sampler():
        return BlocksBasisSampler(
            [r, r],
            [r],
            lambda i, o: gs.build_kernel_basis(i, o, sigma=[0.6, 0.6], rings=[0.0, 1.0], maximum_frequency=3),
        )

    a, b = sampler(), sampler()
    assert {id(m) for m in a.modules()} & {id(m) for m in b.modules()}
    g = torch.Generator().manual_seed(0)
    w, pts = torch.randn(a.dimension(), generator=g), torch.randn(6, 2, generator=g)
    with torch.no_grad():
        yb = b(w, pts)
    isolate(a)
    assert not {id(m) for m in a.modules()} & {id(m) for m in b.modules()}
    with torch.no_grad():
        assert torch.equal(a(w, pts), yb)
    a.double()  # (escnn's samplers do not run in float64 themselves; what matters is that b still runs)
    assert all(t.dtype == torch.float64 for t in a.buffers() if t.is_floating_point())
    with torch.no_grad():
        assert torch.equal(b(w, pts), yb)


def test_isolate_rejects_non_modules():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got list"):
        isolate([enn.R2Conv(T2, T2, 3)])


# ------------------------------------------------------------------------------------------------------------------
# escnn_tensor's own layers: never shared


def geometric_network(seed):
    torch.manual_seed(seed)
    t = et.tensor_type(GS2, [(0, 1, 2), (1, 1, 1), (2, -1, 1)])
    return enn.SequentialModule(
        GeometricConv(T2, t, 3, padding=1), GeometricConv(t, t, 3, padding=1), GeometricConv(t, T2, 3)
    )


@pytest.mark.parametrize("cast", list(CASTS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_geometric_conv_networks_share_nothing(cast, mode):
    a, b = geometric_network(0), geometric_network(1)
    a.train(mode == "train"), b.train(mode == "train")
    x = random_input(T2, 9, 2, torch.float32, torch.Generator().manual_seed(2))
    with torch.no_grad():
        yb = b(x).tensor
    tensors_a = {t.data_ptr() for t in list(a.parameters()) + list(a.buffers())}
    tensors_b = {t.data_ptr() for t in list(b.parameters()) + list(b.buffers())}
    assert not tensors_a & tensors_b
    CASTS[cast](a)
    assert all(t.dtype == CAST_DTYPE[cast] for t in list(a.parameters()) + list(a.buffers()) if t.is_floating_point())
    assert all(t.dtype == torch.float32 for t in list(b.parameters()) + list(b.buffers()) if t.is_floating_point())
    with torch.no_grad():
        assert torch.equal(b(x).tensor, yb)
