"""A catalogue of bad inputs across the public API: each row is a call, the exception type it must raise and a regex
its message must match, naming the argument (or operand) and what was wrong. After the table, a canary: correct
calls of the same functions work. New layers append rows to BAD_INPUTS and calls to CANARY."""
import pickle

import numpy as np
import pytest
import torch
from escnn import gspaces
from escnn import nn as enn
from escnn.group import change_basis, directsum

import escnn_tensor as et
from escnn_tensor import _io, grid, plotting
from escnn_tensor.compare.config import check_config
from escnn_tensor._pickling import rebuild_gspace
from escnn_tensor.groups import action_key, check_dimension, check_gspace, check_signed_permutation
from escnn_tensor.image import GeometricImage, MultiImage, from_geometric_tensor, functional, time_series, to_geometric_tensor
from escnn_tensor.models import GroupAverage, autoregressive_map
from escnn_tensor import data as etdata
from escnn_tensor.models import DilResNet, ResNet, UNet
from escnn_tensor.nn import (
    ChangeOfBasis,
    AvgPool,
    GatedNonLinearity,
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
from escnn_tensor.representations import check_order, check_parity
from escnn_tensor.testing import assert_equivariant, random_input

GS2 = et.hyperoctahedral_gspace(2)
GS3 = et.hyperoctahedral_gspace(3)
T2 = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1)])
T3 = et.tensor_type(GS3, [(0, 1, 1), (1, 1, 1)])
REG2 = enn.FieldType(GS2, [GS2.regular_repr])
SKEW2 = enn.FieldType(GS2, [change_basis(directsum([GS2.fibergroup.irrep(0, 0), GS2.fibergroup.irrep(1, 0)]),
                                         np.array([[1.0, 1.0], [0.0, 1.0]]), "skewed")])  # not orthogonal
PSEUDO2 = et.tensor_type(GS2, [(0, -1, 1)])
VEC2 = et.tensor_type(GS2, [(1, 1, 1)])
CONV = GeometricConv(T2, T2, 3, padding=1).double()
ROT45 = np.array([[np.sqrt(0.5), -np.sqrt(0.5)], [np.sqrt(0.5), np.sqrt(0.5)]])
E3 = GS3.fibergroup.elements[1]


def img(N=5, k=1, parity=1, D=2, is_torus=True, batch=()):
    g = torch.Generator().manual_seed(N * 10 + k)
    return GeometricImage(torch.randn(batch + (N,) * D + (D,) * k, generator=g, dtype=torch.float64), parity, D, is_torus, k=k)


def multi(batch=2, N=5, D=2, keys=((0, 1, 2), (1, -1, 1))):
    g = torch.Generator().manual_seed(batch * 100 + N)
    return MultiImage({(k, p): torch.randn((batch, c) + (N,) * D + (D,) * k, generator=g, dtype=torch.float64) for k, p, c in keys}, D)


def gt2(ft=T2, N=5, dtype=torch.float64):
    return random_input(ft, N, 2, dtype, torch.Generator().manual_seed(0))


def f32(ft=T2, N=4):
    return gt2(ft, N, torch.float32)


class NotAType(enn.FieldType):
    pass


def row(name, call, exc, match, marks=()):
    return pytest.param(call, exc, match, id=name, marks=marks)


# known unclear error, reported to the lead (models/_base.py): the parameter search builds a trial GeometricConv whose
# own memory check refuses first, with a ~25,000-character message listing every field and not naming params

def _config(**changes):
    """A valid tiny harness configuration with ``changes``."""
    from escnn_tensor.compare import CompareConfig

    base = dict(tasks=["gravity"], models=["resnet"], families=["plain"], augment=False, params=None, epochs=1,
                n_train=2, n_val=1, n_test=1, size=8, seeds=[0], lrs=[1e-2], batch_size=2, dtype="float32",
                out="unused")
    base.update(changes)
    return CompareConfig(**base)


def _flipped_checkpoint():
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "ckpt.pt"
    _io.save_checkpoint({"w": torch.arange(64.0)}, path)
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _empty_file():
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "empty.pt"
    path.write_bytes(b"")
    return path


