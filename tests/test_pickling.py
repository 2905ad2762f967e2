"""_pickling.py: escnn groups, elements, gspaces, representations and FieldTypes pickle and copy; whole networks of
escnn_tensor and escnn layers round-trip through pickle, torch.save/load and deepcopy (train and eval mode, 2D and
3D), give identical outputs and keep training; a model trained one step in a spawned process equals the same step
done here."""
import copy
import gc
import io
import pickle
import queue as _queue
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from escnn import group as egroup
from escnn import gspaces
from escnn import nn as enn

import escnn_tensor as et
from escnn_tensor import _pickling
from escnn_tensor import groups as groups_module
from escnn_tensor.models import MODELS
from escnn_tensor.nn import (
    AvgPool,
    GatedNonLinearity,
    ChangeOfBasis,
    GatedQuadratic,
    GeometricConv,
    GeometricConvTransposed,
    NormMaxPool,
    PointwiseNonLinearity,
    TensorBatchNorm,
    TensorLayerNorm,
    TensorProductNonLinearity,
    Upsample,
    VectorNeuronNonLinearity,
)
from escnn_tensor.nn._isolate import isolate
from escnn_tensor.testing import random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


# ------------------------------------------------------------------------------------------------------------------
# groups and elements: rebuilt through escnn's cached constructors, so they come back as the same objects

GROUPS = {
    "cyclic(4)": lambda: egroup.cyclic_group(4),
    "cyclic(1)": lambda: egroup.trivial_group(),
    "dihedral(4)": lambda: egroup.dihedral_group(4),
    "dihedral(1)": lambda: egroup.dihedral_group(1),
    "so2": lambda: egroup.so2_group(),
    "o2": lambda: egroup.o2_group(),
    "so3": lambda: egroup.so3_group(),
    "o3": lambda: egroup.o3_group(),
    "octa": lambda: egroup.octa_group(),
    "full_octa": lambda: egroup.full_octa_group(),
    "klein4": lambda: egroup.klein4_group(),
    "full_cylinder_discrete(4)": lambda: egroup.full_cylinder_discrete_group(4),
    "cylinder_discrete(4)": lambda: egroup.cylinder_discrete_group(4),
    "full_cylinder": lambda: egroup.full_cylinder_group(),
}


@pytest.mark.parametrize("name", list(GROUPS))
def test_group_roundtrip_is_the_cached_instance(name):
    G = GROUPS[name]()
    assert roundtrip(G) is G
    assert copy.deepcopy(G) is G and copy.copy(G) is G


@pytest.mark.parametrize("d", [2, 3])
def test_group_elements_roundtrip(d):
    G = GS[d].fibergroup
    elements = list(G.elements)
    back = roundtrip(elements)
    assert back == elements
    assert all(b.group is G for b in back)
    assert [hash(b) for b in back] == [hash(g) for g in elements]
    assert copy.deepcopy(elements[3]) is elements[3]


def test_continuous_group_elements_roundtrip():
    G = egroup.o3_group()
    g = G.sample()
    assert roundtrip(g) == g and roundtrip(g).group is G


# ------------------------------------------------------------------------------------------------------------------
# gspaces: equal, same name and hash, same action

ALL_GSPACES = {
    "B2": lambda: et.hyperoctahedral_gspace(2),
    "B3": lambda: et.hyperoctahedral_gspace(3),
    **SUBGROUP_GSPACES_2D,
    **SUBGROUP_GSPACES_3D,
}


@pytest.mark.parametrize("name", list(ALL_GSPACES))
def test_gspace_roundtrip(name):
    gs = ALL_GSPACES[name]()
    back = roundtrip(gs)
    assert back == gs and back.name == gs.name and hash(back) == hash(gs)
    assert back.fibergroup is gs.fibergroup
    np.testing.assert_array_equal(et.group_matrices(back), et.group_matrices(gs))
    assert copy.deepcopy(gs) is gs


