"""docs/layers.md: every cell of its two "verified" matrices is checked here by building the module and running it.

The matrices (between ``<!-- matrix:escnn -->`` / ``<!-- matrix:escnn_tensor -->`` and the next blank line) have one
row per module, as it is built by the builders below, and one column per field type: 2D (D4) and 3D (O_h), each
(k, parity) with two fields of it, and a FieldType mixing all six types (one field each). A cell is

- ``✓``: the module builds on that FieldType and a forward pass on a random input runs, giving a finite output of
  the shape ``evaluate_output_shape`` announces;
- ``✗``: building the module raises (escnn mostly raises bare ``AssertionError``s or ``ValueError`` "basis is
  empty");
- ``F``: it builds, but the forward pass raises.

The cells are parsed from the docs, so a claim in the docs that stops being true fails here. Equivariance of our
layers is tested in tests/nn/; this file only checks which FieldTypes each module accepts.
"""
from __future__ import annotations

import pathlib
import re
import warnings
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from escnn import nn
from escnn.nn.modules.equivariant_module import EquivariantModule

import escnn_tensor as et
import escnn_tensor.nn as etnn

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md"
GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
TYPES = [(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]
COLUMN_KEYS = [(d, kp) for d in (2, 3) for kp in TYPES + ["mixed"]]
SPATIAL = 4  # even, so the pooling layers (kernel 2) tile it


def spec(kp) -> List[Tuple[int, int, int]]:
    """``(k, parity, multiplicity)`` list of a column: two fields of one type, or one of each type."""
    if kp == "mixed":
        return [(k, p, 1) for k, p in TYPES]
    return [(kp[0], kp[1], 2)]


def column_name(d, kp) -> str:
    if kp == "mixed":
        return f"{d}D mixed"
    return f"{d}D ({kp[0]},{'+' if kp[1] == 1 else '−'})"


# ---------------------------------------------------------------------------------------------------------------
# how each row of the matrices is built: (d, gspace, spec) -> module


def _field_type(gs, s):
    return et.tensor_type(gs, s)


def _conv(d):
    return nn.R2Conv if d == 2 else nn.R3Conv


ESCNN: Dict[str, Callable] = {
    "R2Conv / R3Conv (kernel 3)": lambda d, gs, s: _conv(d)(_field_type(gs, s), _field_type(gs, s), 3, padding=1),
    "R2ConvTransposed / R3ConvTransposed (kernel 2, stride 2)": lambda d, gs, s: (
        nn.R2ConvTransposed if d == 2 else nn.R3ConvTransposed
    )(_field_type(gs, s), _field_type(gs, s), 2, stride=2),
    "ReLU": lambda d, gs, s: nn.ReLU(_field_type(gs, s)),
    "ELU": lambda d, gs, s: nn.ELU(_field_type(gs, s)),
    "PointwiseNonLinearity": lambda d, gs, s: nn.PointwiseNonLinearity(_field_type(gs, s)),
    "NormNonLinearity": lambda d, gs, s: nn.NormNonLinearity(_field_type(gs, s)),
    "GatedNonLinearity1 (default gates)": lambda d, gs, s: nn.GatedNonLinearity1(_field_type(gs, s)),
    "GatedNonLinearity1 (gates added by hand)": lambda d, gs, s: nn.GatedNonLinearity1(
        _field_type(gs, [(0, 1, len(_field_type(gs, s)))] + s),
        gates=["gate"] * len(_field_type(gs, s)) + ["gated"] * len(_field_type(gs, s)),
    ),
    "TensorProductModule (to scalars)": lambda d, gs, s: nn.TensorProductModule(
        _field_type(gs, s), _field_type(gs, [(0, 1, len(_field_type(gs, s)))])
    ),
    "IIDBatchNorm2d / 3d": lambda d, gs, s: (nn.IIDBatchNorm2d if d == 2 else nn.IIDBatchNorm3d)(_field_type(gs, s)),
    "NormBatchNorm": lambda d, gs, s: nn.NormBatchNorm(_field_type(gs, s)),
    "GNormBatchNorm": lambda d, gs, s: nn.GNormBatchNorm(_field_type(gs, s)),
    "NormMaxPool": lambda d, gs, s: nn.NormMaxPool(_field_type(gs, s), 2),
    "PointwiseMaxPool2D / 3D": lambda d, gs, s: (nn.PointwiseMaxPool2D if d == 2 else nn.PointwiseMaxPool3D)(
        _field_type(gs, s), 2
    ),
    "PointwiseAvgPool2D / 3D": lambda d, gs, s: (nn.PointwiseAvgPool2D if d == 2 else nn.PointwiseAvgPool3D)(
        _field_type(gs, s), 2
    ),
    "R2Upsampling / R3Upsampling": lambda d, gs, s: (nn.R2Upsampling if d == 2 else nn.R3Upsampling)(
        _field_type(gs, s), 2
    ),
}

OURS: Dict[str, Callable] = {
    "GeometricConv (kernel 3)": lambda d, gs, s: etnn.GeometricConv(
        _field_type(gs, s), _field_type(gs, s), 3, padding=1
    ),
    "GeometricConvTransposed (kernel 2, stride 2)": lambda d, gs, s: etnn.GeometricConvTransposed(
        _field_type(gs, s), _field_type(gs, s), 2, stride=2
    ),
    "PointwiseNonLinearity": lambda d, gs, s: etnn.PointwiseNonLinearity(_field_type(gs, s)),
    "GatedNonLinearity": lambda d, gs, s: etnn.GatedNonLinearity(_field_type(gs, s)),
    "GatedQuadratic": lambda d, gs, s: etnn.GatedQuadratic(_field_type(gs, s)),
    "VectorNeuronNonLinearity": lambda d, gs, s: etnn.VectorNeuronNonLinearity(_field_type(gs, s)),
    "TensorProductNonLinearity (to a scalar + the input types)": lambda d, gs, s: etnn.TensorProductNonLinearity(
        _field_type(gs, s), _field_type(gs, [(0, 1, 1)] + s)
    ),
    "TensorBatchNorm": lambda d, gs, s: etnn.TensorBatchNorm(_field_type(gs, s)),
    "TensorLayerNorm": lambda d, gs, s: etnn.TensorLayerNorm(_field_type(gs, s)),
    "NormMaxPool": lambda d, gs, s: etnn.NormMaxPool(_field_type(gs, s), 2),
    "AvgPool": lambda d, gs, s: etnn.AvgPool(_field_type(gs, s), 2),
    "Upsample": lambda d, gs, s: etnn.Upsample(_field_type(gs, s), 2),
    "ChangeOfBasis (to the type itself)": lambda d, gs, s: etnn.ChangeOfBasis(_field_type(gs, s), _field_type(gs, s)),
}

BUILDERS = {"escnn": ESCNN, "escnn_tensor": OURS}


# ---------------------------------------------------------------------------------------------------------------
# the matrices of the docs


def parse_matrix(which: str) -> Dict[str, Dict[Tuple, str]]:
    """``{row label: {(d, (k, parity) | 'mixed'): cell}}`` of the matrix after ``<!-- matrix:which -->``."""
    text = DOC.read_text()
    marker = f"<!-- matrix:{which} -->"
    assert text.count(marker) == 1, f"docs/layers.md must contain {marker} exactly once"
    block = text.split(marker, 1)[1].lstrip("\n").split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    assert len(lines) >= 3 and all(line.startswith("|") for line in lines), f"no table after {marker}"
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    expected_header = [column_name(d, kp) for d, kp in COLUMN_KEYS]
    assert header[1:] == expected_header, f"matrix {which}: columns {header[1:]}, expected {expected_header}"
    out = {}
    for row in rows:
        label = row[0].strip("`* ")
        assert len(row) == 1 + len(COLUMN_KEYS), f"matrix {which}, row {label!r}: {len(row) - 1} cells"
        assert label not in out, f"matrix {which}: row {label!r} twice"
        out[label] = dict(zip(COLUMN_KEYS, row[1:]))
    return out


def observe(builder: Callable, d: int, kp) -> Tuple[str, str]:
    """``('✓' | '✗' | 'F', detail)``: build the module on the column's FieldType and run a forward pass."""
    gs = GS[d]
    s = spec(kp)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = builder(d, gs, s)
        except Exception as err:  # noqa: BLE001 - the kind of refusal is reported, not asserted
            return "✗", f"{type(err).__name__}: {str(err).strip()[:200]}"
        x = nn.GeometricTensor(torch.randn((2, module.in_type.size) + (SPATIAL,) * d), module.in_type)
        try:
            y = module(x)
        except Exception as err:  # noqa: BLE001
            return "F", f"{type(err).__name__}: {str(err).strip()[:200]}"
    assert isinstance(y, nn.GeometricTensor) and y.type == module.out_type
    assert tuple(y.shape) == tuple(module.evaluate_output_shape(x.shape))
    assert torch.isfinite(y.tensor).all()
    return "✓", ""


CASES = [
    (which, label, key)
    for which in ("escnn", "escnn_tensor")
    for label in BUILDERS[which]
    for key in COLUMN_KEYS
]


@pytest.mark.parametrize(
    "which,label,key", CASES, ids=[f"{w}-{lab.split(' ')[0]}-{column_name(*k)}" for w, lab, k in CASES]
)
def test_cell_matches_behaviour(which, label, key):
    matrix = parse_matrix(which)
    assert label in matrix, f"docs/layers.md matrix {which} has no row {label!r}"
    claimed = matrix[label][key]
    assert claimed in ("✓", "✗", "F"), f"cell {label!r} {column_name(*key)}: {claimed!r} is not ✓, ✗ or F"
    seen, detail = observe(BUILDERS[which][label], *key)
    assert seen == claimed, f"{which} {label} on {column_name(*key)}: docs say {claimed}, observed {seen} {detail}"


@pytest.mark.parametrize("which", ["escnn", "escnn_tensor"])
def test_matrix_rows_are_the_tested_modules(which):
    assert sorted(parse_matrix(which)) == sorted(BUILDERS[which])


def test_our_layers_accept_every_column():
    """Our matrix claims ✓ everywhere: checked cell by cell above; here, that the docs indeed say so."""
    for label, row in parse_matrix("escnn_tensor").items():
        assert set(row.values()) == {"✓"}, f"{label}: {row}"


# pixelwise layers that accept any escnn fields with orthogonal representations (norms) or any representation at all
# (pooling, upsampling); tests/nn/test_layers_any_fields.py checks them
ACCEPTS_ANY_FIELDS = {"PointwiseNonLinearity", "GatedNonLinearity", "VectorNeuronNonLinearity", "TensorBatchNorm",
                      "TensorLayerNorm", "NormMaxPool", "AvgPool", "Upsample"}


def layer_names() -> List[str]:
    return [
        name for name in etnn.__all__
        if isinstance(getattr(etnn, name), type) and issubclass(getattr(etnn, name), EquivariantModule)
    ]


def test_every_layer_of_the_package_is_in_the_table_and_the_matrix():
    names = layer_names()
    assert len(names) == 13, names  # GeometricConv .. Upsample, ChangeOfBasis (isolate and the warning class are not layers)
    text = DOC.read_text()
    main = text.split("<!-- matrix:escnn -->", 1)[0]
    ours = {label.split(" ")[0] for label in parse_matrix("escnn_tensor")}
    for name in names:
        assert re.search(rf"^\| `{name}`", main, flags=re.M), f"main table of docs/layers.md has no row for {name}"
        assert name in ours, f"matrix escnn_tensor has no row for {name}"


def test_our_refusals_of_non_tensor_fields_are_clear():
    """The convolutions (and ChangeOfBasis) take any escnn fields; a layer that refuses fields that are not tensor fields
    says so in one ValueError naming in_type and the escnn module to use instead."""
    from escnn_tensor.nn._fields import ESCNN_ALTERNATIVES

    gs = GS[2]
    regular = nn.FieldType(gs, [gs.regular_repr])
    for name in layer_names():
        cls = getattr(etnn, name)
        if "Conv" in name or name == "ChangeOfBasis":
            args = (regular, regular, 3) if "Conv" in name else (regular, regular)
            assert cls(*args).in_type is regular
            continue
        try:
            cls(regular)
        except ValueError as err:
            assert "in_type" in str(err) and ESCNN_ALTERNATIVES[name] in str(err), (name, str(err))
        else:
            assert name in ACCEPTS_ANY_FIELDS, name


def test_escnn_has_no_per_sample_normalisation():
    """The table's "none: escnn 1.0.11 has batch norms only" beside TensorLayerNorm."""
    norms = sorted(n for n in dir(nn) if "Norm" in n and "NonLinearity" not in n and "Pool" not in n)
    assert norms and all("BatchNorm" in n for n in norms), norms
