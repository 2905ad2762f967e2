"""Device-clean layers and models: no host synchronisation in a forward or backward pass, in train or eval mode.

Everything runs on ``torch.device("meta")``, where tensors have shapes but no values: ``.item()``, ``bool(tensor)``,
``torch.equal``, ``.tolist()`` and data-dependent shapes raise there, exactly the operations that synchronise a GPU
with the host. Every layer of escnn_tensor.nn and every model of the geometric family (both gated nonlinearities,
both norms) and of the plain family trains (forward + backward, gradients of every parameter present) and runs in
eval mode (with and without autograd, twice: the eval caches are checked without reading a value).
"""
import pytest
import torch
from escnn.nn import EquivariantModule, FieldType, GeometricTensor

import escnn_tensor as et
import escnn_tensor.nn as etnn
from escnn_tensor.models import MODELS

META = torch.device("meta")
GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def mixed(d):
    return et.tensor_type(GS[d], [(0, 1, 2), (1, 1, 1), (1, -1, 1), (2, 1, 1), (0, -1, 1)])


def small(d):
    return et.tensor_type(GS[d], [(0, 1, 1), (1, 1, 1), (2, -1, 1)])


def irreps_of(field_type):
    """escnn's irreps, one field each, isomorphic to field_type."""
    G = field_type.gspace.fibergroup
    return FieldType(field_type.gspace, [G.irrep(*i) for r in field_type.representations for i in r.irreps])


def regular_and(field_type):
    """A regular field followed by the fields of field_type (escnn fields mixed with tensor fields)."""
    return FieldType(field_type.gspace, [field_type.gspace.regular_repr] + list(field_type.representations))


# (name, factory(d) -> layer); every EquivariantModule class of escnn_tensor.nn appears (checked below)
LAYERS = [
    ("GeometricConv", lambda d: etnn.GeometricConv(mixed(d), small(d), 3, padding=1)),
    ("GeometricConv two_stage", lambda d: etnn.GeometricConv(mixed(d), small(d), 3, padding=1, method="two_stage")),
    ("GeometricConv circular stride 2", lambda d: etnn.GeometricConv(mixed(d), small(d), 3, padding=1, stride=2,
                                                                     padding_mode="circular")),  # (input side 5)
    ("GeometricConvTransposed", lambda d: etnn.GeometricConvTransposed(mixed(d), small(d), 2, stride=2)),
    ("PointwiseNonLinearity", lambda d: etnn.PointwiseNonLinearity(mixed(d), "elu", nonscalars="norm")),
    ("GatedNonLinearity", lambda d: etnn.GatedNonLinearity(mixed(d))),
    ("GatedQuadratic", lambda d: etnn.GatedQuadratic(mixed(d))),
    ("VectorNeuronNonLinearity", lambda d: etnn.VectorNeuronNonLinearity(mixed(d), negative_slope=0.1)),
    ("TensorProductNonLinearity", lambda d: etnn.TensorProductNonLinearity(mixed(d), small(d), bias=True)),
    ("TensorBatchNorm", lambda d: etnn.TensorBatchNorm(mixed(d))),
    ("TensorBatchNorm momentum=None", lambda d: etnn.TensorBatchNorm(mixed(d), momentum=None)),
    ("TensorBatchNorm no running stats", lambda d: etnn.TensorBatchNorm(mixed(d), track_running_stats=False)),
    ("TensorLayerNorm", lambda d: etnn.TensorLayerNorm(mixed(d))),
    ("NormMaxPool", lambda d: etnn.NormMaxPool(mixed(d), 2)),
    ("AvgPool", lambda d: etnn.AvgPool(mixed(d), 2)),
    ("Upsample", lambda d: etnn.Upsample(mixed(d), 2)),
    ("ChangeOfBasis", lambda d: etnn.ChangeOfBasis(mixed(d), irreps_of(mixed(d)))),
    ("GeometricConv escnn fields", lambda d: etnn.GeometricConv(regular_and(mixed(d)), small(d), 3, padding=1)),
    ("GeometricConvTransposed escnn fields", lambda d: etnn.GeometricConvTransposed(small(d), regular_and(small(d)),
                                                                                   2, stride=2)),
]
SPATIAL = {2: 6, 3: 4}