@pytest.mark.parametrize(
    "make",
    [
        lambda: gspaces.rot2dOnR2(N=-1, maximum_frequency=8),
        lambda: gspaces.flipRot3dOnR3(),
        lambda: gspaces.rot2dOnR3(n=-1),
    ],
)
def test_continuous_gspace_roundtrip(make):
    gs = make()
    back = roundtrip(gs)
    assert back == gs and back.name == gs.name and hash(back) == hash(gs) and back.fibergroup is gs.fibergroup


def test_gspace0d_roundtrip():
    gs = gspaces.no_base_space(egroup.full_octa_group())
    back = roundtrip(gs)
    assert isinstance(back, gspaces.GSpace0D) and back == gs and back.fibergroup is gs.fibergroup


def test_legacy_gspace_recipe_is_still_read():
    """escnn_tensor 0.1.0 pickled GeometricConv with (kind, subgroup id) and O(3) elements marked "O(3) element"."""
    gs = GS[3]
    legacy = tuple(("O(3) element", p.value, p.param) if isinstance(p, egroup.GroupElement) else p for p in gs._sg_id)
    assert any(isinstance(p, tuple) for p in legacy)
    assert _pickling.rebuild_gspace(("GSpace3D", legacy)) == gs
    assert _pickling.rebuild_gspace(("GSpace2D", GS[2]._sg_id)) == GS[2]


# ------------------------------------------------------------------------------------------------------------------
# representations


def rep_matrices(rep):
    return np.stack([np.asarray(rep(g), dtype=np.float64) for g in rep.group.elements])


@pytest.mark.parametrize("d,k,parity", [(2, 1, 1), (2, 2, -1), (2, 0, -1), (3, 1, -1), (3, 2, 1)])
def test_tensor_rep_roundtrip_is_the_registered_rep(d, k, parity):
    rep = et.tensor_rep(GS[d], k, parity)
    assert roundtrip(rep) is rep
    assert copy.deepcopy(rep) is rep


def test_tensor_rep_rebuilt_from_its_gspace_when_not_registered():
    """In a fresh process the name is not registered: the rep is rebuilt by tensor_rep on the rebuilt gspace."""
    gs = SUBGROUP_GSPACES_2D["flip_diag"]()
    rep = et.tensor_rep(gs, 2, -1)
    data = pickle.dumps(rep)
    registry = rep.group.representations
    del registry[rep.name]
    try:
        back = pickle.loads(data)
        assert back is not rep and back.name == rep.name and back == rep
        np.testing.assert_array_equal(rep_matrices(back), rep_matrices(rep))
        assert registry[rep.name] is back
    finally:
        registry[rep.name] = rep


def test_escnn_named_reps_and_irreps_roundtrip():
    G = GS[2].fibergroup
    for rep in [G.regular_representation, G.trivial_representation] + list(G.irreps()):
        assert roundtrip(rep) is rep
    G3 = GS[3].fibergroup
    for rep in G3.irreps():
        assert roundtrip(rep) is rep


def test_unregistered_rep_rebuilt_by_value():
    G = GS[2].fibergroup
    rep = egroup.directsum([G.irrep(1, 1), G.irrep(0, 0), G.irrep(1, 2)], name="h5_test_directsum")
    assert rep.name not in G.representations
    back = roundtrip(rep)
    assert back is not rep and back == rep
    np.testing.assert_allclose(rep_matrices(back), rep_matrices(rep), rtol=0, atol=1e-12)
    assert rep.name not in G.representations


def test_registered_named_rep_rebuilt_by_value_when_missing():
    """A quotient representation is registered by escnn under its name; when the name is missing (fresh process)
    it is rebuilt from irreps and change of basis and registered."""
    gs = GS[2]
    rep = gs.quotient_repr((None, 2))
    G = rep.group
    assert G.representations[rep.name] is rep
    data = pickle.dumps(rep)
    assert roundtrip(rep) is rep
    del G.representations[rep.name]
    try:
        back = pickle.loads(data)
        assert back is not rep and back == rep and G.representations[rep.name] is back
        np.testing.assert_allclose(rep_matrices(back), rep_matrices(rep), rtol=0, atol=1e-12)
    finally:
        G.representations[rep.name] = rep


