"""The pixelwise layers of escnn_tensor.nn on fields that are not full tensor fields (issue 17): symmetric and
symmetric traceless tensors, escnn's irreps, regular and quotient fields, mixed with tensor fields. Norm-based layers
accept every orthogonal representation; equivariance in float64 over every group element; the invariant subspaces the
norms shift have the dimension of the character formula; the tensor-product layers refuse fields that are not
tensor fields (full or symmetric) with the escnn module to use."""
import numpy as np
import pytest
import torch
from escnn import nn

import escnn_tensor as et
import escnn_tensor.nn as etnn
from escnn_tensor.nn._fields import ESCNN_ALTERNATIVES
from escnn_tensor.testing import equivariance_errors, random_input
from tests.reference import randomize

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}


def mixed(d):
    gs = GS[d]
    G = gs.fibergroup
    t = et.tensor_type(gs, [(0, 1, 1), (2, 1, 1, "symmetric"), (1, 1, 1), (2, -1, 1, "symmetric_traceless"),
                            (0, -1, 1)])
    extra = [G.regular_representation, G.irreps()[1], G.irreps()[2]]
    if d == 2:
        extra.append(G.quotient_representation((0, 1)))
    return nn.FieldType(gs, list(t.representations) + extra + [et.tensor_rep(gs, 2, 1, "symmetric")])


LAYERS = {
    "PointwiseNonLinearity": lambda t: etnn.PointwiseNonLinearity(t, "elu", nonscalars="norm"),
    "GatedNonLinearity": lambda t: etnn.GatedNonLinearity(t),
    "VectorNeuronNonLinearity": lambda t: etnn.VectorNeuronNonLinearity(t, negative_slope=0.1),
    "TensorBatchNorm": lambda t: etnn.TensorBatchNorm(t),
    "TensorLayerNorm": lambda t: etnn.TensorLayerNorm(t),
    "NormMaxPool": lambda t: etnn.NormMaxPool(t, 2),
    "AvgPool": lambda t: etnn.AvgPool(t, 2),
    "Upsample": lambda t: etnn.Upsample(t, 2),
}


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_on_any_orthogonal_fields_is_equivariant(name, d):
    t = mixed(d)
    layer = LAYERS[name](t).double()
    randomize(layer)
    spatial = 4 if d == 3 else 6
    layer.train()
    y = layer(random_input(t, spatial=spatial, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(y.tensor).all() and y.type is layer.out_type
    layer.eval()
    x = random_input(t, spatial=spatial, generator=torch.Generator().manual_seed(1))
    errors = equivariance_errors(layer, x)
    assert len(errors) == GS[d].fibergroup.order() and max(errors.values()) < 1e-10


def invariant_dimension(rep, gs):
    G = gs.fibergroup
    n = sum(rep.character(g) for g in G.elements) / G.order()
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


@pytest.mark.parametrize("d", [2, 3])
def test_norms_shift_the_invariant_subspace_of_every_field(d):
    t = mixed(d)
    bn = etnn.TensorBatchNorm(t)
    assert bn.n_coefficients == sum(invariant_dimension(r, GS[d]) for r in t.representations)
    # the symmetric 2-tensor's invariant is the identity: a shift along delta_ij (coordinates 1 on the diagonal)
    sym = et.tensor_type(GS[d], [(2, 1, 1, "symmetric")])
    ln = etnn.TensorLayerNorm(sym).double()
    with torch.no_grad():
        ln.bias.fill_(1.0)
        ln.weight.zero_()
    out = ln(random_input(sym, spatial=3)).tensor
    full = et.representations.to_full_tensor(out, d, 2, "symmetric", dim=1).reshape((-1, d, d) + out.shape[-d:])
    eye = torch.eye(d, dtype=out.dtype).reshape((1, d, d) + (1,) * d) / np.sqrt(d)  # the unit invariant, up to sign
    assert torch.allclose(full.abs(), eye.expand_as(full), atol=1e-12, rtol=0)
    assert torch.allclose(full, full[:1, :1, :1] * np.sqrt(d) * eye, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["TensorProductNonLinearity", "GatedQuadratic"])
def test_tensor_product_layers_refuse_with_the_escnn_module_to_use(name):
    """Symmetric tensor fields are accepted (tests/nn/test_tensor_product_symmetric.py); escnn's irreps are not."""
    gs = GS[2]
    ft = nn.FieldType(gs, list(et.tensor_type(gs, [(0, 1, 1), (2, 1, 1, "symmetric")]).representations)
                      + [gs.fibergroup.irreps()[2]])
    with pytest.raises(ValueError, match="in_type.*field 2") as err:
        getattr(etnn, name)(ft)
    assert ESCNN_ALTERNATIVES[name] in str(err.value)
