"""A catalogue of bad inputs across the public API: each row is a call, the exception type it must raise and a regex
its message must match, naming the argument (or operand) and what was wrong. After the table, a canary: correct
calls of the same functions work. New layers append rows to BAD_INPUTS and calls to CANARY."""
import pickle

import numpy as np
import pytest
import torch
from escnn import gspaces
from escnn import nn as enn

import escnn_tensor as et
from escnn_tensor import grid, plotting
from escnn_tensor._pickling import rebuild_gspace
from escnn_tensor.groups import action_key, check_dimension, check_gspace, check_signed_permutation
from escnn_tensor.image import GeometricImage, MultiImage, from_geometric_tensor, to_geometric_tensor
from escnn_tensor.nn import GeometricConv
from escnn_tensor.nn._isolate import isolate
from escnn_tensor.representations import check_order, check_parity
from escnn_tensor.testing import assert_equivariant, random_input

GS2 = et.hyperoctahedral_gspace(2)
GS3 = et.hyperoctahedral_gspace(3)
T2 = et.tensor_type(GS2, [(0, 1, 1), (1, 1, 1)])
T3 = et.tensor_type(GS3, [(0, 1, 1), (1, 1, 1)])
REG2 = enn.FieldType(GS2, [GS2.regular_repr])
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


def gt2(ft=T2, N=5):
    return random_input(ft, N, 2, torch.float64, torch.Generator().manual_seed(0))


class NotAType(enn.FieldType):
    pass


def row(name, call, exc, match, marks=()):
    return pytest.param(call, exc, match, id=name, marks=marks)


UNCLEAR = "unclear error in a file owned by another helper (listed in the H5 report)"

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
    row("GeometricConv regular out_type", lambda: GeometricConv(T2, REG2, 3), ValueError, r"out_type: FieldType holds fields that are not tensor fields"),
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
    row("GeometricImage non-square", lambda: GeometricImage(torch.zeros(3, 4), 1, 2), ValueError, r"spatial axes must have equal sizes.*\(3, 4\)"),
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
    row("MultiImage empty", lambda: MultiImage({}, 2), ValueError, r"a MultiImage needs at least one \(k, parity\) entry"),
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
    row("to_geometric_tensor gspace string", lambda: to_geometric_tensor(multi(), "gs"), TypeError, r"gspace must be an escnn GSpace"),
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
    # ---- pickling, isolate ------------------------------------------------------------------------------------
    row("isolate a list", lambda: isolate([CONV]), TypeError, r"module must be a torch\.nn\.Module, got list"),
    row("isolate copy_tensors='yes'", lambda: isolate(CONV, copy_tensors="yes"), TypeError, r"copy_tensors must be True or False, got 'yes'"),
    row("pickle a FieldType subclass", lambda: pickle.dumps(NotAType(GS2, [GS2.trivial_repr])), TypeError, r"cannot pickle NotAType: only escnn's FieldType"),
    row("rebuild_gspace unknown kind", lambda: rebuild_gspace(("GSpace4D", ())), ValueError, r"recipe must describe a GSpace0D, GSpace2D or GSpace3D, got kind 'GSpace4D'"),
]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def test_catalogue_size():
    assert len(BAD_INPUTS) >= 60


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
    assert plotting.plot_image(torch.zeros(3, 3, 2), 1, 2, vmax=1.0) is not None
    assert plotting.plot_images([(torch.zeros(3, 3), 1), (torch.zeros(3, 3, 2), -1, "t")], ncols=1, D=2) is not None
    assert plotting.plot_image(torch.zeros(3, 3, 3), 1, 3, z_slices=[0, -1]) is not None
    assert len(assert_equivariant(conv, gt2())) == 8
    assert random_input(T2, 4, 1).tensor.shape == (1, 3, 4, 4)
    assert isolate(enn.SequentialModule(enn.R2Conv(T2, REG2, 3))) is not None
    assert pickle.loads(pickle.dumps(T2)) == T2 and rebuild_gspace(("GSpace2D", GS2._sg_id)) == GS2


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
