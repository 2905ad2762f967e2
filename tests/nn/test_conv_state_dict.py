"""Issue 20 item 6: the conv layers' state dicts record their field types; a state dict made for other types is
refused with a clear error, and state dicts saved before this change (tests/nn/data) still load."""
from pathlib import Path

import pytest
import torch
from escnn import nn

import escnn_tensor as et
from escnn_tensor.nn import GeometricConv, GeometricConvTransposed
from escnn_tensor.testing import random_input

GS2 = et.hyperoctahedral_gspace(2)
GS3 = et.hyperoctahedral_gspace(3)
OLD = Path(__file__).parent / "data" / "state_dicts_before_field_types.pt"


def test_round_trip_and_extra_state_is_a_tensor():
    a, b = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 2)]), et.tensor_type(GS2, [(1, 1, 1), (2, -1, 1)])
    src = GeometricConv(a, b, 3, padding=1).double()
    sd = src.state_dict()
    assert set(sd) == {"weights", "bias", "_extra_state"} and all(torch.is_tensor(v) for v in sd.values())
    dst = GeometricConv(a, b, 3, padding=1, initialize=False).double()
    dst.load_state_dict(sd)
    x = random_input(a, spatial=5)
    assert torch.equal(dst(x).tensor, src(x).tensor)


@pytest.mark.parametrize("case", ["vector into pseudovector", "fields reordered", "transposed into conv",
                                  "kernel size", "regular into quotient"])
def test_other_types_are_refused(case):
    vec, pvec = et.tensor_type(GS3, [(1, 1, 1)]), et.tensor_type(GS3, [(1, -1, 1)])
    sv = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1)])
    vs = et.tensor_type(GS2, [(1, 1, 1), (0, 1, 1)])
    G = GS2.fibergroup
    reg, quo = nn.FieldType(GS2, [G.regular_representation]), nn.FieldType(GS2, [G.quotient_representation((0, 1))] * 2)
    src, dst, match = {
        "vector into pseudovector": (GeometricConv(vec, vec, 3), GeometricConv(pvec, pvec, 3), "in_fields"),
        "fields reordered": (GeometricConv(sv, sv, 3), GeometricConv(vs, vs, 3), "in_fields"),
        "transposed into conv": (GeometricConvTransposed(sv, sv, 3), GeometricConv(sv, sv, 3), "layer"),
        "kernel size": (GeometricConv(sv, sv, 3), GeometricConv(sv, sv, 5), "kernel_size"),
        "regular into quotient": (GeometricConv(reg, sv, 3), GeometricConv(quo, sv, 3), "in_fields"),
    }[case]
    with pytest.raises(ValueError, match=rf"state dict was made for a different layer \({match}: saved"):
        dst.load_state_dict(src.state_dict())


def test_state_dicts_saved_before_still_load():
    """Saved by main's code at 49eb9c4 (before field types were stored): no _extra_state key."""
    saved = torch.load(OLD, weights_only=True)
    assert "_extra_state" not in saved["conv"]
    a, b = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 2)]), et.tensor_type(GS2, [(1, 1, 1), (2, -1, 1)])
    conv = GeometricConv(a, b, 3, padding=1, initialize=False).double()
    conv.load_state_dict(saved["conv"])  # strict: no missing or unexpected keys reported
    assert torch.equal(conv.weights, saved["conv"]["weights"])
    t = GeometricConvTransposed(a, b, 2, stride=2, initialize=False).double()
    t.load_state_dict(saved["conv_transposed"])
    assert torch.equal(t.weights, saved["conv_transposed"]["weights"])
    # the extra state is written from now on
    assert "_extra_state" in conv.state_dict()
