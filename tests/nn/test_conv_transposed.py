"""conv_transposed.py: GeometricConvTransposed — equivariance over every element (2D/3D, subgroups with and without -I,
K=2 stride 2 and odd kernels), the output_padding rule, completeness against the character formula, kernel condition,
bias, initialisation, export, state/pickling, gradients, escnn interop and bad input."""
import copy
import io
import itertools
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from escnn import gspaces, nn

import escnn_tensor as et
from escnn_tensor.nn._fields import exact_buffer_names, exact_original, register_exact_buffer
from escnn_tensor.groups import action_key
from escnn_tensor.nn._conv import GeometricConv
from escnn_tensor.nn._conv_transposed import GeometricConvTransposed
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D, invariant_count, rho

GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
ALL_KP = [(k, p) for k in range(3) for p in (1, -1)]

# interleaved: scalar, vector, pseudo-2-tensor, pseudoscalar, 2-tensor, pseudovector, scalar
MIXED_2D_IN = [(0, 1, 1), (1, 1, 1), (2, -1, 1), (0, -1, 1), (2, 1, 1), (1, -1, 1), (0, 1, 1)]
MIXED_2D_OUT = [(1, -1, 1), (2, 1, 1), (0, 1, 1), (1, 1, 1), (0, -1, 1), (2, -1, 1)]
# 3D: scalars, vectors, pseudovectors, 2-tensors, pseudo-3-tensors
MIXED_3D_IN = [(1, 1, 1), (0, 1, 1), (3, -1, 1), (1, -1, 1), (2, 1, 1)]
MIXED_3D_OUT = [(2, 1, 1), (3, -1, 1), (0, 1, 1), (1, -1, 1), (1, 1, 1)]


