"""nn/_gated_quadratic.py: GatedQuadratic (nonlinearity='gated_quadratic') — exact equivariance over every group
element in 2D and 3D on mixed types with pseudotensors, the layer is the gate at initialisation, the quadratic term
is quadratic for small inputs and bounded for large ones, and its parameter counts."""
import pytest
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.nn import GatedQuadratic
from escnn_tensor.testing import assert_equivariant, random_input
from tests.reference import invariant_count, randomize, symmetric_square_count

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
SPEC = {
    2: [(0, 1, 2), (1, 1, 2), (2, 1, 2), (0, -1, 1), (1, -1, 1)],
    3: [(0, 1, 2), (1, 1, 1), (1, -1, 1), (2, 1, 1)],
}


def inputs(ft, seed, spatial=5, batch=2):
    return random_input(ft, spatial, batch, torch.float64, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("rank", [1, 2])
def test_exactly_equivariant(d, rank):
    ft = et.tensor_type(GS[d], SPEC[d])
    layer = randomize(GatedQuadratic(ft, rank=rank).double())
    x = inputs(ft, 1, spatial=5 if d == 2 else 3)
    y = layer(x)
    assert y.type == ft and y.tensor.shape == x.tensor.shape
    assert layer.product(layer.squash(layer.probe(x))).tensor.abs().max() > 1e-3  # the quadratic term is active
    assert_equivariant(layer, x)


@pytest.mark.parametrize("d", [2, 3])
def test_no_quadratic_map_leaves_the_gate(d):
    """Pseudoscalars only: the product of two pseudoscalars is a true scalar, so no equivariant quadratic map into
    pseudoscalars exists (parity) and the layer is the gate, with the gate's parameters only."""
    ft = et.tensor_type(GS[d], [(0, -1, 3)])
    layer = randomize(GatedQuadratic(ft).double())
    assert layer.product is None and layer.probe is None
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in layer.gate.parameters())
    x = inputs(ft, 5, spatial=4)
    assert torch.equal(layer(x).tensor, layer.gate(x).tensor)
    assert_equivariant(layer, x)


def test_starts_as_the_gate():
    ft = et.tensor_type(GS[2], SPEC[2])
    layer = GatedQuadratic(ft).double()
    assert torch.count_nonzero(layer.product.weights) == 0
    x = inputs(ft, 2)
    assert torch.equal(layer(x).tensor, layer.gate(x).tensor)


def test_quadratic_then_bounded():
    """The extra term q(x) = Q(beta(P x)) scales as s^2 for small inputs s x, and converges (is bounded) for large
    ones: beta maps every probe field to norm tanh(|z|) < 1."""
    ft = et.tensor_type(GS[2], SPEC[2])
    layer = randomize(GatedQuadratic(ft).double(), seed=3)
    x = inputs(ft, 4)

    @torch.no_grad()
    def q(s):
        return layer.product(layer.squash(layer.probe(GeometricTensor(s * x.tensor, ft)))).tensor

    assert (q(1e-3).abs().max() / q(2e-3).abs().max()).item() == pytest.approx(0.25, rel=1e-2)
    assert torch.allclose(q(1e6), q(1e4), rtol=1e-6, atol=1e-12)  # saturated: no growth with s
    assert q(1e6).abs().max() > 1e-3


def test_parameter_counts_are_low_rank():
    """Probe and product parameters against the character formula (tests/reference.py), for the 6,000-parameter
    model's hidden type (3 scalars, 4 vectors, 4 2-tensors): 30 + 113, against 1,412 for a full tensor product."""
    from escnn_tensor.nn import TensorProductNonLinearity

    fields = [(0, 1, 3), (1, 1, 4), (2, 1, 4)]
    gs = GS[2]
    layer = GatedQuadratic(et.tensor_type(gs, fields))
    kinds = [(k, p) for k, p, _ in fields]
    # P: one 1x1 invariant map per (input field, probe) pair of types
    probe = sum(n * invariant_count(gs, 1, k + kb, p * pb) for k, p, n in fields for kb, pb in kinds)
    # Q: bilinear maps of pairs of probes into every output field; a probe with itself: symmetric part only
    product = 0
    for ko, po, n in fields:
        for i, (ka, pa) in enumerate(kinds):
            for kb, pb in kinds[i:]:
                if (ka, pa) == (kb, pb):
                    product += n * symmetric_square_count(gs, ka, pa, ko, po)
                else:
                    product += n * invariant_count(gs, 1, ko + ka + kb, po * pa * pb)
    assert (probe, product) == (30, 113)
    assert sum(p.numel() for p in layer.probe.parameters()) == probe
    assert sum(p.numel() for p in layer.product.parameters()) == product
    # the full tensor product on the same fields: every pair of fields, each field with itself symmetrised
    full = 0
    for ko, po, no in fields:
        for i, (ka, pa, na) in enumerate(fields):
            for kb, pb, nb in fields[i:]:
                n_bilinear = invariant_count(gs, 1, ko + ka + kb, po * pa * pb)
                if (ka, pa) == (kb, pb):
                    full += no * (na * (na - 1) // 2 * n_bilinear + na * symmetric_square_count(gs, ka, pa, ko, po))
                else:
                    full += no * na * nb * n_bilinear
    assert full == 1412
    assert sum(p.numel() for p in TensorProductNonLinearity(layer.in_type).parameters()) == full
