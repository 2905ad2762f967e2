"""escnn_tensor.models: ResNet / UNet / DilResNet in the geometric, steerable and plain families.

Every model builds and runs (2D, and 3D); the geometric family is equivariant to 1e-10 (float64, every group
element, train and eval mode, with randomised parameters), the steerable family to escnn's accuracy (1e-5), the
plain family is not (> 1e-3); params=N lands within 10%; hidden types follow the documented rule; escnn's cached
bases are not shared between models; bad arguments give clear errors.
"""
import pytest
import torch
from escnn.nn import GeometricTensor, R3Conv

import escnn_tensor as et
from escnn_tensor.models import (
    MODELS,
    PARAMS_TOLERANCE,
    ResNet,
    UNet,
    count_parameters,
    hidden_tensor_types,
)
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
# tiny architectures: one block, two pooling levels (grid 8 is divisible by 4), dilations up to the grid side
TINY = {
    "resnet": dict(num_blocks=1),
    "unet": dict(num_downsamples=2, num_conv=1),
    "dilresnet": dict(num_blocks=1, dilations=(1, 2, 4, 2, 1)),
}
WIDTH = {"geometric": 1, "steerable": 1, "plain": 4}
FAMILIES = ("geometric", "steerable", "plain")


def types(d, fields_in, fields_out):
    return et.tensor_type(GS[d], fields_in), et.tensor_type(GS[d], fields_out)


def scalar_to_vector(d=2):
    return types(d, [(0, 1, 1)], [(1, 1, 1)])


def build(arch, family, in_type, out_type, seed=0, **options):
    torch.manual_seed(seed)
    return MODELS[arch](in_type, out_type, family, width=WIDTH[family], **{**TINY[arch], **options})