def randomize(layer, seed=0):
    """Random weights and a random bias (the bias starts at zero, so give it values to be tested too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weights.copy_(torch.randn(layer.weights.shape, generator=g, dtype=torch.float64))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return layer


def x_of(ft, n, batch=1, dtype=torch.float64, seed=1):
    return random_input(ft, n, batch, dtype, torch.Generator().manual_seed(seed))


def check_train_and_eval(layer, x):
    layer.train()
    assert_equivariant(layer, x)  # kernel expanded on every call
    layer.eval()
    with torch.no_grad():
        assert_equivariant(layer, x)  # cached kernel
    layer.train()


# ------------------------------------------------------------------------------------------------------------------
# equivariance: every group element, float64 to 1e-10, train and eval


CONFIGS_2D = [
    # kernel_size, stride, padding, dilation, input side, expected output side
    (2, 2, 0, 1, 4, 8),  # N -> 2N
    (2, 2, 0, 1, 5, 10),
    (3, 1, 1, 1, 5, 5),  # "same" size
    (3, 2, 1, 1, 4, 7),  # 2N - 1
    (4, 2, 1, 1, 4, 8),  # N -> 2N with an even kernel and padding
    (3, 2, 0, 2, 3, 9),  # dilation
    (5, 3, 2, 1, 3, 7),
    (1, 2, 0, 1, 4, 7),
]


@pytest.mark.parametrize("K,S,P,D,N,M", CONFIGS_2D)
def test_equivariance_2d_mixed_types(K, S, P, D, N, M):
    fin, fout = et.tensor_type(GS[2], MIXED_2D_IN), et.tensor_type(GS[2], MIXED_2D_OUT)
    layer = randomize(GeometricConvTransposed(fin, fout, K, stride=S, padding=P, dilation=D)).double()
    x = x_of(fin, N, batch=2)
    y = layer(x)
    assert tuple(y.shape) == (2, fout.size, M, M) and y.type == fout
    check_train_and_eval(layer, x)


def test_equivariance_float32():
    fin, fout = et.tensor_type(GS[2], MIXED_2D_IN), et.tensor_type(GS[2], MIXED_2D_OUT)
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2))
    check_train_and_eval(layer, x_of(fin, 5, dtype=torch.float32))


@pytest.mark.parametrize("K,S,P,N,M", [(2, 2, 0, 3, 6), (3, 2, 1, 3, 5)])
def test_equivariance_3d_mixed_types(K, S, P, N, M):
    fin, fout = et.tensor_type(GS[3], MIXED_3D_IN), et.tensor_type(GS[3], MIXED_3D_OUT)
    layer = randomize(GeometricConvTransposed(fin, fout, K, stride=S, padding=P)).double()
    x = x_of(fin, N)
    assert tuple(layer(x).shape) == (1, fout.size, M, M, M)
    check_train_and_eval(layer, x)


@pytest.mark.parametrize("name", ["flip_diag", "flip_x", "C4", "D2"])
def test_equivariance_subgroups_2d(name):
    gs = SUBGROUP_GSPACES_2D[name]()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1), (2, 1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1), (2, -1, 1)])
    for K, S, P in [(2, 2, 0), (3, 2, 1)]:
        layer = randomize(GeometricConvTransposed(fin, fout, K, stride=S, padding=P)).double()
        check_train_and_eval(layer, x_of(fin, 4))


@pytest.mark.parametrize("name", ["C4v", "mirror", "inversion"])
def test_equivariance_subgroups_3d(name):
    gs = SUBGROUP_GSPACES_3D[name]()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (2, -1, 1)])
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2)).double()
    check_train_and_eval(layer, x_of(fin, 3))


def test_kernel_condition_on_transposed_weight():
    """kappa(j) = W[:, :, j]^T (out x in) satisfies kappa(M a) = rho_out kappa(a) rho_in^T on centred offsets,
    with rho from the reference kron construction, on a group without -I (flip_diag) and on D4."""
    for gs in (SUBGROUP_GSPACES_2D["flip_diag"](), GS[2]):
        fin = et.tensor_type(gs, [(1, 1, 1)])
        fout = et.tensor_type(gs, [(1, -1, 1), (0, 1, 1)])
        for K in (2, 3):
            layer = randomize(GeometricConvTransposed(fin, fout, K, bias=False)).double()
            W = layer.expand_parameters()[0]  # (C_in, C_out, K, K), escnn layout
            kappa = et.escnn_to_grid(W.transpose(0, 1), 2)  # (C_out, C_in, K, K), grid layout
            off = 2 * np.array(list(itertools.product(range(K), repeat=2))) - (K - 1)
            pos = {tuple(o): i for i, o in enumerate(off)}
            flat = kappa.reshape(kappa.shape[0], kappa.shape[1], -1)
            for m in et.group_matrices(gs):
                r_in = torch.tensor(rho(m, 1, 1))
                r_out = torch.tensor(np.block([[rho(m, 1, -1), np.zeros((2, 1))], [np.zeros((1, 2)), rho(m, 0, 1)]]))
                for i, o in enumerate(off):
                    moved = flat[:, :, pos[tuple(m @ o)]]
                    assert torch.allclose(moved, r_out @ flat[:, :, i] @ r_in.T, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# output_padding: allowed exactly when every group element fixes the shift of the output's centre


ALLOWED_OUTPUT_PADDING = [
    # gspace factory, d, output_padding (escnn axis order: (-y, x) / (-z, -y, x))
    (lambda: SUBGROUP_GSPACES_2D["flip_x"](), 2, (0, 1)),  # y -> -y fixes the x direction
    (lambda: SUBGROUP_GSPACES_2D["flip_y"](), 2, (1, 0)),  # x -> -x fixes the y direction
    (lambda: SUBGROUP_GSPACES_2D["trivial2"](), 2, 1),
    (lambda: SUBGROUP_GSPACES_3D["C4v"](), 3, (1, 0, 0)),  # rotations about z and vertical mirrors fix z
    (lambda: SUBGROUP_GSPACES_3D["mirror"](), 3, (1, 1, 0)),  # x -> -x fixes the (y, z) plane
]


@pytest.mark.parametrize("make,d,op", ALLOWED_OUTPUT_PADDING)
def test_output_padding_fixed_by_the_group_is_equivariant(make, d, op):
    gs = make()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (2, 1, 1)])
    layer = randomize(GeometricConvTransposed(fin, fout, 3, stride=2, padding=1, output_padding=op)).double()
    x = x_of(fin, 3)
    ops = op if isinstance(op, tuple) else (op,) * d
    assert tuple(layer(x).shape[2:]) == tuple(5 + o for o in ops)
    check_train_and_eval(layer, x)
    conv = layer.export()
    assert conv.output_padding == ops
    assert torch.allclose(conv(x.tensor), layer(x).tensor, rtol=0, atol=1e-12)


REFUSED_OUTPUT_PADDING = [
    (lambda: GS[2], 2, 1, "only 0, since the group holds -I"),
    (lambda: GS[3], 3, 1, "only 0, since the group holds -I"),
    (lambda: SUBGROUP_GSPACES_2D["flip_diag"](), 2, 1, "move that direction"),  # swaps x, y: moves (1, -1)
    (lambda: SUBGROUP_GSPACES_2D["flip_x"](), 2, (1, 0), "move that direction"),
    (lambda: SUBGROUP_GSPACES_2D["C4"](), 2, 1, "only 0"),
    (lambda: SUBGROUP_GSPACES_3D["C4v"](), 3, 1, "move that direction"),
    (lambda: SUBGROUP_GSPACES_3D["mirror"](), 3, (0, 0, 1), "move that direction"),
]


@pytest.mark.parametrize("make,d,op,match", REFUSED_OUTPUT_PADDING)
def test_output_padding_that_moves_the_centre_is_refused_and_really_breaks_equivariance(make, d, op, match):
    gs = make()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (0, 1, 1)])
    with pytest.raises(ValueError, match=rf"output_padding={re.escape(repr(op))}.*moves the centre of the output grid.*{match}"):
        GeometricConvTransposed(fin, fout, 3, stride=2, padding=1, output_padding=op)
    # the refusal is warranted: torch's conv_transpose with this output_padding and an equivariant kernel is not
    # equivariant
    layer = randomize(GeometricConvTransposed(fin, fout, 3, stride=2, padding=1)).double()
    kernel, bias = layer.expand_parameters()
    ct = F.conv_transpose2d if d == 2 else F.conv_transpose3d

    def shifted(x):
        return nn.GeometricTensor(ct(x.tensor, kernel, bias, 2, 1, op), fout)

    assert max(equivariance_errors(shifted, x_of(fin, 3)).values()) > 1e-2


# ------------------------------------------------------------------------------------------------------------------
# completeness: weights per field pair == dim of the equivariant kernels (character formula, tests/reference.py)


@pytest.mark.parametrize("d,K", [(2, 2), (2, 3), (2, 4), (3, 2)])
def test_weight_count_is_the_character_formula(d, K):
    gs = GS[d]
    for (k_in, p_in), (k_out, p_out) in itertools.product(ALL_KP, ALL_KP):
        expected = invariant_count(gs, K, k_in + k_out, p_in * p_out)
        fin, fout = et.tensor_type(gs, [(k_in, p_in, 1)]), et.tensor_type(gs, [(k_out, p_out, 1)])
        if expected == 0:
            with pytest.raises(ValueError, match="no nonzero equivariant kernel"):
                GeometricConvTransposed(fin, fout, K, stride=2, bias=False)
            continue
        layer = GeometricConvTransposed(fin, fout, K, stride=2, bias=False)
        assert layer.weights.numel() == expected, ((k_in, p_in), (k_out, p_out))
    fin = et.tensor_type(gs, [(1, 1, 2), (0, 1, 1), (1, 1, 1)])
    fout = et.tensor_type(gs, [(2, -1, 3)])
    expected = 3 * (3 * invariant_count(gs, K, 3, -1) + invariant_count(gs, K, 2, -1))
    assert GeometricConvTransposed(fin, fout, K, stride=2, bias=False).weights.numel() == expected


def test_weight_count_subgroups_and_kernels_independent():
    for gs in (SUBGROUP_GSPACES_2D["flip_diag"](), SUBGROUP_GSPACES_3D["C4v"]()):
        fin = et.tensor_type(gs, [(1, 1, 1)])
        fout = et.tensor_type(gs, [(1, -1, 1)])
        layer = GeometricConvTransposed(fin, fout, 2, stride=2, bias=False).double()
        n = layer.weights.numel()
        assert n == invariant_count(gs, 2, 2, -1)
        kernels = []
        with torch.no_grad():
            for i in range(n):
                layer.weights.zero_()
                layer.weights[i] = 1.0
                kernels.append(layer.expand_parameters()[0].reshape(-1).clone())
        assert torch.linalg.matrix_rank(torch.stack(kernels)).item() == n


# ------------------------------------------------------------------------------------------------------------------
# bias


@pytest.mark.parametrize("d", [2, 3])
def test_bias_spans_the_invariant_subspace(d):
    gs = GS[d]
    kps = [(k, p) for k in range(4 if d == 3 else 3) for p in (1, -1)]
    fout = et.tensor_type(gs, [(k, p, 1) for k, p in kps])
    fin = et.tensor_type(gs, [(0, 1, 1)])
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2)).double()
    assert layer.bias.numel() == sum(invariant_count(gs, 1, k, p) for k, p in kps)
    b = layer.expand_parameters()[1]
    assert b.abs().max() > 0
    for g in et.group_elements(gs):
        r = torch.tensor(fout.representation(g), dtype=torch.float64)
        assert torch.allclose(r @ b, b, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# initialisation


def alias_gain(kernel, d, stride, dilation, L=16):
    """Expected power per output pixel from an input tone, per output channel, summed over inputs, from a zero-padded
    FFT of the dilated kernel folded over its stride**d aliases: s^-2d sum_k |kappa^((w + 2 pi k) / s)|^2 on an
    L^d grid of input frequencies (independent of the layer's polyphase closed form)."""
    C_in, C_out, K = kernel.shape[0], kernel.shape[1], kernel.shape[2]
    big = torch.zeros((C_in, C_out) + (stride * L,) * d, dtype=kernel.dtype)
    big[(slice(None), slice(None)) + (slice(0, dilation * (K - 1) + 1, dilation),) * d] = kernel
    power = (torch.fft.fftn(big, dim=tuple(range(2, 2 + d))).abs() ** 2).sum(0)  # (C_out, sL..)
    folded = power.reshape((C_out,) + (stride, L) * d).sum(dim=tuple(range(1, 1 + 2 * d, 2)))
    return folded / stride ** (2 * d)  # (C_out, L..)


@pytest.mark.parametrize("d,K,S,D", [(2, 2, 2, 1), (2, 3, 2, 1), (2, 4, 2, 1), (2, 3, 1, 1), (2, 3, 3, 2), (3, 2, 2, 1)])
def test_init_peak_expected_gain_is_one(d, K, S, D):
    """Monte Carlo over fresh inits: the expected power gain per output pixel, averaged over the components of each
    output type, peaks at 1 over the input frequencies."""
    fin = et.tensor_type(GS[d], [(0, 1, 2), (1, 1, 1), (2, -1, 1)])
    fout = et.tensor_type(GS[d], [(0, 1, 1), (1, 1, 2)])
    layer = GeometricConvTransposed(fin, fout, K, stride=S, dilation=D, bias=False).double()
    gen = torch.Generator().manual_seed(0)
    draws, L = (300, 16) if d == 2 else (80, 8)
    power = 0
    for _ in range(draws):
        layer.reset_parameters(generator=gen)
        power = power + alias_gain(layer.expand_parameters()[0], d, S, D, L) / draws
    for rows in ([0], list(range(1, 1 + 2 * d))):
        peak = power[rows].mean(0).max().item()
        assert 0.8 < peak < 1.2, (rows, peak)


def test_init_upsampling_stack_keeps_std():
    torch.manual_seed(0)
    ft = et.tensor_type(GS[2], [(0, 1, 3), (0, -1, 1), (1, 1, 2), (1, -1, 1), (2, 1, 1)])
    layers = []
    for K, S, P in [(2, 2, 0), (3, 1, 1), (4, 2, 1), (3, 1, 1), (2, 2, 0)]:
        layers += [GeometricConvTransposed(ft, ft, K, stride=S, padding=P), nn.NormNonLinearity(ft, "n_softplus", bias=False)]
    net = nn.SequentialModule(*layers)
    x = torch.randn(2, ft.size, 6, 6)
    with torch.no_grad():
        y = net(nn.GeometricTensor(x, ft)).tensor
    assert y.shape[-1] == 48
    ratio = (y.std() / x.std()).item()
    assert 0.3 <= ratio <= 3, ratio


# ------------------------------------------------------------------------------------------------------------------
# export, shapes, state, gradients, copying


@pytest.mark.parametrize("d", [2, 3])
def test_export_same_output(d):
    fin = et.tensor_type(GS[d], MIXED_2D_IN)
    fout = et.tensor_type(GS[d], [(1, 1, 1), (0, 1, 1), (2, -1, 1)])
    for K, S, P, D in [(2, 2, 0, 1), (3, 2, 1, 2)]:
        layer = randomize(GeometricConvTransposed(fin, fout, K, stride=S, padding=P, dilation=D)).double()
        conv = layer.export()
        assert isinstance(conv, torch.nn.ConvTranspose2d if d == 2 else torch.nn.ConvTranspose3d)
        assert conv.weight.dtype == torch.float64 and conv.bias is not None
        x = x_of(fin, 3, batch=2)
        assert torch.allclose(conv(x.tensor), layer(x).tensor, rtol=0, atol=1e-12)
        assert layer.training


@pytest.mark.parametrize("K,S,P,D,N", [(2, 2, 0, 1, 5), (3, 2, 1, 1, 4), (5, 3, 4, 2, 6), (3, 1, 0, 1, 1)])
def test_evaluate_output_shape(K, S, P, D, N):
    fin, fout = et.tensor_type(GS[2], MIXED_2D_IN), et.tensor_type(GS[2], MIXED_2D_OUT)
    layer = GeometricConvTransposed(fin, fout, K, stride=S, padding=P, dilation=D)
    x = x_of(fin, N, batch=3, dtype=torch.float32)
    assert layer.evaluate_output_shape(x.shape) == tuple(layer(x).shape)
    assert layer.evaluate_output_shape(x.shape)[2] == (N - 1) * S - 2 * P + D * (K - 1) + 1


def test_check_equivariance_every_element_and_can_fail():
    fin, fout = et.tensor_type(GS[3], [(0, 1, 1), (1, 1, 1)]), et.tensor_type(GS[3], [(1, -1, 1), (2, 1, 1)])
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2)).float()
    errors = layer.check_equivariance()
    assert len(errors) == 48 and {str(g) for g, _ in errors} == {str(g) for g in et.group_elements(GS[3])}
    assert max(e for _, e in errors) <= 1e-10
    assert layer.weights.dtype == torch.float32
    broken = copy.deepcopy(layer)
    name = "_kernel_value"  # the kernel values (float64 original kept as a buffer of its bits)
    assert name in exact_buffer_names(broken)
    register_exact_buffer(broken, name, torch.randn_like(exact_original(broken, name)))
    with pytest.raises(AssertionError, match="GeometricConvTransposed not equivariant"):
        broken.check_equivariance()