def test_every_layer_of_escnn_tensor_nn_is_covered():
    classes = {
        name
        for name in etnn.__all__
        if isinstance(getattr(etnn, name), type) and issubclass(getattr(etnn, name), EquivariantModule)
    }
    built = {type(factory(2)).__name__ for _, factory in LAYERS}
    assert classes and classes <= built, classes - built


def meta_input(field_type, d, batch=2, spatial=None):
    shape = (batch, field_type.size) + (spatial or SPATIAL[d],) * d
    return GeometricTensor(torch.empty(shape, device=META), field_type)


def train_and_eval_on_meta(module, x):
    """Forward + backward in train mode, then eval mode with autograd and twice without; returns the outputs."""
    module = module.to(META)
    module.train()
    xt = x.tensor.requires_grad_(True)
    y = module(GeometricTensor(xt, x.type))
    y.tensor.sum().backward()
    assert y.tensor.device == META and xt.grad is not None and xt.grad.shape == xt.shape
    for name, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.device == META and p.grad.shape == p.shape, name
    module.eval()
    xe = x.tensor.detach().requires_grad_(True)
    y_eval = module(GeometricTensor(xe, x.type))
    y_eval.tensor.sum().backward()
    assert xe.grad is not None and xe.grad.shape == xe.shape
    with torch.no_grad():
        y1 = module(GeometricTensor(x.tensor.detach(), x.type))
        y2 = module(GeometricTensor(x.tensor.detach(), x.type))
    assert y1.tensor.shape == y2.tensor.shape == y_eval.tensor.shape == y.tensor.shape
    return y


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", [n for n, _ in LAYERS])
def test_layer_trains_and_evaluates_on_meta(name, d):
    layer = dict(LAYERS)[name](d)
    x = meta_input(layer.in_type, d, spatial=5 if "stride" in name else None)
    y = train_and_eval_on_meta(layer, x)
    assert tuple(y.tensor.shape) == layer.evaluate_output_shape(tuple(x.tensor.shape))


TINY = {
    "resnet": dict(num_blocks=1),
    "unet": dict(num_downsamples=2, num_conv=1),
    "dilresnet": dict(num_blocks=1, dilations=(1, 2, 1)),
}
GEOMETRIC_OPTIONS = [dict(nonlinearity=n, norm=m) for n in ("gated", "gated_quadratic") for m in ("batch", "layer")]
PLAIN_OPTIONS = [dict(norm=m) for m in ("batch", "layer")]
CASES = [(a, "geometric", o) for a in MODELS for o in GEOMETRIC_OPTIONS] + [
    (a, "plain", o) for a in MODELS for o in PLAIN_OPTIONS
]


@pytest.mark.parametrize("arch,family,options", CASES, ids=[f"{a}-{f}-{'-'.join(map(str, o.values()))}" for a, f, o in CASES])
def test_model_trains_and_evaluates_on_meta(arch, family, options):
    gs = GS[2]
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t_out = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    model = MODELS[arch](t_in, t_out, family, width=1 if family == "geometric" else 4, **TINY[arch], **options)
    y = train_and_eval_on_meta(model, meta_input(t_in, 2, spatial=8))
    assert tuple(y.tensor.shape) == (2, t_out.size, 8, 8)


@pytest.mark.parametrize("nonlinearity", ["gated", "gated_quadratic"])
def test_3d_geometric_model_trains_on_meta(nonlinearity):
    gs = GS[3]
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    model = MODELS["resnet"](t_in, t_in, "geometric", width=1, num_blocks=1, norm="batch", nonlinearity=nonlinearity)
    train_and_eval_on_meta(model, meta_input(t_in, 3, spatial=4))


def test_batch_norm_refuses_too_few_values_from_the_shape_alone():
    """The training check (more than one value per scalar field) is decided from the shape: it holds on meta."""
    layer = etnn.TensorBatchNorm(mixed(2)).to(META)
    with pytest.raises(ValueError, match=r"TensorBatchNorm needs more than one value per field"):
        layer(meta_input(layer.in_type, 2, batch=1, spatial=1))
    vectors = etnn.TensorBatchNorm(et.tensor_type(GS[2], [(1, 1, 2)])).to(META)
    assert vectors(meta_input(vectors.in_type, 2, batch=1, spatial=1)).tensor.shape == (1, 4, 1, 1)