def randomize(model, seed=1, scale=0.3):
    """Perturb every parameter (so zero-initialised biases / affine shifts take part in the checks)."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def check(model, x, rtol, frozen=()):
    """assert_equivariant in train mode and in eval mode (after some batches set the running statistics).

    ``frozen``: module types kept in eval mode during the train-mode check (see the 3D steerable test).
    """
    model.train()
    for m in model.modules():
        if isinstance(m, tuple(frozen)):
            m.eval()
    with torch.no_grad():
        assert_equivariant(model, x, rtol)
        for s in range(2):  # running statistics of batch norms: updated by train-mode batches
            model(random_input(model.in_type, x.tensor.shape[-1], 3, x.tensor.dtype, torch.Generator().manual_seed(s)))
        model.eval()
        return assert_equivariant(model, x, rtol)


def sample(field_type, spatial=8, batch=2, dtype=torch.float64, seed=3):
    return random_input(field_type, spatial, batch, dtype, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------------------
# builds and runs


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_model_builds_runs_and_trains_2d(arch, family):
    i, o = types(2, [(0, 1, 1), (1, 1, 1)], [(2, 1, 1)])  # scalar + vector -> 2-tensor
    model = build(arch, family, i, o)
    assert model.in_type == i and model.out_type == o and model.family == family
    x = sample(i, dtype=torch.float32)
    y = model(x)
    assert isinstance(y, GeometricTensor) and y.type == o
    assert tuple(y.tensor.shape) == model.evaluate_output_shape(x.tensor.shape) == (2, o.size, 8, 8)
    assert torch.isfinite(y.tensor).all()
    y.tensor.pow(2).sum().backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p.grad is not None for p in params)
    assert sum(int((p.grad != 0).any()) for p in params) >= len(params) // 2
    assert count_parameters(model) == sum(p.numel() for p in params)


@pytest.mark.parametrize("family", FAMILIES)
def test_3d_models_build_and_run(family):
    i, o = types(3, [(1, 1, 1)], [(1, -1, 1)])  # vector -> pseudovector (the 3D task's types)
    model = build("resnet", family, i, o, num_blocks=1)
    y = model(sample(i, spatial=4, dtype=torch.float32))
    assert y.type == o and tuple(y.tensor.shape) == (2, 3, 4, 4, 4)


# ------------------------------------------------------------------------------------------------------------------
# equivariance


@pytest.mark.parametrize(
    "arch, options",
    [
        ("resnet", {}),  # default norm: batch
        ("resnet", {"norm": "layer", "nonlinearity": "vector_neuron"}),
        ("resnet", {"nonlinearity": "gated_quadratic"}),
        ("unet", {"norm": "layer", "nonlinearity": "gated_quadratic"}),
        ("unet", {"norm": "batch"}),
        ("dilresnet", {}),
        ("dilresnet", {"padding_mode": "zeros", "norm": "layer"}),
    ],
)
def test_geometric_family_exactly_equivariant_2d(arch, options):
    # pseudo types in and out, so the hidden fields include the pseudo ladder
    i, o = types(2, [(0, 1, 1), (1, 1, 1)], [(0, -1, 1), (2, 1, 1)])
    model = randomize(build(arch, "geometric", i, o, **options).double())
    errors = check(model, sample(i), 1e-10)
    assert len(errors) == 8


@pytest.mark.parametrize("nonlinearity", ["gated", "gated_quadratic"])
def test_geometric_family_exactly_equivariant_3d(nonlinearity):
    i, o = types(3, [(1, 1, 1)], [(1, -1, 1)])
    model = randomize(build("resnet", "geometric", i, o, nonlinearity=nonlinearity).double())
    errors = check(model, sample(i, spatial=4), 1e-10)
    assert len(errors) == 48


def test_geometric_unet_equivariant_3d():
    i, o = types(3, [(0, 1, 1)], [(1, 1, 1)])
    model = randomize(build("unet", "geometric", i, o, num_downsamples=1).double())
    errors = check(model, sample(i, spatial=4), 1e-10)
    assert len(errors) == 48


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_steerable_family_equivariant_to_escnn_accuracy(arch):
    i, o = scalar_to_vector()
    options = {"norm": "batch"} if arch != "resnet" else {}
    model = randomize(build(arch, "steerable", i, o, **options).double())
    check(model, sample(i), 1e-5)


def test_steerable_family_equivariant_3d():
    i, o = types(3, [(1, 1, 1)], [(1, -1, 1)])
    model = randomize(build("resnet", "steerable", i, o).double())
    # In train mode escnn's R3Conv re-expands its basis (48 x 48 blocks for regular fields of O_h) on every call,
    # 0.6 s here; the convolutions stay in eval mode, which applies the same expanded filter, cached. The batch
    # norms run in train mode (batch statistics), the part of train mode that differs.
    check(model, sample(i, spatial=4), 1e-5, frozen=(R3Conv,))


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_plain_family_is_not_equivariant(arch):
    i, o = scalar_to_vector()
    model = build(arch, "plain", i, o).double().eval()
    with torch.no_grad():
        errors = equivariance_errors(model, sample(i))
    assert max(errors.values()) > 1e-3


def test_steerable_dilated_convolutions_stay_equivariant():
    """escnn's own dilated basis is not equivariant on the grid (dilation 8: O(1)); the family's fix is."""
    i, o = scalar_to_vector()
    model = build("dilresnet", "steerable", i, o, dilations=(8,)).double().eval()
    with torch.no_grad():
        assert_equivariant(model, sample(i, spatial=16), 1e-5)


# ------------------------------------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("arch, target", [("resnet", 6000), ("dilresnet", 9000), ("unet", 20000)])
def test_params_budget_within_tolerance(arch, family, target):
    i, o = types(2, [(0, 1, 1)], [(2, 1, 1)])
    model = MODELS[arch](i, o, family, params=target, **TINY[arch])
    n = count_parameters(model)
    assert abs(n - target) <= PARAMS_TOLERANCE * target, (n, model.hidden)
    # the size it found rebuilds the same model size
    again = MODELS[arch](i, o, family, **model.size_arguments, **TINY[arch])
    assert count_parameters(again) == n


def test_params_search_does_not_consume_the_global_rng():
    i, o = scalar_to_vector()
    torch.manual_seed(5)
    a = ResNet(i, o, "geometric", params=4000, num_blocks=1)
    torch.manual_seed(5)
    b = ResNet(i, o, "geometric", **a.size_arguments, num_blocks=1)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_params_out_of_reach_is_a_clear_error():
    i, o = scalar_to_vector()
    with pytest.raises(ValueError, match="params=10.*within 10%"):
        ResNet(i, o, "steerable", params=10, num_blocks=1)


def test_hidden_types_rule():
    i, o = scalar_to_vector()
    assert hidden_tensor_types(i, o) == [(0, 1), (1, 1), (2, 1)]
    i, o = types(3, [(1, 1, 1)], [(1, -1, 1)])
    assert hidden_tensor_types(i, o) == [(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]
    i, o = types(3, [(3, -1, 1)], [(0, 1, 1)])
    assert hidden_tensor_types(i, o) == [(k, p) for k in range(4) for p in (1, -1)]
    model = ResNet(*scalar_to_vector(), "geometric", width={(0, 1): 2, (1, 1): 1, (2, 1): 3}, num_blocks=1)
    assert et.field_signature(model.encoder[0].module.out_type) == [(0, 1)] * 2 + [(1, 1)] + [(2, 1)] * 3


def test_width_units():
    i, o = scalar_to_vector()
    g = ResNet(i, o, "geometric", width=2, num_blocks=1)
    assert et.field_signature(g.encoder[0].module.out_type) == [(0, 1)] * 2 + [(1, 1)] * 2 + [(2, 1)] * 2
    s = ResNet(i, o, "steerable", width=3, num_blocks=1)
    assert s.encoder[0].module.out_type.size == 3 * 8
    s2 = ResNet(i, o, "steerable", level=3 * 8 + 5, num_blocks=1)  # 3 regular + 5 trivial fields
    assert s2.encoder[0].module.out_type.size == 3 * 8 + 5
    p = ResNet(i, o, "plain", width=7, num_blocks=1)
    assert p.encoder[0].out_channels == 7


def test_unet_doubles_the_hidden_fields_per_level():
    i, o = scalar_to_vector()
    model = UNet(i, o, "geometric", width=1, num_downsamples=2, num_conv=1)
    sizes = [down[1].module.out_type.size for down in model.down]
    assert sizes == [2 * (1 + 2 + 4), 4 * (1 + 2 + 4)]


def test_unet_size_refers_to_the_deepest_level_halved_and_rounded_up_per_level():
    i, o = scalar_to_vector()
    model = UNet(i, o, "geometric", size={(0, 1): 5, (1, 1): 4, (2, 1): 4}, num_downsamples=2, num_conv=1)

    def counts(ft):
        sig = et.field_signature(ft)
        return tuple(sig.count(t) for t in [(0, 1), (1, 1), (2, 1)])

    assert counts(model.embedding[0].module.out_type) == (2, 1, 1)  # ceil(5/4), ceil(4/4), ceil(4/4)
    assert counts(model.down[0][1].module.out_type) == (3, 2, 2)  # ceil(5/2), 4/2, 4/2
    assert counts(model.down[1][1].module.out_type) == (5, 4, 4)
    assert model.size_arguments == {"size": {(0, 1): 5, (1, 1): 4, (2, 1): 4}}
    plain = UNet(i, o, "plain", size=13, num_downsamples=2, num_conv=1)
    assert [plain.embedding[0].out_channels, plain.down[0][1].out_channels, plain.down[1][1].out_channels] == [4, 7, 13]


# ------------------------------------------------------------------------------------------------------------------
# escnn's shared bases


def test_steerable_models_do_not_share_escnn_bases():
    i, o = scalar_to_vector()
    a = build("resnet", "steerable", i, o, seed=0)
    b = build("resnet", "steerable", i, o, seed=0)
    x = sample(i, dtype=torch.float32)
    b.eval()
    with torch.no_grad():
        before = b(x).tensor.clone()
    a.double()
    assert all(buf.dtype == torch.float32 for buf in b.buffers() if buf.is_floating_point())
    b.train()
    b.eval()
    with torch.no_grad():
        assert torch.equal(b(x).tensor, before)


# ------------------------------------------------------------------------------------------------------------------
# errors


def test_bad_arguments():
    i, o = scalar_to_vector()
    with pytest.raises(ValueError, match="family must be one of"):
        ResNet(i, o, "fancy")
    with pytest.raises(TypeError, match="unknown option.*num_downsamples"):
        ResNet(i, o, num_downsamples=2)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ResNet(i, o, kernel_size=4)
    with pytest.raises(ValueError, match="at most one of width, params, level and size"):
        ResNet(i, o, width=2, params=1000)
    with pytest.raises(ValueError, match="norm='layer' is not available for the steerable family"):
        ResNet(i, o, "steerable", norm="layer")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        ResNet(i, o, padding_mode="torus")
    with pytest.raises(ValueError, match="width as a mapping"):
        ResNet(i, o, width={(0, 1): 1})
    with pytest.raises(TypeError, match="width must be an integer"):
        ResNet(i, o, width=2.5)
    with pytest.raises(TypeError, match="FieldType"):
        ResNet(i.size, o)
    with pytest.raises(ValueError, match="same gspace"):
        ResNet(i, et.tensor_type(GS[3], [(1, 1, 1)]))


def test_oversized_models_refused_before_building():
    i, o = scalar_to_vector()
    with pytest.raises(ValueError, match=r"about 26\.8 GiB \(20000 channels"):
        ResNet(i, o, "plain", width=20000)
    with pytest.raises(ValueError, match="GiB"):
        UNet(i, o, "geometric", width=200)  # 200 fields of each type x 2^4 at the deepest level


def test_bad_inputs():
    i, o = scalar_to_vector()
    model = build("unet", "plain", i, o)
    with pytest.raises(TypeError, match="GeometricTensor"):
        model(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="in_type"):
        model(GeometricTensor(torch.zeros(1, 2, 8, 8), o))
    with pytest.raises(ValueError, match="divisible by 4.*\\(6, 6\\)"):
        model(GeometricTensor(torch.zeros(1, 1, 6, 6), i))
    with pytest.raises(ValueError, match="divisible by 4"):
        model.evaluate_output_shape((1, 1, 10, 10))