def test_field_types_roundtrip():
    for d in (2, 3):
        gs = GS[d]
        for ft in (
            et.tensor_type(gs, [(0, 1, 2), (1, -1, 1), (2, 1, 1), (0, 1, 1)]),
            enn.FieldType(gs, [gs.regular_repr, gs.trivial_repr] + list(gs.irreps[:2])),
        ):
            back = roundtrip(ft)
            assert back == ft and hash(back) == hash(ft) and back.size == ft.size
            assert back.representations == ft.representations
            assert copy.deepcopy(ft) is ft
            x = random_input(ft, spatial=3)
            assert torch.equal(roundtrip(x).tensor, x.tensor) and roundtrip(x).type == ft


# ------------------------------------------------------------------------------------------------------------------
# refusals: clear errors at pickling time (or at unpickling time when the registry conflicts)


def test_tensor_rep_without_a_live_gspace_is_stored_by_value(monkeypatch):
    """When no gspace of its action is alive, a tensor rep is pickled with its exact matrices and registered again."""
    rep = et.tensor_rep(SUBGROUP_GSPACES_3D["C4v"](), 2, -1)
    monkeypatch.setattr(groups_module, "_ACTIONS_BY_ID", {})
    data = pickle.dumps(rep)
    assert pickle.loads(data) is rep
    registry = rep.group.representations
    del registry[rep.name]
    try:
        back = pickle.loads(data)
        assert back is not rep and back == rep and registry[rep.name] is back
        np.testing.assert_array_equal(rep_matrices(back), rep_matrices(rep))
        assert all(back.character(g) == rep.character(g) for g in rep.group.elements)
    finally:
        registry[rep.name] = rep


def test_unknown_group_class_is_refused():
    class MyCyclic(egroup.CyclicGroup):
        pass

    with pytest.raises(TypeError, match=r"cannot pickle the group .* MyCyclic: only escnn's groups"):
        pickle.dumps(MyCyclic(3))


def test_unknown_gspace_class_is_refused():
    class MyGSpace(gspaces.GSpace2D):
        pass

    with pytest.raises(TypeError, match=r"cannot pickle the gspace .* MyGSpace: only escnn's GSpace0D"):
        pickle.dumps(MyGSpace((None, 4)))
    with pytest.raises(TypeError, match="cannot pickle the gspace"):
        _pickling.gspace_recipe(MyGSpace((None, 4)))


def test_field_type_subclass_is_refused():
    class MyType(enn.FieldType):
        pass

    with pytest.raises(TypeError, match="cannot pickle MyType: only escnn's FieldType"):
        pickle.dumps(MyType(GS[2], [GS[2].trivial_repr]))


def test_name_clash_with_registered_rep_is_refused():
    G = GS[2].fibergroup
    name = "h5_test_clash"
    rep = egroup.directsum([G.irrep(1, 1), G.irrep(0, 0)], name=name)
    data = pickle.dumps(rep)
    other = egroup.directsum([G.irrep(0, 0), G.irrep(1, 1)], name=name)
    G.representations[name] = other
    try:
        with pytest.raises(TypeError, match=r"another representation of the same name is registered"):
            pickle.dumps(rep)
        with pytest.raises(ValueError, match=r"cannot unpickle the representation 'h5_test_clash'.*different"):
            pickle.loads(data)
        assert pickle.loads(pickle.dumps(other)) is other
    finally:
        del G.representations[name]


def test_bad_recipe_is_refused():
    with pytest.raises(ValueError, match="recipe must be a tuple made by gspace_recipe"):
        _pickling.rebuild_gspace("GSpace2D")
    with pytest.raises(ValueError, match="recipe must describe a GSpace0D, GSpace2D or GSpace3D, got kind 'GSpace4D'"):
        _pickling.rebuild_gspace(("GSpace4D", ()))


# ------------------------------------------------------------------------------------------------------------------
# whole networks. One row per layer: (name, dimensions, factory(in_type, ctx) -> module); the next layer's input
# type is the previous layer's out_type. Append rows for new layers.


