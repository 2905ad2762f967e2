"""ginjax's own test suite (tests/ of WilsonGregory/ginjax, 106 tests), behaviour by behaviour, for this API.

``GINJAX_SUITE`` maps every ginjax test to the test here that checks the same behaviour (in this module or an
existing one), or to the reason it has none (JAX-specific, out of scope, or a documented convention difference;
docs/images.md lists them). ``test_every_ginjax_test_is_mapped`` checks that each named test exists.
Expected values come from independent references written here (explicit pixel loops, numpy), never from the
code under test. Conventions: parities +1/-1 (ginjax 0/1); MultiImage blocks always carry batch and channel
axes (a ginjax block ``(C, ...)`` is ``(1, C, ...)`` here).
"""
import importlib
import itertools
import math

import numpy as np
import pytest
import torch

from escnn_tensor import group_matrices, hyperoctahedral_gspace, invariant_filters
from escnn_tensor.image import GeometricImage, MultiImage
from escnn_tensor.image import functional as fn
from escnn_tensor.image import time_series as ts

GEN = torch.Generator().manual_seed(21)
ROT90 = np.array([[0, -1], [1, 0]])
F64 = torch.float64

OUT_OF_SCOPE_1D = "out of scope: 1D images (escnn has no gspace for them; docs/images.md)"
JAX = "JAX-specific"

#: ginjax test -> "module::test" here (module relative to tests/), or the reason there is none
GINJAX_SUITE = {
    # test_functional_geometric_image.py (8)
    "testParseShape": "image.test_ginjax_parity::test_parse_shape",
    "testHash": "image.test_ginjax_parity::test_wrap_indices",
    "testConvolveNonSquare": "image.test_ginjax_parity::test_convolve_non_square",
    "testConvolveContract2D": "image.test_ginjax_parity::test_convolve_contract_is_convolve_then_contract",
    "testConvolveContract3D": "image.test_ginjax_parity::test_convolve_contract_is_convolve_then_contract",
    "testConvolveDepth": "image.test_ginjax_parity::test_convolve_depth_sums_input_channels",
    "testConvolveDepth_IK0_FK1": "image.test_ginjax_parity::test_convolve_depth_sums_input_channels",
    "testConvolveDepthMultiChannelsBatch": "image.test_ginjax_parity::test_convolve_channels_equal_single_convolutions",
    # test_geometric_image.py (26)
    "testZerosConstructor": "image.test_ginjax_parity::test_zeros",  # its 1D images: OUT_OF_SCOPE_1D
    "testConstructor": "image.test_ginjax_parity::test_constructor_non_square",  # its 1D image: OUT_OF_SCOPE_1D
    "testEqual": "image.test_ginjax_parity::test_equal",
    "testAdd": "image.test_ginjax_parity::test_add_sub",
    "testSub": "image.test_ginjax_parity::test_add_sub",
    "testMul": "image.test_ginjax_parity::test_mul_tensor_product",
    "testTimeScalar": "image.test_ginjax_parity::test_times_scalar",
    "testGetItem": "image.test_ginjax_parity::test_getitem",
    "testContract": "image.test_ginjax_parity::test_contract",
    "testMulticontract": "image.test_ginjax_parity::test_multicontract_equals_serial_contractions",
    "testLeviCivitaContract": "image.test_ginjax_parity::test_levi_civita_contract_explicit",
    "testNorm": "image.test_images::test_norm_and_normalize",
    "testNormalize": "image.test_images::test_norm_and_normalize",
    "testConvolveWithIK0_FK0": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testConvolveWithIK0_FK1": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testConvolveNonTorus": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testConvolveDilation": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testConvolveDilationNonTorus": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testConvolvePartialTorus": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testTimesGroupElement": "image.test_images::test_times_group_element_matches_pixel_loop",
    "testTimesGroupElementEven": "image.test_images::test_times_group_element_matches_pixel_loop",
    "testTimesGroupElement3D": "image.test_images::test_times_group_element_matches_pixel_loop",
    "testMaxPoolUseNorm": "image.test_images::test_max_pool_matches_loop_and_breaks_ties_first",
    "testMaxPool": "image.test_ginjax_parity::test_max_pool_values",
    "testAveragePool": "image.test_images::test_average_pool_unpool_translate",
    "testUnpool": "image.test_images::test_average_pool_unpool_translate",
    # test_multi_image.py, class TestMultiImage (21)
    "TestMultiImage.testConstructor": "image.test_ginjax_parity::test_multi_image_constructor_and_empty",
    "TestMultiImage.testCopy": "image.test_ginjax_parity::test_multi_image_copy_and_item_assignment",
    "TestMultiImage.testFromImages": "image.test_ginjax_parity::test_multi_image_from_images",
    "TestMultiImage.testEq": "image.test_ginjax_parity::test_multi_image_eq",
    "TestMultiImage.testGetSpatialDims": "image.test_ginjax_parity::test_multi_image_spatial_dims",
    "TestMultiImage.testAppend": "image.test_ginjax_parity::test_multi_image_append",
    "TestMultiImage.testConcat": "image.test_ginjax_parity::test_multi_image_concat",
    "TestMultiImage.testAdd": "image.test_ginjax_parity::test_multi_image_add_sub",
    "TestMultiImage.testSub": "image.test_ginjax_parity::test_multi_image_add_sub",
    "TestMultiImage.testMul": "image.test_ginjax_parity::test_multi_image_mul_div",
    "TestMultiImage.testDiv": "image.test_ginjax_parity::test_multi_image_mul_div",
    "TestMultiImage.testSize": "image.test_ginjax_parity::test_multi_image_size",
    "TestMultiImage.testVector": "image.test_ginjax_parity::test_multi_image_vector_round_trip",
    "TestMultiImage.testToFromScalarMultiImage": "image.test_ginjax_parity::test_multi_image_scalar_layout",
    "TestMultiImage.testTimesGroupElement": "image.test_ginjax_parity::test_multi_image_times_group_element",
    "TestMultiImage.testNorm": "image.test_ginjax_parity::test_multi_image_norm",
    "TestMultiImage.testGetComponent": "image.test_ginjax_parity::test_multi_image_get_component",
    "TestMultiImage.testToImages": "image.test_ginjax_parity::test_multi_image_to_images",
    "TestMultiImage.testExpandCombine": "image.test_ginjax_parity::test_multi_image_expand_combine",
    "TestMultiImage.testGetSignature": "image.test_ginjax_parity::test_multi_image_signature",
    "TestMultiImage.testGetNLeading": "image.test_ginjax_parity::test_multi_image_n_leading",
    # test_multi_image.py, class TestBatchMultiImage (13)
    "TestBatchMultiImage.testConstructor": "image.test_ginjax_parity::test_multi_image_constructor_and_empty",
    "TestBatchMultiImage.testGetSpatialDims": "image.test_ginjax_parity::test_multi_image_spatial_dims",
    "TestBatchMultiImage.testGetSubset": "image.test_ginjax_parity::test_multi_image_get_subset_get_one",
    "TestBatchMultiImage.testGetOneKeepDimsFalse": "image.test_ginjax_parity::test_multi_image_get_subset_get_one",
    "TestBatchMultiImage.testAppend": "image.test_ginjax_parity::test_multi_image_append_per_batch_entry",
    "TestBatchMultiImage.testConcat": "image.test_ginjax_parity::test_multi_image_concat",
    "TestBatchMultiImage.testConcatInverse": "image.test_ginjax_parity::test_multi_image_concat_inverse",
    "TestBatchMultiImage.testSize": "image.test_ginjax_parity::test_multi_image_size",
    "TestBatchMultiImage.testTimesGroupElement": "image.test_ginjax_parity::test_multi_image_times_group_element",
    "TestBatchMultiImage.testNorm": "image.test_ginjax_parity::test_multi_image_norm",
    "TestBatchMultiImage.testAdd": "image.test_ginjax_parity::test_multi_image_add_sub",
    "TestBatchMultiImage.testMul": "image.test_ginjax_parity::test_multi_image_mul_div",
    "TestBatchMultiImage.testToFromScalarMultiImage": "image.test_ginjax_parity::test_multi_image_scalar_layout",
    # test_misc.py (9)
    "testPermutationParity": "image.test_ginjax_parity::test_permutation_parity",
    "testLeviCivitaSymbol": "image.test_ginjax_parity::test_levi_civita_symbol_values_and_cache",
    "testGroupSize": "image.test_ginjax_parity::test_group_size",  # d = 4..6: out of scope (no escnn gspace)
    "testGetOperatorsInversesTranspose": "image.test_ginjax_parity::test_group_matrices_orthogonal",
    "testGetContractionIndices": "image.test_ginjax_parity::test_get_contraction_indices",
    "testTimeSeriesIdxsHardcoded": "image.test_ginjax_parity::test_time_series_idxs_small_cases",
    "testTimeSeriesIdxs": "image.test_ginjax_parity::test_time_series_idxs_windows",
    "testTimeSeriesToMultiImages": "image.test_ginjax_parity::test_times_series_to_multi_images",
    "testBatchTimeSeries": "image.test_ginjax_parity::test_batch_time_series",
    # test_ml.py (3)
    "testGetBatches": JAX + ": batches with a leading device axis for jax.pmap (torch uses DataLoader/DDP)",
    "testAutoregressiveStep": "image.test_ginjax_parity::test_autoregressive_step",
    "testAutoregressiveMap": "image.test_ginjax_parity::test_autoregressive_map_multi_image",
    # test_models.py (4)
    "testConvContract2D": "nn.test_conv::test_gathered_kernel_equals_dense_contraction",
    "testGroupAverageIsEquivariant": "models.test_group_average::test_group_average_plain_model_is_equivariant",
    "testClimate1d": OUT_OF_SCOPE_1D,
    "testClimate1dConstantFields": OUT_OF_SCOPE_1D,
    # test_props.py (18)
    "testContractionOrderInvariance": "image.test_ginjax_parity::test_contract",
    "testSerialContractionInvariance": "image.test_ginjax_parity::test_multicontract_equals_serial_contractions",
    "testContractSwappableIndices": "image.test_ginjax_parity::test_contract_swappable_indices",
    "testConvolutionLinearity": "image.test_ginjax_parity::test_convolution_linearity",
    "testConvolveConvolveCommutativity": "image.test_ginjax_parity::test_convolve_convolve_commutativity",
    "testOuterProductCommutativity": "image.test_ginjax_parity::test_outer_product_commutativity",
    "testOuterProductFilterInvariance": "image.test_ginjax_parity::test_outer_product_of_invariant_filters",
    "testKroneckerAdd": "image.test_ginjax_parity::test_kronecker_delta",
    "testInvariantFilter": "image.test_ginjax_parity::test_invariant_filter_contracts_to_lower_order",
    "testContractConvolve": "image.test_ginjax_parity::test_contract_convolve_commute",
    "testDiagEquivalence": "image.test_ginjax_parity::test_kronecker_delta",
    "testFrobeniusNormEquivariance": "image.test_ginjax_parity::test_norm_equivariance",
    "testNormEquivariance": "image.test_ginjax_parity::test_norm_equivariance",
    "testNormEquivarianceMultiImage": "image.test_ginjax_parity::test_multi_image_norm",
    "testMaxPoolEquivariance": "image.test_ginjax_parity::test_max_pool_equivariance",
    "testLayerNormEquivariance": "nn.test_norms::test_layer_norm_equivariant_train_and_eval",
    "testLayerNormWhitening": "convention difference: TensorLayerNorm divides by the mean squared norm, it does not "
    "whiten vectors to identity covariance (docs/images.md)",
    "testVNNonlinearEquivariance": "nn.test_nonlinearities::test_equivariance_train_and_eval",
    # test_slow.py (4)
    "testConvSubimage": "image.test_ginjax_parity::test_convolve_with_matches_naive",  # its slow reference
    "testConvolveWithRandoms": "image.test_ginjax_parity::test_convolve_with_matches_naive",
    "testUniqueInvariantFilters": "test_filters::test_invariant_filters_2d",
    "testGroup": "image.test_ginjax_parity::test_group_closed",
}