BAD_INPUTS = [
    # ---- groups -----------------------------------------------------------------------------------------------
    row("hyperoctahedral_gspace d=4", lambda: et.hyperoctahedral_gspace(4), ValueError, r"d must be 2 or 3.*got d=4"),
    row("hyperoctahedral_gspace d='2'", lambda: et.hyperoctahedral_gspace("2"), TypeError, r"d must be the integer 2 or 3, got '2'"),
    row("hyperoctahedral_gspace d=True", lambda: et.hyperoctahedral_gspace(True), TypeError, r"d must be the integer 2 or 3, got True"),
    row("check_dimension D=1.0", lambda: check_dimension(2.0, "D"), TypeError, r"D must be the integer 2 or 3, got 2\.0"),
    row("group_elements of a string", lambda: et.group_elements("D4"), TypeError, r"gspace must be an escnn GSpace.*got str"),
    row("group_elements of C8", lambda: et.group_elements(gspaces.rot2dOnR2(8)), ValueError, r"(?s)gspace C8_on_R2.*not a signed permutation"),
    row("check_gspace SO(2)", lambda: check_gspace(gspaces.rot2dOnR2(-1)), ValueError, r"gspace SO\(2\)_on_R2.*continuous group"),
    row("group_matrices None", lambda: et.group_matrices(None), TypeError, r"gspace must be an escnn GSpace.*NoneType"),
    row("action_key int", lambda: action_key(3), TypeError, r"gspace must be an escnn GSpace.*int"),
    row("group_matrix g string", lambda: et.group_matrix(GS2, "e"), TypeError, r"g must be an escnn GroupElement.*got str"),
    row("group_matrix g of another group", lambda: et.group_matrix(GS2, E3), ValueError, r"g must be an element of D4.*FullOctahedral"),
    row("check_signed_permutation 3x3 for d=2", lambda: check_signed_permutation(np.eye(3), 2), ValueError, r"g must be a \(2, 2\) signed permutation"),
    row("check_signed_permutation rot45", lambda: check_signed_permutation(ROT45, 2), ValueError, r"g must be a \(2, 2\) signed permutation.*0\.7071"),
    row("check_signed_permutation text", lambda: check_signed_permutation("abc", 2, "M"), TypeError, r"M must be a \(2, 2\) signed permutation.*got str"),
    row("grid_to_escnn non-square 2D", lambda: et.grid_to_escnn(torch.zeros(4, 5), 2), ValueError, r"grid_to_escnn: the d=2 spatial axes of x must have equal sizes \(a square grid.*\(4, 5\)"),
    row("escnn_to_grid non-cubic 3D", lambda: et.escnn_to_grid(torch.zeros(2, 3, 3, 4), 3), ValueError, r"escnn_to_grid: the d=3 spatial axes of x must have equal sizes \(a cubic grid.*\(3, 3, 4\)"),
    row("grid_to_escnn non-cubic 3D", lambda: et.grid_to_escnn(torch.zeros(3, 3, 4), 3), ValueError, r"grid_to_escnn: the d=3 spatial axes of x must have equal sizes \(a cubic grid.*\(3, 3, 4\)"),
    row("grid_to_escnn non-square with n_trailing", lambda: et.grid_to_escnn(torch.zeros(3, 4, 2), 2, n_trailing=1), ValueError, r"spatial sizes \(3, 4\).*n_trailing=1"),
    row("grid_to_escnn numpy x", lambda: et.grid_to_escnn(np.zeros((3, 3)), 2), TypeError, r"grid_to_escnn: x must be a torch tensor, got ndarray"),
    row("grid_to_escnn n_trailing=-1", lambda: et.grid_to_escnn(torch.zeros(3, 3), 2, n_trailing=-1), ValueError, r"n_trailing must be a non-negative integer, got -1"),
    row("escnn_to_grid too few axes", lambda: et.escnn_to_grid(torch.zeros(3), 2), ValueError, r"escnn_to_grid: x needs at least d \+ n_trailing = 2 axes"),
    row("grid_to_escnn d=4", lambda: et.grid_to_escnn(torch.zeros(3, 3), 4), ValueError, r"d must be 2 or 3"),
    # ---- representations --------------------------------------------------------------------------------------
    row("tensor_rep k=-1", lambda: et.tensor_rep(GS2, -1, 1), ValueError, r"k \(tensor order\) must be a non-negative integer, got -1"),
    row("tensor_rep k=1.0", lambda: et.tensor_rep(GS2, 1.0, 1), TypeError, r"k \(tensor order\) must be a non-negative integer, got 1\.0"),
    row("tensor_rep parity=0 (ginjax)", lambda: et.tensor_rep(GS2, 1, 0), ValueError, r"parity must be \+1 \(tensor\) or -1.*ginjax"),
    row("tensor_rep parity='+'", lambda: et.tensor_rep(GS2, 1, "+"), TypeError, r"parity must be the integer \+1"),
    row("tensor_rep gspace string", lambda: et.tensor_rep("gs", 1, 1), TypeError, r"gspace must be an escnn GSpace"),
    row("tensor_rep too large", lambda: et.tensor_rep(GS3, 9, 1), ValueError, r"k=9.*would need about .*GiB"),
    row("check_order bool", lambda: check_order(True), TypeError, r"k \(tensor order\) must be a non-negative integer, got True"),
    row("check_parity 2", lambda: check_parity(2, "p"), ValueError, r"p must be \+1 \(tensor\) or -1 \(pseudotensor\), got 2"),
    row("tensor_type pair instead of triple", lambda: et.tensor_type(GS2, [(1, 1)]), ValueError, r"fields\[0\] must be a \(k, parity, multiplicity\) triple"),
    row("tensor_type string", lambda: et.tensor_type(GS2, "vectors"), TypeError, r"fields must be a sequence of \(k, parity, multiplicity\) triples.*got str"),
    row("tensor_type mapping with bad key", lambda: et.tensor_type(GS2, {(1,): 2}), ValueError, r"fields: a mapping must have \(k, parity\) keys, got key \(1,\)"),
    row("tensor_type negative multiplicity", lambda: et.tensor_type(GS2, [(1, 1, -2)]), ValueError, r"multiplicity of \(k=1, parity=\+1\) must be an integer >= 0, got -2"),
    row("tensor_type no field", lambda: et.tensor_type(GS2, [(1, 1, 0)]), ValueError, r"fields must describe at least one field"),
    row("tensor_type parity 2", lambda: et.tensor_type(GS2, [(1, 2, 1)]), ValueError, r"parity in fields must be \+1"),
    row("tensor_type continuous gspace", lambda: et.tensor_type(gspaces.rot2dOnR2(-1), [(0, 1, 1)]), ValueError, r"gspace SO\(2\)_on_R2.*continuous"),
    row("field_signature of a string", lambda: et.field_signature("x"), TypeError, r"field_type.*FieldType"),
    row("field_signature regular field", lambda: et.field_signature(REG2), ValueError, r"not tensor fields: field 0 \(regular, size 8\)"),
    # ---- filters ----------------------------------------------------------------------------------------------
    row("invariant_filters kernel_size=0", lambda: et.invariant_filters(GS2, 0, 1, 1), ValueError, r"kernel_size must be a positive integer, got 0"),
    row("invariant_filters kernel_size=3.0", lambda: et.invariant_filters(GS2, 3.0, 1, 1), TypeError, r"kernel_size must be a positive integer"),
    row("invariant_filters k=-1", lambda: et.invariant_filters(GS2, 3, -1, 1), ValueError, r"k \(tensor order\) must be a non-negative integer"),
    row("invariant_filters parity=1.0", lambda: et.invariant_filters(GS2, 3, 1, 1.0), TypeError, r"parity must be the integer \+1"),
    row("invariant_filters C8", lambda: et.invariant_filters(gspaces.rot2dOnR2(8), 3, 0, 1), ValueError, r"(?s)gspace C8_on_R2.*not a signed permutation"),
    row("invariant_filters too large", lambda: et.invariant_filters(GS3, 3, 8, 1), ValueError, r"invariant_filters.*would need about .*GiB"),
    row("num_invariant_filters gspace None", lambda: et.num_invariant_filters(None, 3, 1, 1), TypeError, r"gspace must be an escnn GSpace"),
    # ---- grid vocabulary --------------------------------------------------------------------------------------
    row("same_on_axes unequal", lambda: grid.same_on_axes((3, 5), 2, "kernel_size"), ValueError, r"kernel_size=\(3, 5\) differs between axes"),
    row("same_on_axes float", lambda: grid.same_on_axes(3.5, 2, "stride"), TypeError, r"stride must be an integer or a tuple of 2 equal integers, got 3\.5"),
    row("per_axis wrong length", lambda: grid.per_axis((1, 2, 3), 2, "dilation"), ValueError, r"dilation must be an integer or a tuple of 2 integers, got \(1, 2, 3\)"),
    row("per_axis zero", lambda: grid.per_axis(0, 2, "size"), ValueError, r"size must be an integer >= 1, got 0"),
    row("resolve_padding unknown word", lambda: grid.resolve_padding("full", 2, 3), ValueError, r"padding must be an integer >= 0.*got the string 'full'"),
    row("resolve_padding same with even kernel", lambda: grid.resolve_padding("same", 2, 4), ValueError, r"padding='same' with kernel_size=4.*odd number"),
    row("resolve_padding negative", lambda: grid.resolve_padding(-1, 2, 3), ValueError, r"padding must be an integer >= 0, got -1"),
    row("resolve_padding float", lambda: grid.resolve_padding(1.5, 2, 3), TypeError, r"padding must be an integer >= 0.*got 1\.5"),
    row("symmetric_padding uneven sides", lambda: grid.symmetric_padding(((1, 2), (1, 2)), 2, 3), ValueError, r"padding=\(\(1, 2\), \(1, 2\)\) differs between the two sides"),
    row("symmetric_padding uneven axes", lambda: grid.symmetric_padding((1, 2), 2, 3), ValueError, r"padding=\(1, 2\) differs between axes"),
    # ---- GeometricConv: constructor ----------------------------------------------------------------------------
    row("GeometricConv in_type string", lambda: GeometricConv("t", T2, 3), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("GeometricConv out_type None", lambda: GeometricConv(T2, None, 3), TypeError, r"out_type must be an escnn FieldType.*got NoneType"),
    row("GeometricConv two_stage on regular fields", lambda: GeometricConv(T2, REG2, 3, method="two_stage"), ValueError, r"method='two_stage' needs tensor fields"),
    row("GeometricConv gspaces differ", lambda: GeometricConv(T2, T3, 3), ValueError, r"in_type and out_type must live on the same gspace"),
    row("GeometricConv continuous gspace", lambda: GeometricConv(enn.FieldType(gspaces.rot2dOnR2(-1), [gspaces.rot2dOnR2(-1).trivial_repr]), T2, 3), ValueError, r"continuous group"),
    row("GeometricConv kernel_size=0", lambda: GeometricConv(T2, T2, 0), ValueError, r"kernel_size must be an integer >= 1, got 0"),
    row("GeometricConv kernel_size per axis", lambda: GeometricConv(T2, T2, (3, 5)), ValueError, r"kernel_size=\(3, 5\) differs between axes"),
    row("GeometricConv padding word", lambda: GeometricConv(T2, T2, 3, padding="full"), ValueError, r"padding must be .*'full'"),
    row("GeometricConv padding per axis", lambda: GeometricConv(T2, T2, 3, padding=(1, 2)), ValueError, r"padding=\(1, 2\) differs between axes"),
    row("GeometricConv padding same, even K", lambda: GeometricConv(T2, T2, 2, padding="same"), ValueError, r"padding='same' with kernel_size=2"),
    row("GeometricConv stride=0", lambda: GeometricConv(T2, T2, 3, stride=0), ValueError, r"stride must be an integer >= 1, got 0"),
    row("GeometricConv dilation per axis", lambda: GeometricConv(T2, T2, 3, dilation=(1, 2)), ValueError, r"dilation=\(1, 2\) differs between axes"),
    row("GeometricConv padding_mode", lambda: GeometricConv(T2, T2, 3, padding_mode="wrap"), ValueError, r"padding_mode must be one of .*'wrap'"),
    row("GeometricConv bias=1", lambda: GeometricConv(T2, T2, 3, bias=1), TypeError, r"bias must be True or False, got 1"),
    row("GeometricConv initialize='yes'", lambda: GeometricConv(T2, T2, 3, initialize="yes"), TypeError, r"initialize must be True or False"),
    row("GeometricConv no kernel exists", lambda: GeometricConv(PSEUDO2, VEC2, 1), ValueError, r"no nonzero equivariant kernel of size 1.*kernel_size"),
    # ---- GeometricConv: forward and shapes ---------------------------------------------------------------------
    row("GeometricConv forward on a tensor", lambda: CONV(torch.zeros(1, 3, 5, 5)), TypeError, r"input must be an escnn GeometricTensor.*got Tensor"),
    row("GeometricConv forward wrong type", lambda: CONV(gt2(VEC2)), ValueError, r"GeometricConv: input has FieldType .*but the in_type is"),
    row("GeometricConv evaluate_output_shape", lambda: CONV.evaluate_output_shape((2, 99, 9, 9)), ValueError, r"input_shape must be \(batch, 3, N, N\), got \(2, 99, 9, 9\)"),
    # ---- GeometricImage ---------------------------------------------------------------------------------------
    row("GeometricImage numpy data", lambda: GeometricImage(np.zeros((3, 3)), 1, 2), TypeError, r"data must be a torch tensor.*got ndarray"),
    row("GeometricImage integer data", lambda: GeometricImage(torch.zeros(3, 3, dtype=torch.int64), 1, 2), TypeError, r"data must be a floating-point tensor, got dtype torch\.int64"),
    row("GeometricImage rotation of a rectangle", lambda: GeometricImage(torch.zeros(3, 4), 1, 2).times_group_element(np.array([[0, -1], [1, 0]])), ValueError, r"does not map the grid \(3, 4\) onto itself.*flips, the group D2"),
    row("GeometricImage + batch 1 and 3", lambda: img(batch=(1,)) + img(batch=(3,)), ValueError, r"\+: images must have the same batch shape \(no broadcasting\), got batch shapes \(1,\) and \(3,\)"),
    row("GeometricImage * batch 3 and 1", lambda: img(batch=(3,)) * img(batch=(1,)), ValueError, r"\*: images must have the same batch shape \(no broadcasting\), got batch shapes \(3,\) and \(1,\)"),
    row("GeometricImage.zeros N string", lambda: GeometricImage.zeros("5", 1, 1, 2), TypeError, r"N must be an integer"),
    row("GeometricImage tensor axis size", lambda: GeometricImage(torch.zeros(3, 3, 3), 1, 2), ValueError, r"tensor axes must all have size D=2"),
    row("GeometricImage parity 0", lambda: GeometricImage(torch.zeros(3, 3), 0, 2), ValueError, r"parity must be \+1 .*ginjax"),
    row("GeometricImage D=4", lambda: GeometricImage(torch.zeros(3, 3), 1, 4), ValueError, r"D must be 2 or 3"),
    row("GeometricImage is_torus length", lambda: GeometricImage(torch.zeros(3, 3), 1, 2, is_torus=(True,)), TypeError, r"is_torus must be a bool or a tuple of 2 bools"),
    row("GeometricImage + other N", lambda: img(5) + img(7), ValueError, r"\+: images must have the same \(D, N, k, parity, is_torus\)"),
    row("GeometricImage + number", lambda: img() + 3.0, TypeError, r"\+: expected a GeometricImage, got float"),
    row("GeometricImage - other parity", lambda: img(parity=1) - img(parity=-1), ValueError, r"-: images must have the same"),
    row("convolve_with a string", lambda: img().convolve_with("f"), TypeError, r"filter_image must be a GeometricImage, got str"),
    row("convolve_with a 3D filter", lambda: img().convolve_with(img(3, 0, D=3)), ValueError, r"filter_image must be a 2D image without batch axes"),
    row("convolve_with even filter, same", lambda: img().convolve_with(img(4, 0), padding="same"), ValueError, r"padding='same' needs an odd filter side.*got 4"),
    row("convolve_with stride 0", lambda: img().convolve_with(img(3, 0), stride=0), ValueError, r"stride must be an integer >= 1, got 0"),
    row("contract out of range", lambda: img(k=2).contract(0, 5), ValueError, r"contraction index must be a tensor index in 0\.\.1 \(k=2\), got 5"),
    row("contract same index", lambda: img(k=2).contract(1, 1), ValueError, r"contraction indices must all be distinct"),
    row("transpose not a permutation", lambda: img(k=2).transpose((0, 0)), ValueError, r"axes must be a permutation of 0\.\.1 \(k=2\), got \(0, 0\)"),
    row("levi_civita_contract wrong count", lambda: img(k=2).levi_civita_contract((0, 1)), ValueError, r"indices must hold D - 1 = 1 tensor indices"),
    row("translate wrong length", lambda: img().translate((1,)), ValueError, r"shift must be 2 integers, got \(1,\)"),
    row("translate without torus", lambda: img(is_torus=False).translate((1, 0)), ValueError, r"translate needs a torus on every axis"),
    row("max_pool size not dividing", lambda: img(5).max_pool(2), ValueError, r"pool size must divide the image side N=5, got 2"),
    row("times_group_element rot45", lambda: img().times_group_element(ROT45), ValueError, r"g must be a \(2, 2\) signed permutation"),
    row("times_group_element 3D element", lambda: img().times_group_element(E3), ValueError, r"g is an element of FullOctahedral, not of D4"),
    row("GeometricImage.allclose other", lambda: img().allclose("x"), TypeError, r"allclose: other must be a GeometricImage, got str"),
    # ---- MultiImage -------------------------------------------------------------------------------------------
    row("MultiImage wrong value shape", lambda: MultiImage({(1, 1): torch.zeros(2, 1, 5, 5)}, 2), ValueError, r"value of key \(k=1, parity=\+1\) must have shape \(B, C, N,\)\*2 \+ \(2,\)\*1"),
    row("MultiImage ginjax parity key", lambda: MultiImage({(1, 0): torch.zeros(2, 1, 5, 5, 2)}, 2), ValueError, r"parity in key must be \+1 .*ginjax"),
    row("MultiImage.append other grid", lambda: multi().append(1, -1, torch.zeros(2, 1, 4, 4, 2, dtype=torch.float64)), ValueError, r"append: image_block for key \(k=1, parity=-1\) must match \(2, 1, 5, 5, 2\)"),
    row("MultiImage.append ginjax parity", lambda: multi().append(1, 0, torch.zeros(2, 1, 5, 5, 2)), ValueError, r"parity in key must be \+1 .*ginjax"),
    row("MultiImage item assignment other batch", lambda: multi().__setitem__((2, 1), torch.zeros(3, 1, 5, 5, 2, 2, dtype=torch.float64)), ValueError, r"all values must share batch size and grid size"),
    row("MultiImage.expand size not dividing", lambda: multi().expand(1, 3), ValueError, r"expand: size must be a positive integer dividing axis 1"),
    row("MultiImage.combine_axes to one axis", lambda: multi().combine_axes((0, 1)), ValueError, r"combine_axes: axes must be 2 or more adjacent leading axes .*leaving at least the batch and channel axes"),
    row("MultiImage.get_subset scalar", lambda: multi().get_subset(torch.tensor(0)), ValueError, r"get_subset: idxs must be a 1-D sequence of integer indices"),
    row("MultiImage.get_one keepdims=False", lambda: multi().get_one(0, keepdims=False), ValueError, r"would leave no batch axis"),
    row("MultiImage.from_scalar_multi_image wrong count", lambda: multi().to_scalar_multi_image().from_scalar_multi_image({(1, 1): 5}), ValueError, r"needs 10 scalar channels, got 4"),
    row("MultiImage.concat_inverse too many", lambda: multi().concat_inverse({(0, 1): 3}), ValueError, r"asks 3 entries of key \(0, 1\) along axis 1, which has 2"),
    row("MultiImage.from_vector wrong length", lambda: MultiImage.from_vector(torch.zeros(3), multi()), ValueError, r"vector must be a 1-D tensor of multi_image.size\(\) = 200 values"),
    row("to_geometric_tensor empty", lambda: to_geometric_tensor(MultiImage({}, 2), GS2), ValueError, r"needs a MultiImage with the \(batch, channels\) leading axes, got 0"),
    row("time_series_idxs no window", lambda: time_series.time_series_idxs(4, 2, 1, 5), ValueError, r"no window of past_steps=4 \+ future_steps=2 steps"),
    row("autoregressive_step future_steps 2", lambda: time_series.autoregressive_step(multi(), multi(), 1, future_steps=2), ValueError, r"future_steps must be 1, got 2"),
    row("functional.convolve in_c mismatch", lambda: functional.convolve(2, torch.zeros(1, 2, 5, 5), torch.zeros(1, 3, 3, 3), True), ValueError, r"convolve: the second axes \(in_c\) of image and filter_image must be equal"),
    row("functional.convolve lhs_dilation", lambda: functional.convolve(2, torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), True, lhs_dilation=(2, 2)), ValueError, r"lhs_dilation .* is not supported"),
    row("functional.parse_shape data", lambda: functional.parse_shape(torch.zeros(5, 5, 2), 2), TypeError, r"shape must be a tuple of integers"),
    row("functional.get_contraction_indices odd", lambda: functional.get_contraction_indices(3, 2), ValueError, r"initial_k - final_k must be even"),
    row("functional.multicontract repeated index", lambda: functional.multicontract(torch.zeros(2, 2, 2), ((0, 0),)), ValueError, r"indices must be distinct \(i, j\) pairs"),
    row("GroupAverage type mismatch", lambda: GroupAverage(lambda t: t, T2, T3), ValueError, r"in_type and out_type must share a gspace"),
    row("GroupAverage model output shape", lambda: GroupAverage(lambda t: t[:, :1], T2, T2)(gt2()), ValueError, r"the model must return a tensor \(B, 3, \*grid\)"),
    row("autoregressive_map type change", lambda: autoregressive_map(lambda x: enn.GeometricTensor(x.tensor[:, :1], et.tensor_type(GS2, [(0, 1, 1)])), gt2(), 2), ValueError, r"the prediction must have the input's field type and shape"),
    row("autoregressive_map steps 0", lambda: autoregressive_map(lambda x: x, gt2(), 0), ValueError, r"steps must be an integer >= 1, got 0"),
    row("MultiImage list data", lambda: MultiImage([torch.zeros(1)], 2), TypeError, r"data must be a mapping \{\(k, parity\): tensor\}, got list"),
    row("MultiImage integer values", lambda: MultiImage({(0, 1): torch.zeros(2, 1, 5, 5, dtype=torch.int32)}, 2), TypeError, r"value of key \(0, 1\) must be a floating-point torch tensor"),
    row("MultiImage batch differs between keys", lambda: MultiImage({(0, 1): torch.zeros(1, 1, 5, 5), (1, 1): torch.zeros(3, 1, 5, 5, 2)}, 2), ValueError, r"all values must share batch size and grid size"),
    row("MultiImage + batch 1 and 3", lambda: multi(batch=1) + multi(batch=3), ValueError, r"\+: MultiImages must have the same batch size \(no broadcasting\), got batch sizes 1 and 3"),
    row("MultiImage - batch 3 and 1", lambda: multi(batch=3) - multi(batch=1), ValueError, r"-: MultiImages must have the same batch size.*3 and 1"),
    row("MultiImage + other N", lambda: multi(N=5) + multi(N=7), ValueError, r"\+: MultiImages must have the same grid size N, got N=5 and N=7"),
    row("MultiImage + other signature", lambda: multi() + multi(keys=((0, 1, 1),)), ValueError, r"\+: MultiImages must have the same D, is_torus and signature"),
    row("MultiImage + GeometricImage", lambda: multi() + img(), TypeError, r"\+: expected a MultiImage, got GeometricImage"),
    row("MultiImage concat axis=2", lambda: multi().concat(multi(), axis=2), ValueError, r"axis must be 0 \(batch\) or 1 \(channels\), got 2"),
    row("MultiImage concat channels, other batch", lambda: multi(batch=2).concat(multi(batch=3)), ValueError, r"concat\(axis=1\): MultiImages must have the same batch size and grid size N.*\(2, 5\) and \(3, 5\)"),
    row("MultiImage concat batch, other N", lambda: multi(N=5).concat(multi(N=7), axis=0), ValueError, r"concat\(axis=0\): MultiImages must have the same grid size N"),
    row("MultiImage.from_numpy_dict parity -1", lambda: MultiImage.from_numpy_dict({(1, -1): np.zeros((1, 1, 5, 5, 2))}, 2), ValueError, r"parity in key \(1, -1\) must be ginjax's 0 \(tensor\) or 1"),
    row("MultiImage.allclose number", lambda: multi().allclose(3), TypeError, r"allclose: other must be a MultiImage, got int"),
    # ---- translators ------------------------------------------------------------------------------------------
    row("to_geometric_tensor string", lambda: to_geometric_tensor("mi", GS2), TypeError, r"multi_image must be an escnn_tensor\.MultiImage, got str"),
    row("to_geometric_tensor D mismatch", lambda: to_geometric_tensor(multi(), GS3), ValueError, r"gspace .* acts on R\^3, but the MultiImage has D=2"),
    row("to_geometric_tensor gspace string", lambda: to_geometric_tensor(multi(), "gs"), TypeError, r"target must be an escnn GSpace \(fields in canonical order\) or a FieldType \(fields in its order\), got str"),
    row("to_geometric_tensor target type with other fields (issue 20 item 9)", lambda: to_geometric_tensor(multi(), et.tensor_type(GS2, [(1, -1, 1), (0, 1, 1)])), ValueError, r"^target field type holds 1 x \(k=0, parity=\+1\), 1 x \(k=1, parity=-1\), but the MultiImage holds 2 x \(k=0, parity=\+1\), 1 x \(k=1, parity=-1\): every \(k, parity\) needs as many fields"),
    row("to_geometric_tensor target type with a vector for a pseudovector", lambda: to_geometric_tensor(multi(), et.tensor_type(GS2, [(1, 1, 1), (0, 1, 2)])), ValueError, r"target field type holds 2 x \(k=0, parity=\+1\), 1 x \(k=1, parity=\+1\), but the MultiImage holds .*1 x \(k=1, parity=-1\)"),
    row("to_geometric_tensor target type regular", lambda: to_geometric_tensor(multi(), REG2), ValueError, r"not tensor fields: field 0 \(regular"),
    row("from_geometric_tensor tensor", lambda: from_geometric_tensor(torch.zeros(1, 3, 5, 5)), TypeError, r"gt must be an escnn GeometricTensor, got Tensor"),
    row("from_geometric_tensor regular", lambda: from_geometric_tensor(gt2(REG2)), ValueError, r"not tensor fields: field 0 \(regular"),
    row("from_geometric_tensor is_torus", lambda: from_geometric_tensor(gt2(), is_torus="yes"), TypeError, r"is_torus must be a bool or a tuple of 2 bools"),
    # ---- plotting ---------------------------------------------------------------------------------------------
    row("plot_image D=4", lambda: plotting.plot_image(torch.zeros(3, 3), 1, 4), ValueError, r"D must be 2 or 3"),
    row("plot_image list data", lambda: plotting.plot_image([[0.0]], 1, 2), TypeError, r"data must be a torch\.Tensor or numpy\.ndarray, got list"),
    row("plot_image complex data", lambda: plotting.plot_image(torch.zeros(3, 3, dtype=torch.complex64), 1, 2), TypeError, r"data must be real"),
    row("plot_image non-square", lambda: plotting.plot_image(torch.zeros(3, 4), 1, 2), ValueError, r"data must have shape .*got shape \(3, 4\)"),
    row("plot_image parity 0", lambda: plotting.plot_image(torch.zeros(3, 3), 0, 2), ValueError, r"parity must be \+1"),
    row("plot_image z_slices in 2D", lambda: plotting.plot_image(torch.zeros(3, 3), 1, 2, z_slices=0), ValueError, r"z_slices selects slices of 3D images"),
    row("plot_image z_slices out of range", lambda: plotting.plot_image(torch.zeros(3, 3, 3), 1, 3, z_slices=[5]), ValueError, r"z_slices must hold integers in \[-3, 3\)"),
    row("plot_image ax string", lambda: plotting.plot_image(torch.zeros(3, 3), 1, 2, ax="ax"), TypeError, r"ax must be a matplotlib Axes or None, got str"),
    row("plot_image vmax negative", lambda: plotting.plot_image(torch.zeros(3, 3), 1, 2, vmax=-1.0), ValueError, r"vmax must be a positive finite number, got -1\.0"),
    row("plot_images empty", lambda: plotting.plot_images([]), ValueError, r"items must be a non-empty sequence"),
    row("plot_images bad item", lambda: plotting.plot_images([torch.zeros(3, 3)]), ValueError, r"items\[0\] must be a \(data, parity\)"),
    row("plot_images ncols=0", lambda: plotting.plot_images([(torch.zeros(3, 3), 1)], ncols=0), ValueError, r"ncols must be a positive integer, got 0"),
    # ---- testing helpers --------------------------------------------------------------------------------------
    row("assert_equivariant of a zero map", lambda: assert_equivariant(lambda x: enn.GeometricTensor(x.tensor * 0, x.type), gt2()), ValueError, r"f\(x\) is identically zero"),
    row("assert_equivariant on a tensor", lambda: assert_equivariant(CONV, torch.zeros(1, 3, 5, 5)), TypeError, r"x must be .*GeometricTensor"),
    row("random_input of a string", lambda: random_input("ft"), TypeError, r"field_type must be .*FieldType"),
    row("random_input spatial=0", lambda: random_input(T2, 0), ValueError, r"random_input: spatial must be a positive integer, got 0"),
    row("random_input batch=1.5", lambda: random_input(T2, 3, 1.5), TypeError, r"random_input: batch must be a positive integer, got 1\.5"),
    row("random_input integer dtype", lambda: random_input(T2, 3, 1, torch.int64), TypeError, r"random_input: dtype must be a floating-point torch dtype.*torch\.int64"),
    row("assert_equivariant f not callable", lambda: assert_equivariant(3, gt2()), TypeError, r"f must be callable.*got int"),
    row("assert_equivariant f returns a tensor", lambda: assert_equivariant(lambda t: t.tensor, gt2()), TypeError, r"f must return an escnn GeometricTensor, got Tensor"),
    # ---- PointwiseNonLinearity ---------------------------------------------------------------------------------
    row("PointwiseNonLinearity in_type string", lambda: PointwiseNonLinearity("t"), TypeError, r"in_type must be an escnn FieldType of tensor fields.*got str"),
    row("PointwiseNonLinearity non-orthogonal field", lambda: PointwiseNonLinearity(SKEW2), ValueError, r"PointwiseNonLinearity: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("PointwiseNonLinearity bad function name", lambda: PointwiseNonLinearity(T2, "relux"), ValueError, r"function must be one of \[.*'relu'.*\] or a callable, got 'relux'"),
    row("PointwiseNonLinearity function int", lambda: PointwiseNonLinearity(T2, 3), TypeError, r"function must be one of .*callable.*got int"),
    row("PointwiseNonLinearity threshold NaN", lambda: PointwiseNonLinearity(T2, threshold=float("nan")), ValueError, r"threshold must be a finite real number >= 0, got nan"),
    row("PointwiseNonLinearity threshold -1", lambda: PointwiseNonLinearity(T2, threshold=-1.0), ValueError, r"threshold must be a finite real number >= 0, got -1\.0"),
    row("PointwiseNonLinearity eps 0", lambda: PointwiseNonLinearity(T2, eps=0.0), ValueError, r"eps must be a finite real number > 0, got 0\.0"),
    row("PointwiseNonLinearity nonscalars", lambda: PointwiseNonLinearity(T2, nonscalars="gate"), ValueError, r"nonscalars must be one of \('unchanged', 'norm'\), got 'gate'"),
    row("PointwiseNonLinearity forward on a tensor", lambda: PointwiseNonLinearity(T2)(torch.zeros(1, 3, 4, 4)), TypeError, r"PointwiseNonLinearity: input must be an escnn GeometricTensor.*got Tensor"),
    row("PointwiseNonLinearity forward wrong type", lambda: PointwiseNonLinearity(T2)(f32(VEC2)), ValueError, r"PointwiseNonLinearity: input has FieldType .*but the in_type is"),
    # ---- GatedNonLinearity ------------------------------------------------------------------------------------
    row("GatedNonLinearity in_type None", lambda: GatedNonLinearity(None), TypeError, r"in_type must be an escnn FieldType.*got NoneType"),
    row("GatedNonLinearity non-orthogonal field", lambda: GatedNonLinearity(SKEW2), ValueError, r"GatedNonLinearity: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("GatedNonLinearity bad function name", lambda: GatedNonLinearity(T2, "sigmoidz"), ValueError, r"function must be one of .*got 'sigmoidz'"),
    row("GatedNonLinearity bias=1", lambda: GatedNonLinearity(T2, bias=1), TypeError, r"bias must be True or False, got 1"),
    row("GatedNonLinearity float64 input", lambda: GatedNonLinearity(T2)(gt2(N=4)), TypeError, r"GatedNonLinearity: input dtype torch\.float64 differs from the layer's dtype torch\.float32"),
    row("GatedNonLinearity input on another gspace", lambda: GatedNonLinearity(T2)(f32(T3)), ValueError, r"GatedNonLinearity: input has FieldType \[FullOctahedral.*but the in_type is \[D4"),
    # ---- GatedQuadratic (the geometric family's nonlinearity='gated_quadratic') ---------------------------------
    row("GatedQuadratic regular field", lambda: GatedQuadratic(REG2), ValueError, r"in_type: FieldType holds fields that are not tensor fields"),
    row("GatedQuadratic rank=0", lambda: GatedQuadratic(T2, rank=0), ValueError, r"rank must be an int >= 1, got 0"),
    row("GatedQuadratic rank=1.5", lambda: GatedQuadratic(T2, rank=1.5), TypeError, r"rank must be an int >= 1, got 1\.5 of type float"),
    row("GatedQuadratic activation='nope'", lambda: GatedQuadratic(T2, activation="nope"), ValueError, r"activation must be one of \[.*'elu'.*\], got 'nope'"),
    # ---- VectorNeuronNonLinearity -----------------------------------------------------------------------------
    row("VectorNeuronNonLinearity non-orthogonal field", lambda: VectorNeuronNonLinearity(SKEW2), ValueError, r"VectorNeuronNonLinearity: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("VectorNeuronNonLinearity negative_slope=1", lambda: VectorNeuronNonLinearity(T2, negative_slope=1.0), ValueError, r"negative_slope must be in \[0, 1\), got 1\.0"),
    row("VectorNeuronNonLinearity negative_slope NaN", lambda: VectorNeuronNonLinearity(T2, negative_slope=float("nan")), ValueError, r"negative_slope must be a finite real number, got nan"),
    row("VectorNeuronNonLinearity negative_slope string", lambda: VectorNeuronNonLinearity(T2, negative_slope="0.1"), TypeError, r"negative_slope must be a finite real number, got '0\.1' of type str"),
    row("VectorNeuronNonLinearity eps=-1", lambda: VectorNeuronNonLinearity(T2, eps=-1.0), ValueError, r"eps must be > 0, got -1\.0"),
    row("VectorNeuronNonLinearity float64 input", lambda: VectorNeuronNonLinearity(T2)(gt2(N=4)), TypeError, r"VectorNeuronNonLinearity: input dtype torch\.float64 differs"),
    # ---- TensorProductNonLinearity ----------------------------------------------------------------------------
    row("TensorProductNonLinearity in_type string", lambda: TensorProductNonLinearity("x"), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("TensorProductNonLinearity out_type string", lambda: TensorProductNonLinearity(T2, "x"), TypeError, r"out_type must be an escnn FieldType.*got str"),
    row("TensorProductNonLinearity out_type on another gspace", lambda: TensorProductNonLinearity(T2, T3), ValueError, r"in_type and out_type must live on the same gspace.*out_type on FullOctahedral"),
    row("TensorProductNonLinearity regular out_type", lambda: TensorProductNonLinearity(T2, REG2), ValueError, r"out_type: FieldType holds fields that are not tensor fields: field 0 \(regular"),
    row("TensorProductNonLinearity bias=1", lambda: TensorProductNonLinearity(T2, bias=1), TypeError, r"bias must be True or False, got 1"),
    row("TensorProductNonLinearity initialize='no'", lambda: TensorProductNonLinearity(T2, initialize="no"), TypeError, r"initialize must be True or False, got 'no'"),
    row("TensorProductNonLinearity no quadratic map", lambda: TensorProductNonLinearity(VEC2, et.tensor_type(GS2, [(1, -1, 1)])), ValueError, r"no nonzero equivariant quadratic map from in_type \[\(1, 1\)\] to out_type \[\(1, -1\)\]"),
    row("TensorProductNonLinearity forward wrong type", lambda: TensorProductNonLinearity(T2)(f32(VEC2)), ValueError, r"TensorProductNonLinearity: input has FieldType .*but the in_type is"),
    row("TensorProductNonLinearity gain NaN", lambda: TensorProductNonLinearity(T2).reset_parameters(gain=float("nan")), ValueError, r"gain must be a finite real number >= 0, got nan"),
    row("TensorProductNonLinearity gain -1", lambda: TensorProductNonLinearity(T2).reset_parameters(gain=-1), ValueError, r"gain must be a finite real number >= 0, got -1"),
    # ---- TensorBatchNorm / TensorLayerNorm --------------------------------------------------------------------
    row("TensorBatchNorm non-orthogonal field", lambda: TensorBatchNorm(SKEW2), ValueError, r"TensorBatchNorm: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("TensorBatchNorm momentum -0.1", lambda: TensorBatchNorm(T2, momentum=-0.1), ValueError, r"momentum must be a real number in \[0, 1\] or None, got -0\.1"),
    row("TensorBatchNorm momentum NaN", lambda: TensorBatchNorm(T2, momentum=float("nan")), ValueError, r"momentum must be a real number in \[0, 1\] or None, got nan"),
    row("TensorBatchNorm momentum 2", lambda: TensorBatchNorm(T2, momentum=2.0), ValueError, r"momentum must be .*got 2\.0"),
    row("TensorBatchNorm momentum string", lambda: TensorBatchNorm(T2, momentum="0.1"), TypeError, r"momentum must be a real number in \[0, 1\] or None, got '0\.1' of type str"),
    row("TensorBatchNorm eps negative", lambda: TensorBatchNorm(T2, eps=-1e-5), ValueError, r"eps must be a real number in \[0, inf\), got -1e-05"),
    row("TensorBatchNorm float64 input to a float32 layer", lambda: TensorBatchNorm(T2)(T2(torch.randn(2, T2.size, 4, 4, dtype=torch.float64))), TypeError, r"TensorBatchNorm: input dtype torch\.float64 differs from the layer's dtype torch\.float32"),
    row("TensorLayerNorm float64 input to a float32 layer", lambda: TensorLayerNorm(T2)(T2(torch.randn(2, T2.size, 4, 4, dtype=torch.float64))), TypeError, r"TensorLayerNorm: input dtype torch\.float64 differs from the layer's dtype torch\.float32"),
    row("TensorBatchNorm eps NaN", lambda: TensorBatchNorm(T2, eps=float("nan")), ValueError, r"eps must be a real number in \[0, inf\), got nan"),
    row("TensorBatchNorm eps inf (would zero every output)", lambda: TensorBatchNorm(T2, eps=float("inf")), ValueError, r"eps must be a real number in \[0, inf\), got inf"),
    row("TensorBatchNorm affine='yes'", lambda: TensorBatchNorm(T2, affine="yes"), TypeError, r"affine must be True or False, got 'yes'"),
    row("TensorBatchNorm track_running_stats=1", lambda: TensorBatchNorm(T2, track_running_stats=1), TypeError, r"track_running_stats must be True or False, got 1"),
    row("TensorBatchNorm one value per field in training", lambda: TensorBatchNorm(T2)(random_input(T2, 1, 1, torch.float32)), ValueError, r"TensorBatchNorm needs more than one value per field when training.*\(1, 3, 1, 1\)"),
    row("TensorLayerNorm in_type string", lambda: TensorLayerNorm("t"), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("TensorLayerNorm non-orthogonal field", lambda: TensorLayerNorm(SKEW2), ValueError, r"TensorLayerNorm: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("TensorLayerNorm eps -1", lambda: TensorLayerNorm(T2, eps=-1.0), ValueError, r"eps must be a real number in \[0, inf\), got -1\.0"),
    row("TensorLayerNorm eps inf", lambda: TensorLayerNorm(T2, eps=float("inf")), ValueError, r"eps must be .*got inf"),
    row("TensorLayerNorm affine=None", lambda: TensorLayerNorm(T2, affine=None), TypeError, r"affine must be True or False, got None"),
    # ---- NormMaxPool / AvgPool / Upsample ---------------------------------------------------------------------
    row("NormMaxPool non-orthogonal field", lambda: NormMaxPool(SKEW2), ValueError, r"NormMaxPool: in_type: field 0 \(skewed, size 2\) is not an orthogonal representation"),
    row("NormMaxPool kernel_size=0", lambda: NormMaxPool(T2, 0), ValueError, r"kernel_size must be an integer >= 1, got 0"),
    row("NormMaxPool kernel_size per axis", lambda: NormMaxPool(T2, (2, 3)), ValueError, r"kernel_size=\(2, 3\) differs between axes"),
    row("NormMaxPool kernel_size=2.0", lambda: NormMaxPool(T2, 2.0), TypeError, r"kernel_size must be an integer or a tuple of 2 equal integers, got 2\.0"),
    row("NormMaxPool kernel not dividing the grid", lambda: NormMaxPool(T2, 2)(f32(N=5)), ValueError, r"kernel_size=2 must divide the spatial size on every axis, got size \(5, 5\)"),
    row("NormMaxPool forward on a tensor", lambda: NormMaxPool(T2)(torch.zeros(1, 3, 4, 4)), TypeError, r"NormMaxPool: input must be an escnn GeometricTensor.*got Tensor"),
    row("AvgPool in_type string", lambda: AvgPool("t"), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("AvgPool kernel not dividing the grid", lambda: AvgPool(T2, 2)(f32(N=5)), ValueError, r"kernel_size=2 must divide the spatial size on every axis, got size \(5, 5\)"),
    row("AvgPool 3D kernel not dividing the grid", lambda: AvgPool(T3, 3)(f32(T3, N=4)), ValueError, r"kernel_size=3 must divide the spatial size on every axis, got size \(4, 4, 4\)"),
    row("AvgPool evaluate_output_shape", lambda: AvgPool(T2, 2).evaluate_output_shape((1, 3, 5, 5)), ValueError, r"kernel_size=2 must divide the spatial size"),
    row("Upsample continuous gspace", lambda: Upsample(enn.FieldType(gspaces.rot2dOnR2(-1), [gspaces.rot2dOnR2(-1).trivial_repr])), ValueError, r"continuous group"),
    row("Upsample scale_factor=0", lambda: Upsample(T2, 0), ValueError, r"scale_factor must be an integer >= 1, got 0"),
    row("Upsample scale_factor=-2", lambda: Upsample(T2, -2), ValueError, r"scale_factor must be an integer >= 1, got -2"),
    row("Upsample scale_factor=1.5", lambda: Upsample(T2, 1.5), TypeError, r"scale_factor must be an integer or a tuple of 2 equal integers, got 1\.5"),
    row("Upsample scale_factor per axis", lambda: Upsample(T2, (2, 3)), ValueError, r"scale_factor=\(2, 3\) differs between axes"),
    row("Upsample scale_factor string", lambda: Upsample(T2, "2"), TypeError, r"scale_factor must be an integer .*got '2'"),
    # ---- GeometricConvTransposed ------------------------------------------------------------------------------
    row("GeometricConv load_state_dict of other field types", lambda: GeometricConv(et.tensor_type(GS3, [(1, -1, 1)]), T3, 3).load_state_dict(GeometricConv(et.tensor_type(GS3, [(1, 1, 1)]), T3, 3).state_dict()), ValueError, r"state dict was made for a different layer \(in_fields: saved"),
    row("GeometricConv load_state_dict of a transposed conv", lambda: GeometricConv(T2, T2, 2).load_state_dict(GeometricConvTransposed(T2, T2, 2).state_dict()), ValueError, r"state dict was made for a different layer \(layer: saved 'GeometricConvTransposed'"),
    # ---- ChangeOfBasis ---------------------------------------------------------------------------------------------
    row("ChangeOfBasis not isomorphic", lambda: ChangeOfBasis(et.tensor_type(GS3, [(1, 1, 1)]), et.tensor_type(GS3, [(1, -1, 1)])), ValueError, r"not isomorphic representations of .*irreps differ"),
    row("ChangeOfBasis in_type list", lambda: ChangeOfBasis([(1, 1, 1)], T2), TypeError, r"ChangeOfBasis: in_type must be an escnn FieldType, got list"),
    row("ChangeOfBasis gspaces differ", lambda: ChangeOfBasis(T2, T3), ValueError, r"ChangeOfBasis: in_type and out_type must live on the same gspace"),
    row("GeometricConvTransposed in_type string", lambda: GeometricConvTransposed("t", T2, 2), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("GeometricConvTransposed gspaces differ", lambda: GeometricConvTransposed(T2, T3, 2), ValueError, r"in_type and out_type must live on the same gspace"),
    row("GeometricConvTransposed no kernel between types", lambda: GeometricConvTransposed(enn.FieldType(GS2, [GS2.fibergroup.irrep(1, 0)]), enn.FieldType(GS2, [GS2.fibergroup.irrep(0, 0)]), 1), ValueError, r"no nonzero equivariant kernel of size 1"),
    row("GeometricConvTransposed kernel_size=0", lambda: GeometricConvTransposed(T2, T2, 0), ValueError, r"kernel_size must be an integer >= 1, got 0"),
    row("GeometricConvTransposed stride=0", lambda: GeometricConvTransposed(T2, T2, 2, stride=0), ValueError, r"stride must be an integer >= 1, got 0"),
    row("GeometricConvTransposed output_padding >= stride", lambda: GeometricConvTransposed(T2, T2, 2, stride=2, output_padding=2), ValueError, r"output_padding=2 must be smaller than stride or dilation"),
    row("GeometricConvTransposed output_padding=1 on D4", lambda: GeometricConvTransposed(T2, T2, 2, stride=2, output_padding=1), ValueError, r"output_padding=1 adds pixels at one end of the output axes only.*must be a vector fixed by every group element"),
    row("GeometricConvTransposed padding=-1", lambda: GeometricConvTransposed(T2, T2, 2, padding=-1), ValueError, r"padding must be an integer >= 0, got -1"),
    row("GeometricConvTransposed padding='same'", lambda: GeometricConvTransposed(T2, T2, 2, padding="same"), TypeError, r"padding of a transposed convolution must be an integer >= 0.*got 'same'"),
    row("GeometricConvTransposed dilation per axis", lambda: GeometricConvTransposed(T2, T2, 2, dilation=(1, 2)), ValueError, r"dilation=\(1, 2\) differs between axes"),
    row("GeometricConvTransposed bias='no'", lambda: GeometricConvTransposed(T2, T2, 2, bias="no"), TypeError, r"bias must be True or False, got 'no'"),
    row("GeometricConvTransposed forward on a tensor", lambda: GeometricConvTransposed(T2, T2, 2, stride=2)(torch.zeros(1, 3, 4, 4)), TypeError, r"GeometricConvTransposed: input must be an escnn GeometricTensor.*got Tensor"),
    row("GeometricConvTransposed float64 input", lambda: GeometricConvTransposed(T2, T2, 2, stride=2)(gt2(N=4)), TypeError, r"GeometricConvTransposed: input dtype torch\.float64 differs from the layer's dtype torch\.float32"),
    row("GeometricConvTransposed gain NaN", lambda: GeometricConvTransposed(T2, T2, 2, stride=2).reset_parameters(gain=float("nan")), ValueError, r"gain must be a finite real number >= 0, got nan"),
    row("GeometricConvTransposed output smaller than 1", lambda: GeometricConvTransposed(T2, T2, 3, padding=5)(f32(N=4)), ValueError, r"GeometricConvTransposed: input size \(4, 4\) gives output size \(-4, -4\) < 1.*padding=5"),
    row("GeometricConvTransposed evaluate_output_shape", lambda: GeometricConvTransposed(T2, T2, 2, stride=2).evaluate_output_shape((1, 2, 4, 4)), ValueError, r"input_shape must be \(batch, 3, N, N\), got \(1, 2, 4, 4\)"),
    # ---- models -----------------------------------------------------------------------------------------------
    row("ResNet unknown family", lambda: ResNet(T2, VEC2, "equivariant"), ValueError, r"family must be one of \('geometric', 'steerable', 'plain'\), got 'equivariant'"),
    row("ResNet width=0", lambda: ResNet(T2, VEC2, width=0), ValueError, r"width must be an integer >= 1, got 0"),
    row("ResNet width=1.5", lambda: ResNet(T2, VEC2, width=1.5), TypeError, r"width must be an integer >= 1, got 1\.5 of type float"),
    row("ResNet width string", lambda: ResNet(T2, VEC2, "steerable", width="4"), TypeError, r"width must be an integer >= 1, got '4' of type str"),
    row("ResNet width too large", lambda: ResNet(T2, VEC2, width=1000), ValueError, r"ResNet \(geometric\) with hidden size \(1000, 1000, 1000\) would hold convolution kernels of about 3\.3 GiB.*smaller width / params"),
    row("ResNet width a million (refused before any field type is built)", lambda: ResNet(T2, VEC2, width=10**6), ValueError, r"ResNet \(geometric\) with hidden size \(1000000, 1000000, 1000000\) would hold convolution kernels of about .*GiB \(7000000 channels"),
    row("ResNet steerable width too large", lambda: ResNet(T2, VEC2, "steerable", width=1000), ValueError, r"ResNet \(steerable\) with hidden size 8000 would hold convolution kernels of about .*GiB"),
    row("ResNet params=0", lambda: ResNet(T2, VEC2, params=0), ValueError, r"params must be an integer >= 1, got 0"),
    row("ResNet params unreachable (too few)", lambda: ResNet(T2, VEC2, params=5), ValueError, r"params=5: no geometric ResNet with these options has a parameter count within 10%"),
    row("ResNet params unreachable (too many)", lambda: ResNet(T2, VEC2, params=10**9), ValueError, r"^params=1000000000 is out of reach: .{0,400}$"),
    row("ResNet width and params", lambda: ResNet(T2, VEC2, width=2, params=1000), ValueError, r"give at most one of width, params, level and size; got width and params"),
    row("ResNet unknown option", lambda: ResNet(T2, VEC2, num_block=2), TypeError, r"ResNet got unknown option\(s\) \['num_block'\]; accepted: .*num_blocks=8"),
    row("ResNet even kernel_size", lambda: ResNet(T2, VEC2, kernel_size=4), ValueError, r"kernel_size must be odd .*got 4"),
    row("ResNet in_type string", lambda: ResNet("t", VEC2), TypeError, r"in_type must be an escnn FieldType.*got str"),
    row("ResNet regular out_type", lambda: ResNet(T2, REG2), ValueError, r"out_type: FieldType holds fields that are not tensor fields"),
    row("ResNet gspaces differ", lambda: ResNet(T2, T3), ValueError, r"in_type and out_type must live on the same gspace"),
    row("ResNet steerable with layer norm", lambda: ResNet(T2, VEC2, "steerable", norm="layer"), ValueError, r"norm='layer' is not available for the steerable family"),
    row("ResNet norm='group'", lambda: ResNet(T2, VEC2, norm="group"), ValueError, r"norm must be one of \('batch', 'layer', None\), got 'group'"),
    row("ResNet activation='tanh'", lambda: ResNet(T2, VEC2, activation="tanh"), ValueError, r"activation must be one of \('elu', 'relu'\), got 'tanh'"),
    row("ResNet nonlinearity='norm'", lambda: ResNet(T2, VEC2, nonlinearity="norm"), ValueError, r"nonlinearity must be one of \('gated', 'vector_neuron', 'gated_quadratic'\), got 'norm'"),
    row("ResNet steerable nonlinearity (issue 20 item 8)", lambda: ResNet(T2, VEC2, "steerable", nonlinearity="gated_quadratic"), ValueError, r"^ResNet: the steerable family does not use the option\(s\) nonlinearity='gated_quadratic' \(they would change nothing\); the steerable family uses activation, norm, padding_mode\. Drop them, or pass ResNet\.options_for\('steerable', options\)$"),
    row("UNet plain nonlinearity", lambda: UNet(T2, VEC2, "plain", nonlinearity="gated"), ValueError, r"^UNet: the plain family does not use the option\(s\) nonlinearity='gated'"),
    row("DilResNet geometric vector_neuron with activation", lambda: DilResNet(T2, VEC2, nonlinearity="vector_neuron", activation="relu"), ValueError, r"^DilResNet: the geometric family with nonlinearity='vector_neuron' does not use the option\(s\) activation='relu'"),
    row("ResNet.options_for unknown family", lambda: ResNet.options_for("steerabel", {}), ValueError, r"family must be one of \('geometric', 'steerable', 'plain'\), got 'steerabel'"),
    row("ResNet padding_mode='wrap'", lambda: ResNet(T2, VEC2, padding_mode="wrap"), ValueError, r"padding_mode must be one of .*got 'wrap'"),
    row("ResNet forward on a tensor", lambda: ResNet(T2, VEC2, width=1, num_blocks=1)(torch.zeros(1, 3, 4, 4)), TypeError, r"ResNet: input must be an escnn GeometricTensor.*got Tensor"),
    row("ResNet steerable float64 input", lambda: ResNet(T2, VEC2, "steerable", width=1, num_blocks=1)(gt2(N=4)), TypeError, r"ResNet: input dtype torch\.float64 differs from the layer's dtype torch\.float32"),
    row("ResNet plain float64 input", lambda: ResNet(T2, VEC2, "plain", width=2, num_blocks=1)(gt2(N=4)), TypeError, r"ResNet: input dtype torch\.float64 differs"),
    row("DilResNet geometric float32 input to a float64 model", lambda: DilResNet(T2, VEC2, width=1, num_blocks=1).double()(f32()), TypeError, r"DilResNet: input dtype torch\.float32 differs from the layer's dtype torch\.float64"),
    row("UNet grid not divisible", lambda: UNet(T2, VEC2, width=1, num_downsamples=2, num_conv=1)(f32(N=6)), ValueError, r"UNet with num_downsamples=2 needs every side of the grid divisible by 4.*\(6, 6\)"),
    row("UNet num_downsamples=-1", lambda: UNet(T2, VEC2, num_downsamples=-1), ValueError, r"num_downsamples must be an integer >= 0, got -1"),
    row("DilResNet dilation 0", lambda: DilResNet(T2, VEC2, dilations=(1, 0)), ValueError, r"dilations must be an integer >= 1, got 0"),
    # ---- data -------------------------------------------------------------------------------------------------
    row("get_task unknown name", lambda: etdata.get_task("gravitation"), ValueError, r"unknown task 'gravitation'; the tasks are \[.*'gravity'"),
    row("get_task unknown option", lambda: etdata.get_task("gravity", foo=1), TypeError, r"task 'gravity' got unknown option\(s\) \['foo'\]; its options are"),
    row("get_task bad option value", lambda: etdata.get_task("gravity", smoothing=-1.0), ValueError, r"option smoothing must be a finite number >= 0, got -1\.0"),
    row("get_task n_masses reversed", lambda: etdata.get_task("gravity", n_masses=(8, 3)), ValueError, r"option n_masses must be integers \(min, max\) with 1 <= min <= max, got \(8, 3\)"),
    row("get_task navier-stokes variable", lambda: etdata.get_task("navier-stokes", variable="pressure"), ValueError, r"option variable must be one of \['velocity', 'vorticity'\], got 'pressure'"),
    row("get_task subgrid factor=2.5", lambda: etdata.get_task("subgrid-stress", factor=2.5), ValueError, r"option factor must be an integer >= 1, got 2\.5"),
    row("Task.make n_samples=0", lambda: etdata.get_task("gravity").make(0, 8), ValueError, r"n_samples must be a positive integer, got 0"),
    row("Task.make n_samples=1.5", lambda: etdata.get_task("gravity").make(1.5, 8), ValueError, r"n_samples must be a positive integer, got 1\.5"),
    row("Task.make size below minimum", lambda: etdata.get_task("tidal").make(1, 3), ValueError, r"size of task 'tidal' must be an integer >= 4, got 3"),
    row("Task.make size not an integer", lambda: etdata.get_task("gravity").make(1, 8.5), ValueError, r"size of task 'gravity' must be an integer >= 4, got 8\.5"),
    row("Task.make too much data", lambda: etdata.get_task("magnetostatics-3d").make(1, 2000), ValueError, r"1 samples of size 2000 would take .*GiB.*smaller size"),
    row("Task.make seed=-1", lambda: etdata.get_task("gravity").make(1, 8, seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*63\), got -1"),
    row("load unknown name", lambda: etdata.load("nope", 2), ValueError, r"unknown task 'nope'"),
    row("load n_samples=0", lambda: etdata.load("gravity", 0, 8), ValueError, r"n_samples must be a positive integer, got 0"),
    row("get_task name not a string", lambda: etdata.get_task(3), TypeError, r"name must be a task name \(str\) or a Task, got int"),
    row("Task.make n_samples a string", lambda: etdata.get_task("gravity").make("2", 8), TypeError, r"n_samples must be a positive integer, got str '2'"),
    row("load seed a string", lambda: etdata.load("gravity", 2, 8, seed="0"), TypeError, r"seed must be an integer in \[0, 2\*\*63\), got str '0'"),
    row("Task.in_type gspace of another dimension", lambda: etdata.get_task("gravity").in_type(GS3), ValueError, r"task 'gravity' lives in 2D, but gspace FullOctahedral.* acts on R\^3"),
    row("Task.in_type gspace string", lambda: etdata.get_task("gravity").in_type("gs"), TypeError, r"gspace must be an escnn GSpace.*got str"),
    # ---- pickling, isolate ------------------------------------------------------------------------------------
    row("isolate a list", lambda: isolate([CONV]), TypeError, r"module must be a torch\.nn\.Module, got list"),
    row("isolate copy_tensors='yes'", lambda: isolate(CONV, copy_tensors="yes"), TypeError, r"copy_tensors must be True or False, got 'yes'"),
    row("pickle a FieldType subclass", lambda: pickle.dumps(NotAType(GS2, [GS2.trivial_repr])), TypeError, r"cannot pickle NotAType: only escnn's FieldType"),
    row("rebuild_gspace unknown kind", lambda: rebuild_gspace(("GSpace4D", ())), ValueError, r"recipe must describe a GSpace0D, GSpace2D or GSpace3D, got kind 'GSpace4D'"),
    # ---- the harness's Python entry point (compare.CompareConfig), checkpoints ------------------------------------
    row("CompareConfig lrs=[inf]", lambda: check_config(_config(lrs=[float("inf")])), ValueError, r"lrs must be a non-empty list of finite, positive learning rates, got \[inf\]"),
    row("CompareConfig lrs=[nan]", lambda: check_config(_config(lrs=[float("nan")])), ValueError, r"lrs must be .*finite, positive.*got \[nan\]"),
    row("CompareConfig seeds=[1, 1]", lambda: check_config(_config(seeds=[1, 1])), ValueError, r"seeds must be distinct.*got \[1, 1\]"),
    row("CompareConfig seeds=[-1]", lambda: check_config(_config(seeds=[-1])), ValueError, r"seeds must be a non-empty list of integers >= 0, got \[-1\]"),
    row("CompareConfig option of a model not in the run", lambda: check_config(_config(model_options={"unet": {"x": 1}})), ValueError, r"model_options for models not in the run: \['unet'\]"),
    row("load_checkpoint of a flipped byte", lambda: _io.load_checkpoint(_flipped_checkpoint()), _io.CorruptCheckpointError, r"ckpt\.pt"),
    row("load_checkpoint of an empty file", lambda: _io.load_checkpoint(_empty_file()), _io.CorruptCheckpointError, r"empty\.pt"),
]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def test_catalogue_size():
    assert len(BAD_INPUTS) >= 60


def test_catalogue_covers_every_layer_and_the_models_and_data():
    import escnn_tensor.nn as etnn

    ids = [p.id for p in BAD_INPUTS]
    layers = [n for n in etnn.__all__ if isinstance(getattr(etnn, n), type) and issubclass(getattr(etnn, n), enn.EquivariantModule)]
    missing = [n for n in layers if sum(i.startswith(n + " ") for i in ids) < 3]
    assert not missing, f"layers with fewer than 3 catalogue rows: {missing}"
    for prefix in ("ResNet", "UNet", "DilResNet", "get_task", "Task.make", "load"):
        assert any(i.startswith(prefix + " ") for i in ids), prefix


@pytest.mark.parametrize("call,exc,match", BAD_INPUTS)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------------------------------------------------------
# canary: the same functions, called correctly, work (so the rows above fail for the reason they name)


def test_correct_calls_work():
    assert et.hyperoctahedral_gspace(2) is not None and check_dimension(3) == 3
    assert len(et.group_elements(GS2)) == 8 and et.group_matrices(GS3).shape == (48, 3, 3)
    assert check_gspace(gspaces.rot2dOnR2(4)) == 2 and isinstance(action_key(GS2), str)
    assert et.group_matrix(GS2, GS2.fibergroup.identity).tolist() == [[1, 0], [0, 1]]
    assert check_signed_permutation([[0, -1], [1, 0]], 2).tolist() == [[0, -1], [1, 0]]
    x = torch.arange(18.0).reshape(3, 3, 2)
    assert torch.equal(et.escnn_to_grid(et.grid_to_escnn(x, 2, n_trailing=1), 2, n_trailing=1), x)
    assert et.tensor_rep(GS2, 1, -1).size == 2 and check_order(3) == 3 and check_parity(-1) == -1
    assert et.tensor_type(GS2, [(1, 1, 2)]).size == 4 and et.tensor_type(GS2, {(0, 1): 1, (1, -1): 1}).size == 3
    assert et.field_signature(T2) == [(0, 1), (1, 1)]
    assert et.invariant_filters(GS2, 3, 1, 1).shape[1:] == (3, 3, 2) and et.num_invariant_filters(GS2, 3, 0, 1) == 3
    assert grid.same_on_axes((3, 3), 2, "kernel_size") == 3 and grid.per_axis(2, 2, "size") == (2, 2)
    assert grid.resolve_padding("same", 2, 3) == [(1, 1), (1, 1)] and grid.symmetric_padding("valid", 2, 3) == 0
    conv = GeometricConv(T2, T2, 3, padding=1, stride=1, dilation=1, padding_mode="circular", bias=True).double()
    assert conv(gt2()).tensor.shape == (2, 3, 5, 5) and conv.evaluate_output_shape((2, 3, 9, 9)) == (2, 3, 9, 9)
    assert GeometricConv(PSEUDO2, VEC2, 3).weights.numel() > 0
    a = img(5)
    assert (a + a - a).allclose(a) and a == a * 1.0 and a != a * 2.0 and a != "x"
    assert a.convolve_with(img(3, 0)).k == 1 and img(k=2).contract(0, 1).k == 0 and img(k=2).transpose((1, 0)).k == 2
    assert img(k=2).levi_civita_contract(0).parity == -1 and a.translate((1, 0)).N == 5 and img(4).max_pool(2).N == 2
    assert a.times_group_element([[0, -1], [1, 0]]).N == 5 and a.times_group_element(GS2.fibergroup.elements[1]).N == 5
    m = multi()
    assert (m + m - m).allclose(m) and m == m.to(torch.float32) and m != m * 2.0 and m.equal(m)
    assert m.concat(multi(keys=((2, 1, 1),))).signature[-1] == ((2, 1), 1) and m.concat(multi(batch=3), axis=0).batch_size == 5
    assert MultiImage.from_numpy_dict(m.to_numpy_dict(), 2).equal(m)
    gt = to_geometric_tensor(m, GS2)
    assert from_geometric_tensor(gt).equal(m)
    reordered = to_geometric_tensor(m, et.tensor_type(GS2, [(1, -1, 1), (0, 1, 2)]))
    assert from_geometric_tensor(reordered).equal(m) and reordered.type.size == gt.type.size
    assert plotting.plot_image(torch.zeros(3, 3, 2), 1, 2, vmax=1.0) is not None
    assert plotting.plot_images([(torch.zeros(3, 3), 1), (torch.zeros(3, 3, 2), -1, "t")], ncols=1, D=2) is not None
    assert plotting.plot_image(torch.zeros(3, 3, 3), 1, 3, z_slices=[0, -1]) is not None
    assert len(assert_equivariant(conv, gt2())) == 8
    assert random_input(T2, 4, 1).tensor.shape == (1, 3, 4, 4)
    assert isolate(enn.SequentialModule(enn.R2Conv(T2, REG2, 3))) is not None
    assert pickle.loads(pickle.dumps(T2)) == T2 and rebuild_gspace(("GSpace2D", GS2._sg_id)) == GS2
    # the new layers, the models and the data registry, called correctly
    x4, x3d = f32(N=4), f32(T3, N=3)
    assert PointwiseNonLinearity(T2, "relu", threshold=0.0, nonscalars="norm", eps=1e-6)(x4).tensor.shape == (2, 3, 4, 4)
    assert PointwiseNonLinearity(T2, torch.tanh)(x4).type == T2
    assert GatedNonLinearity(T2, "sigmoid", bias=True)(x4).type == T2 and GatedNonLinearity(T3)(x3d).type == T3
    assert VectorNeuronNonLinearity(T2, negative_slope=0.0, eps=1e-8)(x4).type == T2
    tp = TensorProductNonLinearity(T2, VEC2, bias=False, initialize=True)
    tp.reset_parameters(gain=0)
    assert tp(x4).type == VEC2 and not tp(x4).tensor.any()
    assert TensorBatchNorm(T2, eps=0.0, momentum=None, affine=False, track_running_stats=False)(x4).type == T2
    assert TensorBatchNorm(T2, momentum=1.0)(x4).type == T2 and TensorLayerNorm(T2, eps=0, affine=True)(x4).type == T2
    assert NormMaxPool(T2, (2, 2))(x4).tensor.shape == (2, 3, 2, 2) and AvgPool(T2, 2)(x4).tensor.shape == (2, 3, 2, 2)
    assert AvgPool(T3, 3)(x3d).tensor.shape == (2, 4, 1, 1, 1) and AvgPool(T2, 2).evaluate_output_shape((1, 3, 6, 6)) == (1, 3, 3, 3)
    assert Upsample(T2, 1)(x4).tensor.shape == (2, 3, 4, 4) and Upsample(T2, (3, 3))(x4).tensor.shape == (2, 3, 12, 12)
    ct = GeometricConvTransposed(T2, T2, 2, stride=2, padding=0, output_padding=0, dilation=1, bias=False)
    assert ct(x4).tensor.shape == (2, 3, 8, 8) and ct.evaluate_output_shape((1, 3, 4, 4)) == (1, 3, 8, 8)
    ct.reset_parameters(gain=2)
    assert GeometricConvTransposed(T2, T2, 3, padding=1)(x4).tensor.shape == (2, 3, 4, 4)
    assert ResNet(T2, VEC2, "steerable", width=1, num_blocks=1, norm=None, activation="relu")(x4).type == VEC2
    assert ResNet(T2, VEC2, width=1, num_blocks=1, nonlinearity="vector_neuron", norm="layer")(x4).type == VEC2
    assert ResNet(T2, VEC2, "plain", width=2, num_blocks=1, kernel_size=5, padding_mode="zeros")(x4).type == VEC2
    opts = {"nonlinearity": "gated_quadratic", "activation": "relu", "num_blocks": 1}
    assert ResNet.options_for("steerable", opts) == {"activation": "relu", "num_blocks": 1}
    assert ResNet.options_for("geometric", opts) == opts
    steer = ResNet(T2, VEC2, "steerable", width=1, **ResNet.options_for("steerable", opts))
    assert "nonlinearity" not in steer.options and steer(f32()).type == VEC2
    assert UNet(T2, VEC2, width=1, num_downsamples=2, num_conv=1)(x4).type == VEC2
    assert DilResNet(T2, VEC2, width=1, num_blocks=1, dilations=(1, 2, 1))(x4).type == VEC2
    task = etdata.get_task("gravity", smoothing=0.5, n_masses=(3, 3))
    data = task.make(1, 4, seed=0)
    assert data.inputs.shape == (1, 1, 4, 4) and task.in_type(GS2).size == 1
    assert etdata.get_task("subgrid-stress", factor=2).options["factor"] == 2
    assert etdata.get_task("navier-stokes", variable="vorticity").options["variable"] == "vorticity"


# ------------------------------------------------------------------------------------------------------------------
# the fixes that came with the catalogue: value equality of images (ginjax's ==) and no silent broadcasting


def test_geometric_image_equality_is_ginjax_allclose():
    a = img(5, k=1)
    assert a == GeometricImage(a.data.clone(), 1, 2) and a is not GeometricImage(a.data.clone(), 1, 2)
    assert a == a + img(5, k=1) * 0.5e-5 / img(5, k=1).data.abs().max()  # within atol = 1e-5
    assert a != a + img(5, k=1) * 1e-3
    big = GeometricImage(a.data * 1e6, 1, 2)
    assert big == GeometricImage(big.data * (1 + 5e-6), 1, 2)  # within rtol = 1e-5
    assert big != GeometricImage(big.data * (1 + 5e-5), 1, 2)
    assert a == a.to(torch.float32)  # compared in the promoted dtype
    # every descriptor counts, and a mismatch is False, not an error
    assert a != GeometricImage(a.data, -1, 2)
    assert a != GeometricImage(a.data, 1, 2, is_torus=(True, False))
    assert a != GeometricImage(a.data[:3, :3], 1, 2)
    assert GeometricImage(torch.zeros(2, 2, 2), 1, 2, k=0) != GeometricImage(torch.zeros(2, 2, 2), 1, 2, k=1)
    batched = GeometricImage(a.data.expand(3, 5, 5, 2), 1, 2, k=1)
    assert batched != a and a != batched and batched == GeometricImage(a.data.expand(3, 5, 5, 2).clone(), 1, 2, k=1)
    assert (a == "x") is False and (a != 3) is True
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)
    assert a.allclose(a + 1e-3 * img(5, k=1), rtol=0, atol=1e-2) and not a.allclose(a + 1e-3 * img(5, k=1), rtol=0, atol=1e-9)


def test_multi_image_equality_and_batch_checks():
    m = multi(batch=2)
    assert m == multi(batch=2) and m == m.to(torch.float32)
    assert m == m + m * 1e-7 and m != m + m * 1e-3
    assert not m.equal(m + m * 1e-7) and m.equal(multi(batch=2))  # equal() stays bitwise
    assert m != multi(batch=3) and m != multi(N=7) and m != multi(keys=((0, 1, 2),)) and (m == 3) is False
    assert not m.allclose(multi(batch=1)) and m.allclose(m * 1.001, rtol=1e-2)
    one, three = multi(batch=1), multi(batch=3)
    for op in (lambda: one + three, lambda: three - one, lambda: one.concat(three, axis=1)):
        with pytest.raises(ValueError, match="batch size"):
            op()
    assert one.concat(three, axis=0).batch_size == 4  # the batch axis may differ when concatenating along it