def test_state_dict_round_trip_and_gradients():
    fin, fout = et.tensor_type(GS[2], MIXED_2D_IN), et.tensor_type(GS[2], MIXED_2D_OUT)
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2))
    assert list(layer.state_dict()) == ["weights", "bias", "_extra_state"]  # field types stored (issue 20 item 6)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = GeometricConvTransposed(fin, fout, 2, stride=2)
    x = x_of(fin, 4, dtype=torch.float32)
    assert not torch.allclose(other(x).tensor, layer(x).tensor)
    other.load_state_dict(torch.load(buf))
    assert torch.equal(other(x).tensor, layer(x).tensor)
    for mode in (True, False):  # gradients reach weights and bias in train and in eval mode
        layer.train(mode)
        layer.zero_grad()
        (layer(x).tensor ** 2).sum().backward()
        assert layer.weights.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [lambda: GS[2], lambda: GS[3], lambda: gspaces.flip2dOnR2(axis=np.pi / 4),
                                  lambda: gspaces.mirOnR3()])
def test_deepcopy_and_pickle(make):
    gs = make()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (0, 1, 1)])
    layer = randomize(GeometricConvTransposed(fin, fout, 2, stride=2))
    x = x_of(fin, 3, dtype=torch.float32)
    layer.eval()
    with torch.no_grad():
        y = layer(x).tensor  # fills the cache: copies must not carry it
    dc = copy.deepcopy(layer)
    assert dc.in_type is layer.in_type and torch.equal(dc(x).tensor, y)
    pk = pickle.loads(pickle.dumps(layer))
    assert action_key(pk.space) == action_key(gs) and pk.in_type == fin and pk.out_type == fout
    assert isinstance(pk, GeometricConvTransposed) and pk.output_padding == layer.output_padding
    with torch.no_grad():
        assert torch.equal(pk(x).tensor, y)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    with torch.no_grad():
        assert torch.equal(torch.load(buf, weights_only=False)(x).tensor, y)
        dc.weights.add_(1.0)
        assert torch.equal(layer(x).tensor, y)  # the copy is independent