@dataclass
class Ctx:
    d: int
    gs: object
    tensors: object  # input and output type
    mixed: object
    small: object
    regular: object
    scalars: object
    Conv: type
    BatchNorm: type

    def irreps_of(self, t):
        """escnn's irreps, one field each, that make up the FieldType t (isomorphic to it)."""
        G = self.gs.fibergroup
        return enn.FieldType(self.gs, [G.irrep(*i) for r in t.representations for i in r.irreps])


def make_ctx(d):
    gs = GS[d]
    return Ctx(
        d=d,
        gs=gs,
        tensors=et.tensor_type(gs, [(0, 1, 1), (1, 1, 1), (2, -1, 1)]),
        mixed=et.tensor_type(gs, [(0, 1, 2), (1, 1, 1), (1, -1, 1), (2, 1, 1)]),
        small=et.tensor_type(gs, [(0, 1, 1), (1, 1, 1), (1, -1, 1)]),
        regular=enn.FieldType(gs, [gs.regular_repr]),
        scalars=et.tensor_type(gs, [(0, 1, 3)]),
        Conv=enn.R2Conv if d == 2 else enn.R3Conv,
        BatchNorm=enn.IIDBatchNorm2d if d == 2 else enn.IIDBatchNorm3d,
    )


LAYERS = [
    ("GeometricConv", (2, 3), lambda t, c: GeometricConv(t, c.mixed, 3, padding=1)),
    ("PointwiseNonLinearity", (2, 3), lambda t, c: PointwiseNonLinearity(t, "elu", nonscalars="norm")),
    ("GatedNonLinearity", (2, 3), lambda t, c: GatedNonLinearity(t)),
    ("GatedQuadratic", (2, 3), lambda t, c: GatedQuadratic(t)),
    ("VectorNeuronNonLinearity", (2, 3), lambda t, c: VectorNeuronNonLinearity(t, negative_slope=0.1)),
    ("TensorBatchNorm", (2, 3), lambda t, c: TensorBatchNorm(t)),
    # N -> 2N -> N -> 2N -> N: the grid stays small and every resampling layer is in the network
    ("GeometricConvTransposed", (2, 3), lambda t, c: GeometricConvTransposed(t, c.small, 2, stride=2)),
    ("NormMaxPool", (2, 3), lambda t, c: NormMaxPool(t, 2)),
    ("TensorProductNonLinearity", (2, 3), lambda t, c: TensorProductNonLinearity(t, c.mixed, bias=True)),
    ("Upsample", (2, 3), lambda t, c: Upsample(t, 2)),
    ("AvgPool", (2, 3), lambda t, c: AvgPool(t, 2)),
    ("TensorLayerNorm", (2, 3), lambda t, c: TensorLayerNorm(t)),
    ("NormNonLinearity", (2, 3), lambda t, c: enn.NormNonLinearity(t)),
    ("IIDBatchNorm", (2, 3), lambda t, c: c.BatchNorm(t)),
    ("escnn R2Conv/R3Conv to regular", (2, 3), lambda t, c: c.Conv(t, c.regular, 3, padding=1)),
    ("escnn ReLU on regular", (2, 3), lambda t, c: enn.ReLU(t)),
    ("escnn R2Conv/R3Conv to scalars", (2, 3), lambda t, c: c.Conv(t, c.scalars, 3, padding=1)),
    ("escnn PointwiseNonLinearity on scalars", (2,), lambda t, c: enn.PointwiseNonLinearity(t, "p_elu")),
    ("GeometricConv back to tensors", (2, 3), lambda t, c: GeometricConv(t, c.tensors, 3, padding=1)),
    ("ChangeOfBasis to escnn's irreps", (2, 3), lambda t, c: ChangeOfBasis(t, c.irreps_of(t))),
    ("GeometricConv on escnn's irreps", (2, 3), lambda t, c: GeometricConv(t, c.tensors, 3, padding=1)),
]

SPATIAL = {2: 7, 3: 5}