def test_every_ginjax_test_is_mapped():
    assert len(GINJAX_SUITE) == 106  # the number of tests in ginjax's tests/
    for name, target in GINJAX_SUITE.items():
        if "::" not in target:
            assert target.startswith((JAX, "out of scope", "convention difference")), name
            continue
        module, func = target.split("::")
        mod = importlib.import_module("tests." + module)
        assert callable(getattr(mod, func, None)), f"{name} -> {target} does not exist"


def rnd(*shape):
    return torch.randn(shape, generator=GEN, dtype=F64)


def naive_convolve(image, filt, is_torus, padding, dilation=1):
    """Direct sum from the definition: out[b, o, j] = sum_i sum_m image[b, i, j + e (m - c)] (x) filt[o, i, m], with
    c = (M - 1) / 2 for 'same'/'torus' and c = 0 for 'valid'; wrapped on torus axes, zero outside otherwise."""
    image, filt = np.asarray(image), np.asarray(filt)
    B, C = image.shape[:2]
    O = filt.shape[0]
    D = len(is_torus)
    spatial, fsp = image.shape[2 : 2 + D], filt.shape[2 : 2 + D]
    ta, tb = image.shape[2 + D :], filt.shape[2 + D :]
    centre = [0 if padding == "valid" else (m - 1) // 2 for m in fsp]
    out_sp = [n - dilation * (m - 1) if padding == "valid" else n for n, m in zip(spatial, fsp)]
    out = np.zeros((B, O, *out_sp) + ta + tb)
    for j in itertools.product(*map(range, out_sp)):
        for m in itertools.product(*map(range, fsp)):
            src = []
            for a in range(D):
                s = j[a] + dilation * (m[a] - centre[a])
                if is_torus[a] and padding != "valid":
                    s %= spatial[a]
                src.append(s)
            if not all(0 <= s < n for s, n in zip(src, spatial)):
                continue
            for b, o, i in itertools.product(range(B), range(O), range(C)):
                out[(b, o) + j] += np.multiply.outer(image[(b, i) + tuple(src)], filt[(o, i) + m])
    return out


# ---- functional ------------------------------------------------------------------------------------------


def test_parse_shape():
    assert fn.parse_shape((4, 4, 2), 2) == ((4, 4), 1)
    assert fn.parse_shape((4, 5, 2), 2) == ((4, 5), 1)
    assert fn.parse_shape((5, 5), 2) == ((5, 5), 0)
    assert fn.parse_shape((5, 5, 2, 2), 2) == ((5, 5), 2)
    assert fn.parse_shape((4, 5, 6, 3), 3) == ((4, 5, 6), 1)
    with pytest.raises(TypeError, match="shape must be a tuple"):
        fn.parse_shape(torch.ones(5, 5, 2), 2)
    with pytest.raises(ValueError, match="fewer than D=3"):
        fn.parse_shape((5, 5), 3)
    with pytest.raises(ValueError, match="must have size D=2"):
        fn.parse_shape((5, 5, 3), 2)


def test_wrap_indices():
    idx = torch.arange(20).reshape(10, 2)
    for spatial in [(4, 4), (3, 4)]:
        rows, cols = fn.wrap_indices(spatial, idx)
        assert rows.tolist() == [(2 * i) % spatial[0] for i in range(10)]
        assert cols.tolist() == [(2 * i + 1) % spatial[1] for i in range(10)]
    data = rnd(3, 4)
    assert torch.equal(data[fn.wrap_indices((3, 4), idx)], torch.stack([data[(2 * i) % 3, (2 * i + 1) % 4] for i in range(10)]))


@pytest.mark.parametrize(
    "padding,torus,dilation", [("same", (False, False), 1), ("valid", (False, False), 1), ("torus", (True, True), 1),
                               ("torus", (True, True), 2), ("torus", (True, False), 1)]
)
def test_convolve_non_square(padding, torus, dilation):
    img = torch.arange(20, dtype=F64).reshape(1, 1, 4, 5)
    filt = torch.ones(1, 1, 3, 3, dtype=F64)
    out = fn.convolve(2, img, filt, torus, padding=padding.upper(), rhs_dilation=dilation)
    np.testing.assert_allclose(out.numpy(), naive_convolve(img, filt, torus, padding, dilation), rtol=1e-13)
    assert out.shape == ((1, 1, 4, 5) if padding != "valid" else (1, 1, 2, 3))


@pytest.mark.parametrize("D,N", [(2, 3), (2, 4), (3, 3)])
def test_convolve_contract_is_convolve_then_contract(D, N):
    for ka, kb in itertools.product(range(4 if D == 2 else 3), range(3 if D == 2 else 2)):
        img = rnd(2, 3, *(N,) * D, *(D,) * ka)
        filt = rnd(4, 3, *(3,) * D, *(D,) * (ka + kb))
        pairs = tuple((i, i + ka) for i in range(ka))
        full = fn.multicontract(fn.convolve(D, img, filt, True), pairs, idx_shift=D + 2)
        torch.testing.assert_close(fn.convolve_contract(D, img, filt, True), full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("filter_k", [0, 1])
def test_convolve_depth_sums_input_channels(filter_k):
    img = torch.randint(-7, 8, (1, 2, 3, 3), generator=GEN).to(F64)
    filt = torch.randint(-1, 2, (1, 2, 3, 3) + (2,) * filter_k, generator=GEN).to(F64)
    out = fn.convolve(2, img, filt, (True, True))
    assert out.shape == (1, 1, 3, 3) + (2,) * filter_k
    np.testing.assert_array_equal(out.numpy(), naive_convolve(img, filt, (True, True), "torus"))


def test_convolve_channels_equal_single_convolutions():
    """out[b, o] = sum_i image[b, i] * filter[o, i], each term the single-image convolve_with."""
    for ka, kb in itertools.product(range(3), repeat=2):
        img, filt = rnd(7, 5, 3, 3, *(2,) * ka), rnd(4, 5, 3, 3, *(2,) * kb)
        out = fn.convolve(2, img, filt, True)
        for b, o in itertools.product(range(7), range(4)):
            ref = sum(
                GeometricImage(img[b, i], 1, 2).convolve_with(GeometricImage(filt[o, i], 1, 2)).data for i in range(5)
            )
            torch.testing.assert_close(out[b, o], ref, rtol=1e-12, atol=1e-12)


# ---- GeometricImage --------------------------------------------------------------------------------------


def test_zeros():
    for N, k, p, D, torus in [(20, 0, 1, 2, True), (20, 3, 1, 2, True), ((5, 5, 5), 1, -1, 3, False), ((4, 5, 6), 0, 1, 3, True)]:
        img = GeometricImage.zeros(N, k, p, D, torus, dtype=F64)
        spatial = (N,) * D if isinstance(N, int) else N
        assert img.data.shape == spatial + (D,) * k and (img.k, img.parity, img.D) == (k, p, D)
        assert img.is_torus == (torus,) * D and img.spatial_dims == spatial and not img.data.any()


def test_constructor_non_square():
    img = GeometricImage(rnd(4, 5), 1, 2)
    assert (img.spatial_dims, img.k, img.is_torus) == ((4, 5), 0, (True, True))
    img = GeometricImage(rnd(2, 5, 2), 1, 2)
    assert (img.spatial_dims, img.k) == ((2, 5), 1)
    with pytest.raises(ValueError, match="N is not|no single side N|not square"):
        img.N
    with pytest.raises(ValueError, match="at least 3 axes"):
        GeometricImage(rnd(10, 10), 1, 3)
    with pytest.raises(ValueError, match="size D=2"):
        GeometricImage(rnd(10, 10, 3, 3), 1, 2)
    # the group acts where the grid allows: the flips of a rectangle, not the rotations
    rect = GeometricImage(rnd(4, 5, 2), -1, 2)
    for M in group_matrices(hyperoctahedral_gspace(2)):
        if M[0, 0] != 0:  # diagonal: a flip of the rectangle; pixel a -> M a, vector v -> det(M) M v
            out = rect.times_group_element(M).data
            ref = rect.data.flip([i for i in range(2) if M[i, i] < 0]) * torch.tensor(np.diag(M) * np.linalg.det(M))
            assert torch.equal(out, ref)
        else:
            with pytest.raises(ValueError, match="does not map the grid"):
                rect.times_group_element(M)


def test_equal():
    one = GeometricImage(torch.ones(10, 10, 2, dtype=F64), 1, 2)
    assert one == GeometricImage(torch.ones(10, 10, 2, dtype=F64), 1, 2)
    for other in [GeometricImage(torch.ones(5, 5, 2), 1, 2), GeometricImage(torch.ones(10, 10, 2, 2), 1, 2),
                  GeometricImage(torch.ones(10, 10, 10), 1, 3), GeometricImage(torch.ones(10, 10, 2), -1, 2),
                  GeometricImage(torch.ones(10, 10, 2), 1, 2, False), GeometricImage(torch.ones(9, 10, 2), 1, 2),
                  2 * one, 1.0001 * one]:
        assert one != other
    assert one == 1.0000001 * one
    assert GeometricImage(torch.ones(2, 2, 2), 1, 3) != GeometricImage(torch.ones(2, 2, 2), 1, 2)  # D=3 k=0 vs D=2 k=1


def test_add_sub():
    a, b = GeometricImage(rnd(4, 5, 2), 1, 2), GeometricImage(rnd(4, 5, 2), 1, 2)
    assert torch.equal((a + b).data, a.data + b.data) and torch.equal((a - b).data, a.data - b.data)
    for other in [GeometricImage(rnd(4, 5, 2), -1, 2), GeometricImage(rnd(4, 5, 2, 2), 1, 2),
                  GeometricImage(rnd(5, 5, 2), 1, 2), GeometricImage(rnd(4, 5, 2), 1, 2, False)]:
        with pytest.raises(ValueError):
            a + other
        with pytest.raises(ValueError):
            a - other


def test_mul_tensor_product():
    a, b = GeometricImage(rnd(3, 3, 2), -1, 2), GeometricImage(rnd(3, 3, 2, 2), -1, 2)
    ab = a * b
    assert (ab.k, ab.parity) == (3, 1)
    np.testing.assert_allclose(ab.data.numpy(), np.einsum("xyi,xyjk->xyijk", a.data.numpy(), b.data.numpy()), rtol=1e-14)
    with pytest.raises(ValueError):
        a * GeometricImage(rnd(4, 4, 2), 1, 2)


def test_times_scalar():
    a = GeometricImage(torch.ones(10, 10, 2, dtype=F64), 1, 2)
    for s in (5, 3.4):
        r = a * s
        assert (r.data == s).all() and (r.parity, r.D, r.k, r.spatial_dims) == (a.parity, a.D, a.k, a.spatial_dims)
    assert (a.data == 1).all()


def test_getitem():
    vals = rnd(10, 10, 2, 2, 2)
    img = GeometricImage(vals, 1, 2)
    assert img[0, 5, 0, 1, 1] == vals[0, 5, 0, 1, 1] and torch.equal(img[0], vals[0])
    assert torch.equal(img[4:, 2:3], vals[4:, 2:3]) and img[4:, 2:3].shape == (6, 1, 2, 2, 2)


def test_contract():
    x = rnd(3, 3, 2, 2, 2)
    img = GeometricImage(x, 1, 2)
    for i, j in itertools.permutations(range(3), 2):
        rest = [t for t in range(3) if t not in (i, j)][0]
        ref = np.zeros((3, 3, 2))
        for a, r in itertools.product(range(2), range(2)):
            idx = [0, 0, 0]
            idx[i], idx[j], idx[rest] = a, a, r
            ref[..., r] += x.numpy()[(slice(None), slice(None)) + tuple(idx)]
        np.testing.assert_allclose(img.contract(i, j).data.numpy(), ref, rtol=1e-14)
        assert img.contract(i, j) == img.contract(j, i)
    with pytest.raises(ValueError):
        GeometricImage(rnd(3, 3), 1, 2).contract(0, 1)


def test_multicontract_equals_serial_contractions():
    img = GeometricImage(rnd(3, 3, 2, 2, 2, 2, 2), 1, 2)
    for (i1, j1), (i2, j2) in fn.get_contraction_indices(5, 1):
        shift = lambda t: t - (t > i1) - (t > j1)  # noqa: E731
        serial = img.contract(i1, j1).contract(shift(i2), shift(j2))
        assert img.multicontract(((i1, j1), (i2, j2))) == serial
        assert img.multicontract(((i2, j2), (i1, j1))) == serial  # order of the pairs does not matter
    for k in (0, 2):  # no pairs: the identity
        x = GeometricImage(rnd(3, 3, *(2,) * k), 1, 2)
        assert x.multicontract(()).data is x.data
        assert fn.multicontract(x.data, ()) is x.data


def test_levi_civita_contract_explicit():
    v = rnd(3, 3, 2)
    out = GeometricImage(v, 1, 2).levi_civita_contract(0)
    assert out.parity == -1 and out.spatial_dims == (3, 3)
    np.testing.assert_array_equal(out.data.numpy(), torch.stack([-v[..., 1], v[..., 0]], -1).numpy())
    t = rnd(3, 3, 3, 3, 3)
    out = GeometricImage(t, -1, 3).levi_civita_contract((0, 1))
    ref = torch.stack([t[..., 1, 2] - t[..., 2, 1], t[..., 2, 0] - t[..., 0, 2], t[..., 0, 1] - t[..., 1, 0]], -1)
    assert out.parity == 1
    torch.testing.assert_close(out.data, ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    "D,N,ka,kb,torus,padding,dilation",
    [(2, 3, 0, 0, True, None, 1), (2, 3, 0, 1, True, None, 1), (2, 4, 1, 1, False, None, 1),
     (2, 6, 0, 0, True, None, 2), (2, 6, 1, 0, False, None, 2), (2, 5, 0, 1, (True, False), None, 1),
     (3, 3, 1, 1, True, None, 1), (2, 5, 0, 0, False, "VALID", 1)],
)
def test_convolve_with_matches_naive(D, N, ka, kb, torus, padding, dilation):
    img = GeometricImage(rnd(*(N,) * D, *(D,) * ka), 1, D, is_torus=torus)
    filt = GeometricImage(rnd(*(3,) * D, *(D,) * kb), -1, D)
    out = img.convolve_with(filt, padding=padding, dilation=dilation)
    torus_t = img.is_torus
    mode = "valid" if padding == "VALID" else ("torus" if any(torus_t) else "same")
    ref = naive_convolve(img.data[None, None], filt.data[None, None], torus_t, mode, dilation)[0, 0]
    assert out.parity == -1 and out.k == ka + kb
    np.testing.assert_allclose(out.data.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_max_pool_values():
    x = torch.tensor([[4, 1, 0, 1], [0, 0, -3, 2], [1, 0, 1, 0], [1, 0, 2, 1]], dtype=F64)
    img = GeometricImage(x, 1, 2)
    plain = img.max_pool(2, use_norm=False)
    ref = x.reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(2, 2, 4).amax(-1)
    assert torch.equal(plain.data, ref) and plain.spatial_dims == (2, 2) and plain.is_torus == (True, True)
    assert torch.equal(img.max_pool(2).data, torch.tensor([[4.0, -3.0], [1.0, 2.0]], dtype=F64))  # by |value|
    assert img.max_pool(4).data.tolist() == [[4.0]]
    with pytest.raises(ValueError, match="scalar image"):
        GeometricImage(rnd(4, 4, 2), 1, 2).max_pool(2, use_norm=False)
    cube = GeometricImage(torch.arange(64, dtype=F64).reshape(4, 4, 4), 1, 3).max_pool(2, use_norm=False).data
    assert torch.equal(cube, torch.arange(64, dtype=F64).reshape(2, 2, 2, 2, 2, 2).amax((1, 3, 5)))


# ---- propositions (ginjax's test_props.py) ----------------------------------------------------------------


def test_contract_swappable_indices():
    img = GeometricImage(rnd(3, 3, 2, 2, 2), 1, 2)
    filters = invariant_filters(hyperoctahedral_gspace(2), 3, 2, 1)
    assert filters.shape[0] > 0
    for f in filters:
        conv = img.convolve_with(GeometricImage(f, 1, 2))
        for i in range(3):
            assert conv.contract(i, 3) == conv.contract(i, 4)
    for f1, f2 in itertools.product(filters, repeat=2):
        prod = img.convolve_with(GeometricImage(f1, 1, 2)) * img.convolve_with(GeometricImage(f2, 1, 2))
        for i in (0, 1, 2, 5, 6, 7):
            assert prod.contract(i, 3) == prod.contract(i, 4) and prod.contract(i, 8) == prod.contract(i, 9)


def test_convolution_linearity():
    a, b = GeometricImage(rnd(3, 3, 2), 1, 2), GeometricImage(rnd(3, 3, 2), 1, 2)
    c = GeometricImage(rnd(3, 3, 2), 1, 2)
    lhs = a.convolve_with(c) * 0.3 + b.convolve_with(c) * -1.7
    assert lhs == (a * 0.3 + b * -1.7).convolve_with(c)


def test_convolve_convolve_commutativity():
    img = GeometricImage(rnd(3, 3, 2), 1, 2)
    c1, c2 = GeometricImage(rnd(3, 3, 2), -1, 2), GeometricImage(rnd(3, 3, 2, 2), 1, 2)
    b1, b2 = img.convolve_with(c1).convolve_with(c2), img.convolve_with(c2).convolve_with(c1)
    assert b1.parity == b2.parity and b1.transpose([0, 2, 3, 1]) == b2


def test_outer_product_commutativity():
    img = GeometricImage(rnd(3, 3, 2), 1, 2)
    c1, c2 = GeometricImage(rnd(3, 3, 2), -1, 2), GeometricImage(rnd(3, 3, 2, 2), 1, 2)
    b1, b2 = img.convolve_with(c1) * img.convolve_with(c2), img.convolve_with(c2) * img.convolve_with(c1)
    assert b1.transpose([2, 3, 4, 0, 1]) == b2


def test_outer_product_of_invariant_filters():
    gs = hyperoctahedral_gspace(2)
    filters = [GeometricImage(f, p, 2) for k in range(3) for p in (1, -1) for f in invariant_filters(gs, 3, k, p)]
    for c1, c2 in itertools.product(filters, repeat=2):
        prod = c1 * c2
        for M in group_matrices(gs):
            assert prod.times_group_element(M).allclose(prod, rtol=1e-12, atol=1e-12)


def test_kronecker_delta():
    for D in (2, 3):
        img = GeometricImage(rnd(*(3,) * D, *(D,) * 3), 1, D)
        expanded = img * GeometricImage.kronecker_delta(3, D, 2, dtype=F64)
        assert expanded.k == 5
        assert expanded.contract(3, 4) == img * D  # delta_ii = D
        assert expanded.contract(0, 3).transpose((2, 0, 1)) == img  # contracting one delta index relabels
        # diag(v) is v (x) delta^(3) contracted once
        v = rnd(*(3,) * D, D)
        diag = fn.multicontract(fn.tensor_product(v, 1, fn.kronecker_delta_symbol(D, 3), 3), ((0, 1),), idx_shift=D)
        torch.testing.assert_close(diag, torch.diag_embed(v), rtol=0, atol=0)


def test_invariant_filter_contracts_to_lower_order():
    """Every invariant filter of order k is a contraction of one of order k + 2 (up to scale)."""
    gs = hyperoctahedral_gspace(2)
    for k, p in itertools.product(range(3), (1, -1)):
        upper = invariant_filters(gs, 3, k + 2, p)
        for f in invariant_filters(gs, 3, k, p):
            found = False
            for u, (i, j) in itertools.product(upper, itertools.combinations(range(k + 2), 2)):
                c = GeometricImage(u, p, 2).contract(i, j).data.reshape(-1)
                if c.norm() > 1e-8 and torch.linalg.matrix_rank(torch.stack([f.reshape(-1), c]), tol=1e-8) == 1:
                    found = True
                    break
            assert found, (k, p)


def test_contract_convolve_commute():
    img = GeometricImage(rnd(3, 3, 2, 2, 2), 1, 2)
    for c in (GeometricImage(rnd(3, 3, 2), 1, 2), GeometricImage(rnd(3, 3, 2, 2), 1, 2)):
        for i, j in itertools.combinations(range(3), 2):
            assert img.contract(i, j).convolve_with(c) == img.convolve_with(c).contract(i, j)


def test_norm_equivariance():
    for D in (2, 3):
        gs = hyperoctahedral_gspace(D)
        for k, p in itertools.product(range(4), (1, -1)):
            img = GeometricImage(rnd(*(5 if D == 2 else 3,) * D, *(D,) * k), p, D)
            t = img.data.reshape(-1, *(D,) * k)[0]
            pairs = tuple((i, i + k) for i in range(k))
            assert torch.allclose(t.norm(), fn.multicontract(fn.tensor_product(t, k, t, k), pairs).sqrt())
            for M in group_matrices(gs):
                assert img.norm().times_group_element(M) == img.times_group_element(M).norm()


def test_max_pool_equivariance():
    for D in (2, 3):
        for k, p in itertools.product(range(4), (1, -1)):
            img = GeometricImage(rnd(*(6 if D == 2 else 4,) * D, *(D,) * k), p, D)
            for M in group_matrices(hyperoctahedral_gspace(D)):
                assert torch.equal(img.max_pool(2).times_group_element(M).data, img.times_group_element(M).max_pool(2).data)


# ---- group (test_misc.py, test_slow.py) -------------------------------------------------------------------


def test_permutation_parity():
    for n in range(1, 5):
        for perm in itertools.permutations(range(n)):
            # independent: the determinant of the permutation matrix
            assert fn.permutation_parity(perm) == round(np.linalg.det(np.eye(n)[list(perm)]))
    assert fn.permutation_parity([1, 1]) == 0 and fn.permutation_parity((2, 1, 1)) == 0
    assert fn.permutation_parity([0]) == 1


def test_levi_civita_symbol_values_and_cache():
    eps2 = fn.levi_civita_symbol(2)
    assert eps2.tolist() == [[0, 1], [-1, 0]]
    eps3 = fn.levi_civita_symbol(3)
    a, b = rnd(3), rnd(3)
    torch.testing.assert_close(torch.einsum("ijk,j,k->i", eps3, a, b), torch.linalg.cross(a, b), rtol=1e-14, atol=1e-14)
    assert fn.levi_civita_symbol(2) is eps2 and fn.levi_civita_symbol(3) is eps3  # cached, not remade
    assert fn.levi_civita_symbol(2, torch.float32) is not eps2
    with pytest.raises(ValueError):
        fn.levi_civita_symbol(1)


def test_group_size():
    for d in (2, 3):  # d = 4..6: out of scope (escnn has no gspace)
        assert len(group_matrices(hyperoctahedral_gspace(d))) == 2**d * math.factorial(d)


def test_group_matrices_orthogonal():
    for d in (2, 3):
        for M in group_matrices(hyperoctahedral_gspace(d)):
            assert (M @ M.T == np.eye(d)).all() and (M.T @ M == np.eye(d)).all()


def test_group_closed():
    for d in (2, 3):
        mats = {m.tobytes() for m in group_matrices(hyperoctahedral_gspace(d))}
        for a, b in itertools.product(group_matrices(hyperoctahedral_gspace(d)), repeat=2):
            assert (a @ b).tobytes() in mats


def test_get_contraction_indices():
    assert fn.get_contraction_indices(3, 1) == [((0, 1),), ((0, 2),), ((1, 2),)]
    assert fn.get_contraction_indices(3, 1, ((0, 1),)) == [((0, 1),), ((0, 2),)]
    assert fn.get_contraction_indices(5, 3) == [(p,) for p in itertools.combinations(range(5), 2)]
    # two disjoint pairs of 5 indices: 5 choose 4 sets of four, 3 pairings each
    two = fn.get_contraction_indices(5, 1)
    assert len(two) == 15 == len(set(two)) and all(len(set(sum(c, ()))) == 4 for c in two)
    # exchanging swappable indices merges classes: one representative (the smallest) per orbit, counted by Burnside
    for swaps in [((0, 1),), ((0, 1), (2, 3))]:
        got = fn.get_contraction_indices(5, 1, swaps)
        relabelings = []
        for flips in itertools.product((0, 1), repeat=len(swaps)):
            m = list(range(5))
            for (a, b), f in zip(swaps, flips):
                if f:
                    m[a], m[b] = m[b], m[a]
            relabelings.append(m)

        def moved(c, m):
            return tuple(sorted(tuple(sorted((m[i], m[j]))) for i, j in c))

        assert sorted({min(moved(c, m) for m in relabelings) for c in two}) == got
        fixed = sum(moved(c, m) == c for c in two for m in relabelings)
        assert len(got) == fixed // len(relabelings)
    assert len(fn.get_contraction_indices(5, 1, ((0, 1),))) == 9 and len(fn.get_contraction_indices(5, 1, ((0, 1), (2, 3)))) == 6
    assert fn.get_contraction_indices(2, 2) == [()]


# ---- MultiImage ----------------------------------------------------------------------------------------------


def mi(keys, B=1, N=5, D=2, torus=True):
    return MultiImage({(k, p): rnd(B, c, *(N,) * D, *(D,) * k) for k, p, c in keys}, D, torus)


def test_multi_image_constructor_and_empty():
    empty = MultiImage({}, 2, False)
    assert (empty.D, empty.is_torus, len(empty), list(empty.items())) == (2, (False, False), 0, [])
    assert (empty.size(), empty.spatial_dims, empty.n_leading, empty.batch_size, empty.signature) == (0, (), 0, 0, ())
    m = MultiImage({(1, 1): rnd(5, 3, 5, 5, 2), (0, 1): rnd(5, 10, 5, 5)}, 2, True)
    assert list(m) == [(0, 1), (1, 1)] and m[(0, 1)].shape == (5, 10, 5, 5) and m.is_torus == (True, True)
    assert m.empty().D == 2 and len(m.empty()) == 0 and m.empty().is_torus == m.is_torus


def test_multi_image_copy_and_item_assignment():
    a = mi([(0, 1, 10), (1, 1, 3)])
    b = a.copy()
    assert b is not a and b.equal(a)
    b[(1, 1)] = torch.arange(50, dtype=F64).reshape(1, 1, 5, 5, 2)
    assert b[(1, 1)].shape == (1, 1, 5, 5, 2) and a[(1, 1)].shape == (1, 3, 5, 5, 2)  # the original is unchanged
    b[(0, 1)].zero_()
    assert a[(0, 1)].abs().sum() > 0  # blocks are cloned: in-place changes do not reach the original
    b[(2, -1)] = rnd(1, 2, 5, 5, 2, 2)
    assert list(b) == [(0, 1), (1, 1), (2, -1)]
    del b[(0, 1)]
    assert list(b) == [(1, 1), (2, -1)]


def test_multi_image_from_images():
    data = rnd(10, 5, 5, 2)
    images = [GeometricImage(x, 1, 2) for x in data]
    m = MultiImage.from_images(images)
    assert (m.D, m.is_torus, list(m)) == (2, (True, True), [(1, 1)]) and torch.equal(m[(1, 1)], data[None])
    data2 = rnd(33, 5, 5, 2, 2)
    m2 = MultiImage.from_images(images + [GeometricImage(x, 1, 2) for x in data2])
    assert list(m2) == [(1, 1), (2, 1)] and m2[(1, 1)].shape == (1, 10, 5, 5, 2) and torch.equal(m2[(2, 1)], data2[None])
    batched = MultiImage.from_images([GeometricImage(rnd(3, 5, 5), -1, 2, k=0) for _ in range(2)])
    assert batched.signature == (((0, -1), 2),) and batched.batch_size == 3
    with pytest.raises(ValueError, match="empty list"):
        MultiImage.from_images([])


def test_multi_image_eq():
    a = mi([(0, 1, 10)], N=3)
    a.append(1, 1, rnd(1, 10, 3, 3, 2))
    assert a == a.copy()
    assert a != MultiImage({(0, 1): torch.ones(1, 10, 3, 3, dtype=F64)}, 2)  # keys differ
    assert a != MultiImage({(0, 1): torch.ones(1, 10, 3, 3, dtype=F64), (1, 1): torch.ones(1, 10, 3, 3, 2, dtype=F64)}, 2)
    assert a != MultiImage(dict(a), 2, False)  # is_torus differs


def test_multi_image_spatial_dims():
    assert MultiImage({}, 2).spatial_dims == ()
    assert MultiImage({(0, 1): torch.ones(1, 1, 5, 5)}, 2).spatial_dims == (5, 5)
    m = MultiImage({(1, 1): torch.ones(4, 3, 4, 6, 2), (1, -1): torch.ones(4, 1, 4, 6, 2)}, 2)
    assert m.get_spatial_dims() == (4, 6)
    with pytest.raises(ValueError, match="square"):
        m.N


def test_multi_image_append():
    m = mi([(0, 1, 10), (1, 1, 3)])
    block = rnd(1, 4, 5, 5, 2)
    assert m.append(1, 1, block) is m
    assert m[(0, 1)].shape == (1, 10, 5, 5) and m[(1, 1)].shape == (1, 7, 5, 5, 2)
    assert torch.equal(m[(1, 1)][:, 3:], block)
    m.append(2, 1, rnd(1, 2, 5, 5, 2, 2))
    assert m[(2, 1)].shape == (1, 2, 5, 5, 2, 2)
    with pytest.raises(ValueError, match=r"must have shape"):
        m.append(3, 1, rnd(1, 2, 5, 5, 2, 2))  # a block of the wrong order
    empty = m.empty()
    assert empty.spatial_dims == ()
    empty.append(0, 1, rnd(1, 10, 5, 5))
    assert empty.spatial_dims == (5, 5)
    batch = mi([(0, 1, 2)], B=2)
    batch.append(0, 1, rnd(3, 2, 5, 5), axis=0)
    assert batch[(0, 1)].shape == (5, 2, 5, 5)


def test_multi_image_append_per_batch_entry():
    """ginjax builds a MultiImage entry by entry under vmap; here append works on whole batches."""
    m = mi([(0, 1, 10), (1, 1, 3)], B=5)
    out = m.empty()
    scale = torch.arange(5, dtype=F64)
    for (k, p), v in m.items():
        out.append(k, p, scale.reshape((5,) + (1,) * (v.dim() - 1)) * torch.ones_like(v))
    assert list(out) == list(m) and out.D == m.D and out.is_torus == m.is_torus
    for key, v in out.items():
        for b in range(5):
            assert (v[b] == b).all()


def test_multi_image_concat():
    a, b = mi([(0, 1, 10), (1, 1, 3)]), mi([(1, 1, 4), (2, 1, 5)])
    c = a.concat(b)  # channels by default
    assert c.signature == (((0, 1), 10), ((1, 1), 7), ((2, 1), 5))
    assert torch.equal(c[(1, 1)], torch.cat([a[(1, 1)], b[(1, 1)]], 1))
    with pytest.raises(ValueError, match="D and is_torus"):
        mi([(0, 1, 1)]).concat(mi([(0, 1, 1)], D=3))
    with pytest.raises(ValueError, match="D and is_torus"):
        mi([(0, 1, 1)]).concat(mi([(0, 1, 1)], torus=False))
    x, y = mi([(1, 1, 10), (2, 1, 3)], B=5), mi([(1, 1, 10), (2, 1, 3)], B=7)
    xy = x.concat(y, axis=0)
    assert xy[(1, 1)].shape == (12, 10, 5, 5, 2) and torch.equal(xy[(2, 1)], torch.cat([x[(2, 1)], y[(2, 1)]]))
    assert MultiImage({}, 2).concat(x).equal(x) and x.concat(MultiImage({}, 2)).equal(x)


def test_multi_image_concat_inverse():
    a, b = mi([(1, 1, 10), (2, 1, 3)], B=5), mi([(1, 1, 10), (2, 1, 3)], B=5)
    x, y = a.concat(b).concat_inverse(b.signature)
    assert x.equal(a) and y.equal(b)
    x, y = a.concat(b, axis=0).concat_inverse({(1, 1): 5, (2, 1): 5}, axis=0)
    assert x.equal(a) and y.equal(b)
    only_a, nothing = a.concat_inverse({})
    assert only_a.equal(a) and len(nothing) == 0


def test_multi_image_add_sub():
    a, b = mi([(0, 1, 4), (1, 1, 4)], B=3), mi([(0, 1, 4), (1, 1, 4)], B=3)
    s, d = a + b, a - b
    for key in a:
        assert torch.equal(s[key], a[key] + b[key]) and torch.equal(d[key], a[key] - b[key])
    for other in [mi([(1, 1, 4)], B=3), mi([(0, 1, 5), (1, 1, 4)], B=3), mi([(0, 1, 4), (1, 1, 4)], B=4)]:
        with pytest.raises(ValueError):
            a + other
        with pytest.raises(ValueError):
            a - other


def test_multi_image_mul_div():
    a = mi([(0, 1, 3), (1, 1, 3)], B=4)
    for s in (3, -1):
        assert all(torch.equal((a * s)[key], a[key] * s) for key in a) and (a * s).is_torus == a.is_torus
        assert all(torch.allclose((a / s)[key], a[key] / s) for key in a)
    with pytest.raises(TypeError):
        a * a


def test_multi_image_size():
    assert MultiImage({}, 2).size() == 0
    assert MultiImage({(0, 1): torch.ones(1, 1, 5, 5)}, 2).size() == 25
    assert MultiImage({(0, 1): torch.ones(2, 4, 5, 5)}, 2).size() == 2 * 4 * 25
    m = MultiImage({(0, 1): torch.ones(3, 1, 5, 5), (1, 1): torch.ones(3, 4, 5, 5, 2), (1, -1): torch.ones(3, 2, 5, 5, 2),
                    (2, 1): torch.ones(3, 3, 5, 5, 2, 2)}, 2)
    assert m.size() == 3 * (25 + 4 * 25 * 2 + 2 * 25 * 2 + 3 * 25 * 4)


def test_multi_image_vector_round_trip():
    like = mi([(0, 1, 1), (1, 1, 1), (2, 1, 1)])
    v = rnd(like.size())
    m = MultiImage.from_vector(v, like)
    assert m.size() == like.size() and m.signature == like.signature and torch.equal(m.to_vector(), v)
    assert torch.equal(m[(1, 1)].reshape(-1), v[25 : 25 + 50])  # blocks in canonical key order, row-major


def test_multi_image_scalar_layout():
    ones = MultiImage({(0, 1): torch.ones(4, 4, 5, 5), (1, 1): torch.ones(4, 2, 5, 5, 2), (2, 1): torch.ones(4, 1, 5, 5, 2, 2)}, 2)
    s = ones.to_scalar_multi_image()
    assert list(s) == [(0, 1)] and torch.equal(s[(0, 1)], torch.ones(4, 4 + 2 * 2 + 4, 5, 5))
    m = mi([(0, 1, 3), (1, 1, 1), (1, -1, 2), (2, 1, 1)], B=4)
    s = m.to_scalar_multi_image()
    # channel layout: keys in canonical order, each channel's D^k components consecutive
    assert torch.equal(s[(0, 1)][:, 3], m[(1, 1)][:, 0, ..., 0]) and torch.equal(s[(0, 1)][:, 4], m[(1, 1)][:, 0, ..., 1])
    assert torch.equal(s[(0, 1)][:, 7], m[(1, -1)][:, 1, ..., 0]) and torch.equal(s[(0, 1)][:, 11], m[(2, 1)][:, 0, ..., 1, 0])
    assert s.from_scalar_multi_image(m.signature).equal(m)


def test_multi_image_times_group_element():
    for D in (2, 3):
        m = MultiImage({}, D)
        for p, k in itertools.product((1, -1), range(4)):
            m.append(k, p, rnd(2, 3, *(3,) * D, *(D,) * k))
        for M in group_matrices(hyperoctahedral_gspace(D)):
            out = m.times_group_element(M)
            for (k, p), v in m.items():
                ref = GeometricImage(v, p, D, k=k).times_group_element(M).data
                assert torch.equal(out[(k, p)], ref)


def test_multi_image_norm():
    m = mi([(0, 1, 3), (0, -1, 3), (1, 1, 3)], B=4)
    n = m.norm()
    assert list(n) == [(0, 1)] and n[(0, 1)].shape == (4, 9, 5, 5)
    assert torch.equal(n[(0, 1)][:, :3], m[(0, 1)].abs()) and torch.equal(n[(0, 1)][:, 3:6], m[(0, -1)].abs())
    torch.testing.assert_close(n[(0, 1)][:, 6:], m[(1, 1)].pow(2).sum(-1).sqrt(), rtol=1e-14, atol=0)
    for D in (2, 3):  # the norm is invariant: norm(g x) = g norm(x)
        x = MultiImage({(k, p): rnd(2, 3, *(3,) * D, *(D,) * k) for k in range(4) for p in (1, -1)}, D)
        for M in group_matrices(hyperoctahedral_gspace(D)):
            assert x.times_group_element(M).norm() == x.norm().times_group_element(M)


def test_multi_image_get_component():
    T = 4
    m = MultiImage({(0, 1): rnd(2, 10 * T, 5, 5)}, 2)
    fields = m[(0, 1)].reshape(2, 10, T, 5, 5)
    assert torch.equal(m.get_component(0, future_steps=T)[(0, 1)], fields[:, 0])
    assert torch.equal(m.get_component(1, future_steps=T)[(0, 1)], fields[:, 1])
    assert torch.equal(m.get_component(slice(0, 2), future_steps=T)[(0, 1)], fields[:, :2].reshape(2, 2 * T, 5, 5))
    # density, pressure (scalars), velocity (vector): components 0, 1, then 2 and 3 the velocity's x and y
    flow = MultiImage({(0, 1): rnd(1, 2 * T, 5, 5), (1, 1): rnd(1, T, 5, 5, 2)}, 2)
    assert torch.equal(flow.get_component(3, future_steps=T)[(0, 1)], flow[(1, 1)][..., 1])


def test_multi_image_to_images():
    m = mi([(0, 1, 3), (1, 1, 3), (1, -1, 3), (2, 1, 3)])
    images = m.to_images()
    assert len(images) == 12
    for n, ((k, p), c) in enumerate(itertools.product([(0, 1), (1, 1), (1, -1), (2, 1)], range(3))):
        assert torch.equal(images[n].data, m[(k, p)][0, c]) and (images[n].k, images[n].parity) == (k, p)


def test_multi_image_expand_combine():
    T = 3
    m = MultiImage({(0, 1): rnd(1, 2 * T, 5, 5), (1, 1): rnd(1, 3 * T, 5, 5, 2)}, 2)
    e = m.expand(1, T)
    assert e.n_leading == 3 and torch.equal(e[(0, 1)], m[(0, 1)].reshape(1, 2, T, 5, 5))
    assert torch.equal(e[(1, 1)], m[(1, 1)].reshape(1, 3, T, 5, 5, 2))
    assert e.combine_axes((1, 2)).equal(m)


def test_multi_image_signature():
    assert MultiImage({}, 2).signature == ()
    assert MultiImage({(0, 1): torch.ones(1, 1, 5, 5)}, 2).signature == (((0, 1), 1),)
    m = MultiImage({(1, 1): torch.ones(1, 2, 5, 5, 2), (1, -1): torch.ones(1, 5, 5, 5, 2)}, 2)
    assert m.get_signature() == (((1, 1), 2), ((1, -1), 5))


def test_multi_image_n_leading():
    assert MultiImage({}, 2).get_n_leading() == 0
    assert MultiImage({(0, 1): torch.ones(5, 3, 5, 5)}, 2).get_n_leading() == 2
    assert MultiImage({(0, 1): torch.ones(5, 3, 2, 5, 5)}, 2).get_n_leading() == 3
    with pytest.raises(ValueError, match="must have shape"):  # a lone channel axis: not this MultiImage's layout
        MultiImage({(0, 1): torch.ones(5, 5, 5)}, 2)


def test_multi_image_get_subset_get_one():
    m = mi([(1, 1, 1)], B=100, torus=False)
    one = m.get_subset(torch.tensor([3]))
    assert (one.D, one.is_torus, one.batch_size) == (2, (False, False), 1) and torch.equal(one[(1, 1)][0], m[(1, 1)][3])
    four = m.get_subset([3, 23, 4, 17])
    assert torch.equal(four[(1, 1)], m[(1, 1)][[3, 23, 4, 17]])
    with pytest.raises(ValueError):
        m.get_subset(torch.tensor(0))
    assert m.get_one().equal(m.get_subset([0])) and m.get_one(12).equal(m.get_subset([12]))
    windows = m.expand(0, 10)  # (10, 10, C): get_one without keepdims drops the first axis
    assert windows.get_one(4, keepdims=False).equal(m.get_subset(list(range(40, 50))))


# ---- time series ---------------------------------------------------------------------------------------------


def test_time_series_idxs_small_cases():
    i, o = ts.time_series_idxs(2, 1, 1, 5)
    assert i.tolist() == [[0, 1], [1, 2], [2, 3]] and o.tolist() == [[2], [3], [4]]
    i, o = ts.time_series_idxs(2, 1, 2, 10)
    assert i.tolist() == [[w, w + 2] for w in range(6)] and o.tolist() == [[w + 4] for w in range(6)]
    i, o = ts.time_series_idxs(2, 2, 2, 10)
    assert i.tolist() == [[w, w + 2] for w in range(4)] and o.tolist() == [[w + 4, w + 6] for w in range(4)]


def test_time_series_idxs_windows():
    data = rnd(10, 11, 3, 3, 2)
    for past, future in itertools.product((1, 2, 4), (1, 5)):
        i, o = ts.time_series_idxs(past, future, 1, 11)
        W = 11 - past - future + 1
        assert data[:, i].shape == (10, W, past, 3, 3, 2) and data[:, o].shape == (10, W, future, 3, 3, 2)
        for w in range(W):
            assert torch.equal(data[:, i][:, w], data[:, w : w + past])
            assert torch.equal(data[:, o][:, w], data[:, w + past : w + past + future])


def test_times_series_to_multi_images():
    T, past, future = 20, 4, 1
    W = T - past - future + 1
    dyn = MultiImage({(0, 1): rnd(1, T, 5, 5), (1, 1): rnd(1, T, 5, 5, 2)}, 2)
    X, Y = ts.times_series_to_multi_images(dyn, MultiImage({}, 2), T, past, future)
    assert list(X) == [(0, 1), (1, 1)] and X[(1, 1)].shape == (W, past, 5, 5, 2) and Y[(0, 1)].shape == (W, 1, 5, 5)
    for w in range(W):
        for key in dyn:
            assert torch.equal(X[key][w], dyn[key][0, w : w + past]) and torch.equal(Y[key][w], dyn[key][0, w + past : w + past + 1])
    const = MultiImage({(1, 1): rnd(1, 3, 5, 5, 2), (2, 1): rnd(1, 1, 5, 5, 2, 2)}, 2)
    X2, Y2 = ts.times_series_to_multi_images(dyn, const, T, past, future)
    assert X2.signature == (((0, 1), past), ((1, 1), past + 3), ((2, 1), 1)) and Y2.equal(Y)
    for w in range(W):
        assert torch.equal(X2[(1, 1)][w, past:], const[(1, 1)][0]) and torch.equal(X2[(2, 1)][w], const[(2, 1)][0])
    two = torch.stack([rnd(T, 5, 5), rnd(T, 5, 5)])  # two scalar fields: channels field major, time minor
    X4, Y4 = ts.times_series_to_multi_images(MultiImage({(0, 1): two.reshape(1, 2 * T, 5, 5)}, 2), MultiImage({}, 2), T, past, future)
    for w in range(W):
        assert torch.equal(X4[(0, 1)][w].reshape(2, past, 5, 5), two[:, w : w + past])
        assert torch.equal(Y4[(0, 1)][w].reshape(2, 1, 5, 5), two[:, w + past : w + past + 1])


def test_batch_time_series():
    B, T, past, future = 5, 20, 4, 1
    W = T - past - future + 1
    dyn = MultiImage({(0, 1): rnd(B, T, 5, 5), (1, 1): rnd(B, T, 5, 5, 2)}, 2)
    const = MultiImage({(1, 1): rnd(B, 1, 5, 5, 2)}, 2)
    X, Y = ts.batch_time_series(dyn, const, T, past, future)
    assert X[(0, 1)].shape == (B * W, past, 5, 5) and X[(1, 1)].shape == (B * W, past + 1, 5, 5, 2)
    x_dyn, x_const = X.concat_inverse({(1, 1): 1})
    x_dyn, x_const, y = x_dyn.expand(0, W), x_const.expand(0, W), Y.expand(0, W)
    for b, w in itertools.product(range(B), range(W)):
        for key in dyn:
            assert torch.equal(x_dyn[key][b, w], dyn[key][b, w : w + past])
            assert torch.equal(y[key][b, w], dyn[key][b, w + past : w + past + future])
        assert torch.equal(x_const[(1, 1)][b, w], const[(1, 1)][b])
    # each trajectory is windowed like a batch of one
    Xb, Yb = ts.times_series_to_multi_images(dyn.get_one(2), const.get_one(2), T, past, future)
    assert Xb.equal(X.get_subset(list(range(2 * W, 3 * W)))) and Yb.equal(Y.get_subset(list(range(2 * W, 3 * W))))


def test_autoregressive_step():
    past = 4
    x = MultiImage({(0, 1): rnd(2, past, 5, 5)}, 2)
    step = MultiImage({(0, 1): rnd(2, 1, 5, 5)}, 2)
    new = ts.autoregressive_step(x, step, past)
    assert torch.equal(new[(0, 1)], torch.cat([x[(0, 1)][:, 1:], step[(0, 1)]], 1))
    # two vector fields and one scalar field: each field drops its oldest step
    x2 = x.concat(MultiImage({(1, 1): rnd(2, 2 * past, 5, 5, 2)}, 2))
    step2 = MultiImage({(0, 1): rnd(2, 1, 5, 5), (1, 1): rnd(2, 2, 5, 5, 2)}, 2)
    new2 = ts.autoregressive_step(x2, step2, past).expand(1, past)
    assert torch.equal(new2[(1, 1)][:, :, :-1], x2.expand(1, past)[(1, 1)][:, :, 1:])
    assert torch.equal(new2[(1, 1)][:, :, -1], step2[(1, 1)])
    # constant fields stay at the end; a key may hold constant fields only
    const = MultiImage({(0, 1): rnd(2, 1, 5, 5), (1, 1): rnd(2, 1, 5, 5, 2)}, 2)
    x3 = x2.concat(const)
    new3 = ts.autoregressive_step(x3, step2, past, {(0, 1): 1, (1, 1): 1})
    assert torch.equal(new3[(0, 1)], torch.cat([x3[(0, 1)][:, 1:past], step2[(0, 1)], const[(0, 1)]], 1))
    dyn3, const3 = new3.concat_inverse({(0, 1): 1, (1, 1): 1})
    assert const3.equal(const) and torch.equal(dyn3.expand(1, past)[(1, 1)][:, :, -1], step2[(1, 1)])
    x4 = x.concat(const)
    new4 = ts.autoregressive_step(x4, step, past, {(0, 1): 1, (1, 1): 1})
    dyn4, const4 = new4.concat_inverse({(0, 1): 1, (1, 1): 1})
    assert (1, 1) not in dyn4 and torch.equal(const4[(1, 1)], const[(1, 1)])


def test_autoregressive_map_multi_image():
    """A model that returns first + last channel of each key: the closed form of the rollout by hand."""
    past = 4

    def model(m):
        out = m.empty()
        for (k, p), v in m.items():
            out.append(k, p, v[:, :1] + v[:, -1:])
        return out

    x = MultiImage({(0, 1): rnd(1, past, 5, 5), (1, 1): rnd(1, past, 5, 5, 2)}, 2)
    const = MultiImage({(0, 1): rnd(1, 1, 5, 5), (1, 1): rnd(1, 1, 5, 5, 2)}, 2)
    out = ts.autoregressive_map(model, x.concat(const), past, 5, {(0, 1): 1, (1, 1): 1})
    assert out.n_leading == 3 and out[(0, 1)].shape == (1, 5, 1, 5, 5)
    for key in x:
        xs, c = x[key][0], const[key][0, 0]
        for t in range(4):
            torch.testing.assert_close(out[key][0, t, 0], xs[t] + c, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(out[key][0, 4, 0], xs[0] + 2 * c, rtol=1e-14, atol=1e-14)
    # constant field on one key only: the vector key's last channel is its newest step
    out2 = ts.autoregressive_map(model, x.concat(MultiImage({(0, 1): const[(0, 1)]}, 2)), past, 5, {(0, 1): 1})
    v = x[(1, 1)][0]
    expect = [v[0] + v[3]]
    window = [v[1], v[2], v[3], expect[0]]
    for _ in range(4):
        expect.append(window[0] + window[-1])
        window = window[1:] + [expect[-1]]
    for t in range(5):
        torch.testing.assert_close(out2[(1, 1)][0, t, 0], expect[t], rtol=1e-13, atol=1e-13)