def test_down_and_up_with_escnn_is_equivariant_and_trains():
    gs = GS[2]
    t0 = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t1 = et.tensor_type(gs, [(0, 1, 2), (1, 1, 2), (2, -1, 1)])
    torch.manual_seed(0)
    net = nn.SequentialModule(
        GeometricConv(t0, t1, 3, padding=1, stride=2),  # 9 -> 5
        nn.NormNonLinearity(t1, "n_softplus", bias=False),
        GeometricConvTransposed(t1, t1, 3, stride=2, padding=1),  # 5 -> 9
        nn.NormNonLinearity(t1, "n_softplus", bias=False),
        GeometricConvTransposed(t1, t0, 2, stride=2),  # 9 -> 18
    )
    x = x_of(t0, 9, batch=2, dtype=torch.float32)
    target = torch.randn(2, t0.size, 18, 18, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = ((net(x).tensor - target) ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < 0.95 * losses[0]
    net = net.double()
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            assert_equivariant(net, x_of(t0, 9))


# ------------------------------------------------------------------------------------------------------------------
# bad input


def test_accepts_any_fields_and_rejects_mismatched_gspaces():
    gs = GS[2]
    good = et.tensor_type(gs, [(1, 1, 1)])
    regular = nn.FieldType(gs, [gs.trivial_repr, gs.regular_repr])
    # any escnn fields are accepted (issue 17; tests/nn/test_conv_any_types.py checks them)
    assert GeometricConvTransposed(regular, good, 2, stride=2).out_type is good
    assert GeometricConvTransposed(good, regular, 2, stride=2).in_type is good
    with pytest.raises(ValueError, match="in_type and out_type must live on the same gspace"):
        GeometricConvTransposed(good, nn.FieldType(gspaces.rot2dOnR2(N=4), [gspaces.rot2dOnR2(N=4).regular_repr]), 2)
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        GeometricConvTransposed([(1, 1, 1)], good, 2)
    with pytest.raises(ValueError, match="same gspace"):
        GeometricConvTransposed(good, et.tensor_type(gspaces.rot2dOnR2(N=4), [(1, 1, 1)]), 2)
    with pytest.raises(ValueError, match="same gspace"):
        GeometricConvTransposed(good, et.tensor_type(GS[3], [(1, 1, 1)]), 2)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(stride=0), ValueError, "stride must be an integer >= 1, got 0"),
        (dict(stride=(1, 2)), ValueError, r"stride=\(1, 2\) differs between axes"),
        (dict(stride=2.0), TypeError, "stride must be an integer"),
        (dict(padding=-1), ValueError, "padding must be an integer >= 0"),
        (dict(padding=(0, 1)), ValueError, r"padding=\(0, 1\) differs between axes"),
        (dict(padding=((1, 0), (1, 0))), ValueError, "differs between the two sides"),
        (dict(padding="same"), TypeError, r"padding of a transposed convolution .*no string paddings.*'same'"),
        (dict(output_padding=2), ValueError, r"output_padding=2 must be smaller than stride or dilation"),
        (dict(output_padding=-1), ValueError, "output_padding must be an integer >= 0"),
        (dict(output_padding=(0, 0, 0)), ValueError, "output_padding must be an integer or a tuple of 2 integers"),
        (dict(output_padding=1), ValueError, r"output_padding=1 .*moves the centre.*only 0, since the group holds -I"),
        (dict(kernel_size=0), ValueError, "kernel_size must be an integer >= 1"),
        (dict(dilation=(1, 2)), ValueError, "dilation=.* differs between axes"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
        (dict(initialize=1), TypeError, "initialize must be True or False"),
    ],
)
def test_rejects_bad_arguments(kwargs, exc, match):
    ft = et.tensor_type(GS[2], [(0, 1, 1), (1, 1, 1)])
    args = dict(kernel_size=3, stride=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        GeometricConvTransposed(ft, ft, **args)


def test_rejects_bad_forward_input():
    ft = et.tensor_type(GS[2], [(0, 1, 1), (1, 1, 1)])
    other = et.tensor_type(GS[2], [(1, 1, 1), (0, 1, 1)])
    layer = GeometricConvTransposed(ft, ft, 3, stride=1, padding=2)
    with pytest.raises(TypeError, match="GeometricConvTransposed: input must be an escnn GeometricTensor"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="in_type"):
        layer(nn.GeometricTensor(torch.randn(1, 3, 5, 5), other))
    with pytest.raises(
        TypeError, match=r"GeometricConvTransposed: input dtype torch.float64 differs from the layer's dtype torch.float32"
    ):
        layer(nn.GeometricTensor(torch.randn(1, 3, 5, 5, dtype=torch.float64), ft))
    with pytest.raises(ValueError, match=r"input size \(1, 1\) gives output size \(-1, -1\) < 1"):
        layer(nn.GeometricTensor(torch.randn(1, 3, 1, 1), ft))
    with pytest.raises(ValueError, match=r"output size \(-1, -1\) < 1"):
        layer.evaluate_output_shape((1, 3, 1, 1))
    with pytest.raises(ValueError, match="input_shape must be"):
        layer.evaluate_output_shape((1, 4, 5, 5))


@pytest.mark.parametrize("d,K", [(2, 3), (2, 2), (3, 3)])
def test_gathered_kernel_is_the_convolution_kernel_transposed(d, K):
    """Same weights -> the transposed layer's kernel (C_in, C_out, K..) is GeometricConv's (C_out, C_in, K..) with
    the first two axes swapped (both gathered from one plan; GeometricConv's is checked against the dense
    contraction in test_conv.py)."""
    fin = et.tensor_type(GS[d], [(1, 1, 1), (0, 1, 2), (2, -1, 1)])
    fout = et.tensor_type(GS[d], [(0, -1, 1), (1, 1, 2), (2, 1, 1)])
    tr = randomize(GeometricConvTransposed(fin, fout, K, stride=2)).double()
    conv = GeometricConv(fin, fout, K).double()
    with torch.no_grad():
        conv.weights.copy_(tr.weights)
        conv.bias.copy_(tr.bias)
    kt, bt = tr.expand_parameters()
    kc, bc = conv.expand_parameters()
    assert kt.shape == (fin.size, fout.size) + (K,) * d
    assert torch.equal(kt, kc.transpose(0, 1)) and torch.equal(bt, bc)