def build_network(d, seed=0):
    """The LAYERS for dimension d in sequence, float64, with non-trivial BatchNorm running statistics."""
    torch.manual_seed(seed)
    ctx = make_ctx(d)
    t, layers = ctx.tensors, []
    for _, dims, factory in LAYERS:
        if d in dims:
            layers.append(factory(t, ctx))
            t = layers[-1].out_type
    net = isolate(enn.SequentialModule(*layers)).double()  # isolate: escnn's cached bases stay float32
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():  # give every bias a value (escnn and GeometricConv start them at zero)
            if getattr(m, "bias", None) is not None and isinstance(m.bias, torch.nn.Parameter):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen, dtype=torch.float64))
        net.train()
        for _ in range(2):  # running statistics of the batch norm
            net(random_input(ctx.tensors, SPATIAL[d], 4, torch.float64, gen))
    return net, ctx


COPIERS = {
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "torch.save": lambda m: torch.load(_saved(m), weights_only=False),
    "deepcopy": copy.deepcopy,
}


def _saved(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return buf


def sgd_step(net, x, lr=0.1):
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    opt.zero_grad()
    loss = (net(x).tensor ** 2).mean()
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.parametrize("copier", list(COPIERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("d", [2, 3])
def test_network_roundtrip(d, mode, copier):
    net, ctx = build_network(d)
    net.train(mode == "train")
    x = random_input(ctx.tensors, SPATIAL[d], 2, torch.float64, torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = net(x).tensor
    back = COPIERS[copier](net)

    # same structure, types equal (escnn compares them by ==), same mode, same state, no tensor shared
    assert [type(m) for m in back.modules()] == [type(m) for m in net.modules()]
    for a, b in zip(net.children(), back.children()):
        assert b.in_type == a.in_type and b.out_type == a.out_type
        assert b.training == a.training == (mode == "train")
    sa, sb = net.state_dict(), back.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not {p.data_ptr() for p in net.parameters()} & {p.data_ptr() for p in back.parameters()}

    with torch.no_grad():  # both run once more (in train mode this moves the batch-norm statistics of both alike)
        assert torch.equal(back(x).tensor, y) and torch.equal(net(x).tensor, y)

    # keeps training: one SGD step on each gives the same parameters, and every layer with parameters moved
    before = {name: [p.detach().clone() for p in layer.parameters()] for name, layer in net.named_children()}
    loss_a, loss_b = sgd_step(net, x), sgd_step(back, x)
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), back.parameters()))
    for name, layer in back.named_children():
        if before[name]:
            assert any(not torch.equal(a, b) for a, b in zip(layer.parameters(), before[name])), name
    net.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(back(x).tensor, net(x).tensor)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_deepcopy_of_escnn_r2conv_network(mode):
    """Failed before: eval mode 'non-leaf filter tensor', train mode "'DihedralGroup' object has no attribute
    'rotation_order'". The eval-mode filter of the copy is stored detached, with the same values."""
    gs = GS[2]
    t = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    reg = enn.FieldType(gs, [gs.regular_repr] * 2)
    torch.manual_seed(0)
    net = enn.SequentialModule(
        GeometricConv(t, t, 3, padding=1), enn.R2Conv(t, reg, 3), enn.ReLU(reg), enn.R2Conv(reg, t, 3)
    )
    net = isolate(net).double()
    net.train(mode == "train")
    x = random_input(t, 7, 2, torch.float64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x).tensor
    c = copy.deepcopy(net)
    with torch.no_grad():
        assert torch.equal(c(x).tensor, y)
    if mode == "eval":
        assert net[1].filter.grad_fn is not None and c[1].filter.grad_fn is None
        assert torch.equal(c[1].filter, net[1].filter)


# ------------------------------------------------------------------------------------------------------------------
# a spawned process: the model and representations travel by pickling into a fresh interpreter


def _eval_then_train(model, x):
    """What the worker does and this process repeats: outputs in the model's own mode and in eval mode, one SGD
    step (train mode), the eval-mode output after it."""
    outs = []
    with torch.no_grad():
        outs.append(model(x).tensor.clone())  # the mode the model arrived in
        model.eval()
        outs.append(model(x).tensor.clone())
    sgd_step(model, x)
    model.eval()
    with torch.no_grad():
        outs.append(model(x).tensor.clone())
    return outs


def _spawn_worker(model, x, reps_and_elements, queue):
    try:
        _spawn_work(model, x, reps_and_elements, queue)
    except BaseException:  # report, so that the test fails with the worker's traceback instead of waiting
        import traceback

        queue.put(pickle.dumps(("error", traceback.format_exc())))
        raise


def run_in_spawned_worker(*args, timeout=300):
    """Run :func:`_spawn_worker` in a fresh interpreter; its result, or a failure with the worker's traceback (never a
    hang: the parent polls the queue and the worker's liveness)."""
    ctx_mp = mp.get_context("spawn")
    queue = ctx_mp.Queue()
    proc = ctx_mp.Process(target=_spawn_worker, args=args + (queue,))
    proc.start()
    try:
        waited, dead_polls = 0.0, 0
        while True:
            try:
                result = pickle.loads(queue.get(timeout=1.0))
                break
            except _queue.Empty:
                waited += 1.0
                dead_polls = 0 if proc.is_alive() else dead_polls + 1  # (a result put just before exiting arrives)
                if dead_polls >= 3:
                    pytest.fail(f"the spawned worker died with exit code {proc.exitcode} and no result")
                if waited > timeout:
                    pytest.fail(f"the spawned worker gave no result in {timeout} s")
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if result[0] == "error":
        pytest.fail(f"the spawned worker raised:\n{result[1]}")
    assert proc.exitcode == 0
    return result


def _spawn_work(model, x, reps_and_elements, queue):
    torch.set_num_threads(1)
    outs = _eval_then_train(model, x)
    buf = io.BytesIO()
    torch.save({"state": {k: v.clone() for k, v in model.state_dict().items()}, "outs": outs}, buf)
    matrices = [np.stack([np.asarray(rep(g), dtype=np.float64) for g in els]) for rep, els in reps_and_elements]
    fresh = [rep.name in rep.group.representations for rep, _ in reps_and_elements]
    queue.put(pickle.dumps((buf.getvalue(), matrices, fresh)))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_spawned_worker_trains_like_this_process(mode):
    net, ctx = build_network(2)
    net.train(mode == "train")
    x = random_input(ctx.tensors, SPATIAL[2], 2, torch.float64, torch.Generator().manual_seed(3))
    G2, G3 = GS[2].fibergroup, GS[3].fibergroup
    reps = [
        et.tensor_rep(GS[2], 2, -1),
        et.tensor_rep(GS[3], 3, -1),
        et.tensor_rep(SUBGROUP_GSPACES_3D["C4v"](), 2, 1),
        egroup.directsum([G2.irrep(1, 1), G2.irrep(0, 0)], name="h5_spawn_directsum"),
        GS[2].quotient_repr((None, 2)),
        G2.regular_representation,
        G3.irreps()[-1],
    ]
    reps_and_elements = [(rep, list(rep.group.elements)) for rep in reps]

    worker_model = copy.deepcopy(net)  # the worker trains in place, on memory shared with this process
    state_bytes, matrices, registered = run_in_spawned_worker(worker_model, x, reps_and_elements)
    mine_outs = _eval_then_train(net, x)
    got = torch.load(io.BytesIO(state_bytes), weights_only=True)
    theirs, their_outs = got["state"], got["outs"]
    assert len(their_outs) == len(mine_outs) == 3
    for a, b in zip(their_outs, mine_outs):
        assert torch.equal(a, b)
    assert not torch.equal(their_outs[1], their_outs[2])  # the step changed the model
    mine = net.state_dict()
    assert list(theirs) == list(mine)
    for k in mine:
        assert torch.equal(theirs[k], mine[k]), k
    for (rep, elements), m in zip(reps_and_elements, matrices):
        np.testing.assert_allclose(m, rep_matrices(rep), rtol=0, atol=1e-12, err_msg=rep.name)
    assert registered == [True, True, True, False, True, True, True]


def test_geometric_conv_state_survives_gc_of_the_original_gspace():
    """Unpickling builds its own gspace; the original (and its action registry entry) may be gone."""
    gs = SUBGROUP_GSPACES_3D["D4h"]()
    t = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    layer = GeometricConv(t, t, 3).double()
    data = pickle.dumps(layer)
    x = random_input(t, 5, 1, torch.float64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = layer(x).tensor.clone()
    del layer, t, gs
    gc.collect()
    back = pickle.loads(data)
    with torch.no_grad():
        x = random_input(back.in_type, 5, 1, torch.float64, torch.Generator().manual_seed(0))
        assert torch.equal(back(x).tensor, y)


# ------------------------------------------------------------------------------------------------------------------
# every new layer of escnn_tensor.nn is in the network above


def test_network_holds_every_layer_of_escnn_tensor_nn():
    import escnn_tensor.nn as etnn

    layer_classes = {
        name
        for name in etnn.__all__
        if isinstance(getattr(etnn, name), type) and issubclass(getattr(etnn, name), enn.EquivariantModule)
    }
    for d in (2, 3):
        net, _ = build_network(d)
        assert layer_classes <= {type(m).__name__ for m in net.modules()}, d


# ------------------------------------------------------------------------------------------------------------------
# models of escnn_tensor.models: one ResNet of each family (small width) round-trips and keeps training


def build_model(family, d=2, seed=0):
    torch.manual_seed(seed)
    gs = GS[d]
    in_type = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    out_type = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    width = {"geometric": 1, "steerable": 1, "plain": 4}[family]
    model = MODELS["resnet"](in_type, out_type, family, width=width, num_blocks=1).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial biases / affine shifts, and running statistics of the batch norms
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        model.train()
        for _ in range(2):
            model(random_input(in_type, 6, 3, torch.float64, gen))
    return model


MODEL_FAMILIES = ["geometric", "steerable", "plain"]


@pytest.mark.parametrize("copier", list(COPIERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_model_roundtrip(family, mode, copier):
    model = build_model(family)
    model.train(mode == "train")
    x = random_input(model.in_type, 6, 2, torch.float64, torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = model(x).tensor
    back = COPIERS[copier](model)
    assert type(back) is type(model) and back.family == family and back.training == model.training
    assert back.in_type == model.in_type and back.out_type == model.out_type and back.options == model.options
    sa, sb = model.state_dict(), back.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not {p.data_ptr() for p in model.parameters()} & {p.data_ptr() for p in back.parameters()}
    with torch.no_grad():
        assert torch.equal(back(x).tensor, y) and torch.equal(model(x).tensor, y)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    loss_a, loss_b = sgd_step(model, x), sgd_step(back, x)
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))
    assert any(not torch.equal(p, before[k]) for k, p in model.named_parameters())
    model.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(back(x).tensor, model(x).tensor)
    # the copy is independent: a cast of the copy leaves the original float64 and unchanged
    out = model(x).tensor.detach().clone()
    back.float()
    with torch.no_grad():
        assert torch.equal(model(x).tensor, out)


@pytest.mark.parametrize("family", ["geometric", "steerable"])
def test_spawned_worker_trains_a_model_like_this_process(family):
    model = build_model(family)
    x = random_input(model.in_type, 6, 2, torch.float64, torch.Generator().manual_seed(3))
    worker_model = copy.deepcopy(model)
    state_bytes, _, _ = run_in_spawned_worker(worker_model, x, [])
    mine_outs = _eval_then_train(model, x)
    got = torch.load(io.BytesIO(state_bytes), weights_only=True)
    for a, b in zip(got["outs"], mine_outs):
        assert torch.equal(a, b)
    assert not torch.equal(mine_outs[1], mine_outs[2])
    mine = model.state_dict()
    assert list(got["state"]) == list(mine) and all(torch.equal(got["state"][k], mine[k]) for k in mine)
