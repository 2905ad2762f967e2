"""conv.py: GeometricConv — equivariance over every element, completeness against the character formula,
bias invariance, export, initialisation, escnn interop, copying/pickling, and bad input."""
import copy
import io
import itertools
import pickle
import random
import warnings

import numpy as np
import pytest
import torch
from escnn import gspaces, nn

import escnn_tensor as et
from escnn_tensor.nn._fields import exact_buffer_names, exact_original, register_exact_buffer
from escnn_tensor.groups import action_key
from escnn_tensor.nn import EquivarianceWarning, GeometricConv
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D
from tests.reference import invariant_count as filter_count



GS = {2: et.hyperoctahedral_gspace(2), 3: et.hyperoctahedral_gspace(3)}
ALL_KP = [(k, p) for k in range(3) for p in (1, -1)]


def random_spec(rng, max_fields=4):
    """A random non-empty list of (k, parity, 1) fields in random (interleaved) order, k in {0, 1, 2}."""
    n = rng.randint(1, max_fields)
    return [rng.choice(ALL_KP) + (1,) for _ in range(n)]


def random_types(d, seed, max_fields=4):
    rng = random.Random(seed)
    return et.tensor_type(GS[d], random_spec(rng, max_fields)), et.tensor_type(GS[d], random_spec(rng, max_fields))


def randomize(layer, seed=0):
    """Random weights and bias (the bias is zero after init, so give it values to be tested too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weights.copy_(torch.randn(layer.weights.shape, generator=g, dtype=torch.float64))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return layer


# ------------------------------------------------------------------------------------------------------------------
# equivariance: every group element, float64 to 1e-10, float32 to 1e-5


@pytest.mark.parametrize("d,seed", [(2, s) for s in range(6)] + [(3, s) for s in range(3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivariance_random_types(d, seed, dtype):
    fin, fout = random_types(d, seed)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).to(dtype)
    x = random_input(fin, 9 if d == 2 else 5, 2, dtype, torch.Generator().manual_seed(seed))
    assert_equivariant(layer, x)  # train mode: kernel expanded on every call
    layer.eval()
    with torch.no_grad():
        assert_equivariant(layer, x)  # eval mode: cached kernel


CONFIGS = [
    # kernel_size, padding, stride, dilation, padding_mode, spatial 2D, spatial 3D
    (2, 0, 1, 1, "zeros", 8, 5),
    (4, 1, 1, 1, "zeros", 9, 6),
    (5, 2, 1, 1, "circular", 9, 6),
    (3, 1, 1, 2, "reflect", 10, 7),
    (3, 2, 1, 1, "replicate", 8, 5),
    (3, 1, 2, 1, "zeros", 9, 7),
    (3, 1, 2, 1, "circular", 11, 7),
    (3, (1, 1), 3, 1, "zeros", 10, 7),
]


@pytest.mark.parametrize("K,P,S,D,mode,n2,n3", CONFIGS)
@pytest.mark.parametrize("d", [2, 3])
def test_equivariance_stride_dilation_padding(d, K, P, S, D, mode, n2, n3):
    fin, fout = random_types(d, 100 + K + S + D, max_fields=3)
    if d == 3:
        P = P if isinstance(P, int) else (P[0],) * 3
    layer = randomize(GeometricConv(fin, fout, K, padding=P, stride=S, dilation=D, padding_mode=mode)).double()
    x = random_input(fin, n2 if d == 2 else n3, 1, torch.float64, torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EquivarianceWarning)  # these sizes fit the stride
        assert_equivariant(layer, x)


@pytest.mark.parametrize("name", ["C4", "flip_diag", "D2"])
def test_equivariance_subgroups_2d(name):
    gs = SUBGROUP_GSPACES_2D[name]()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1), (2, 1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1), (2, -1, 1)])
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).double()
    assert_equivariant(layer, random_input(fin, 7, 1, torch.float64, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["C4v", "inversion"])
def test_equivariance_subgroups_3d(name):
    gs = SUBGROUP_GSPACES_3D[name]()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    fout = et.tensor_type(gs, [(1, 1, 1), (2, -1, 1)])
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).double()
    assert_equivariant(layer, random_input(fin, 5, 1, torch.float64, torch.Generator().manual_seed(0)))


def test_stride_that_breaks_equivariance_warns():
    fin, fout = random_types(2, 7)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1, stride=2)).double()
    x = random_input(fin, 8, 1, torch.float64, torch.Generator().manual_seed(0))  # (8 + 2 - 2 - 1) % 2 = 1
    with pytest.warns(EquivarianceWarning, match="stride=2 does not fit the input size"):
        errs = equivariance_errors(layer, x)
    assert max(errs.values()) > 1e-3  # the warning is warranted: the output really is not equivariant


def test_check_equivariance_offline_every_element_and_can_fail():
    fin, fout = random_types(3, 3)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1, stride=2)).float()
    errors = layer.check_equivariance()
    assert len(errors) == 48 and {str(g) for g, _ in errors} == {str(g) for g in et.group_elements(GS[3])}
    assert max(e for _, e in errors) <= 1e-10
    assert layer.weights.dtype == torch.float32  # the check ran on a copy
    broken = copy.deepcopy(layer)
    name = "_kernel_value"  # the kernel values (float64 original kept as a buffer of its bits)
    assert name in exact_buffer_names(broken)
    register_exact_buffer(broken, name, torch.randn_like(exact_original(broken, name)))  # a non-invariant "basis"
    with pytest.raises(AssertionError, match="not equivariant"):
        broken.check_equivariance()


# ------------------------------------------------------------------------------------------------------------------
# completeness: weights per field pair == dim of the space of equivariant kernels (character formula)


def character_count(gs, K, k_in, p_in, k_out, p_out):
    """dim Hom_G(perm (x) rho_in, rho_out) = (1/|G|) sum_g chi_perm(g) chi_in(g) chi_out(g), from the matrices."""
    mats = et.group_matrices(gs)
    d = mats.shape[1]
    idx = np.array(list(itertools.product(range(K), repeat=d)))
    off = 2 * idx - (K - 1)  # doubled centred offsets
    total = 0.0
    for m in mats:
        fixed = int(np.all(off @ m.T == off, axis=1).sum())
        det = round(np.linalg.det(m))
        chi = lambda k, p: np.trace(m) ** k * (det if p == -1 else 1)
        total += fixed * chi(k_in, p_in) * chi(k_out, p_out)
    n = total / len(mats)
    assert abs(n - round(n)) < 1e-9
    return int(round(n))


@pytest.mark.parametrize("d,K", [(2, 3), (2, 5), (2, 7), (3, 3), (3, 5)])
def test_completeness_weight_count(d, K):
    gs = GS[d]
    for (k_in, p_in), (k_out, p_out) in itertools.product(ALL_KP, ALL_KP):
        expected = character_count(gs, K, k_in, p_in, k_out, p_out)
        fin = et.tensor_type(gs, [(k_in, p_in, 1)])
        fout = et.tensor_type(gs, [(k_out, p_out, 1)])
        if expected == 0:
            with pytest.raises(ValueError, match="no nonzero equivariant kernel"):
                GeometricConv(fin, fout, K, bias=False)
            continue
        layer = GeometricConv(fin, fout, K, bias=False)
        assert layer.weights.numel() == expected, ((k_in, p_in), (k_out, p_out))
    # and with multiplicities: m_in * m_out copies per type pair
    fin = et.tensor_type(gs, [(1, 1, 2), (0, 1, 1), (1, 1, 1)])
    fout = et.tensor_type(gs, [(2, -1, 3)])
    expected = 3 * (3 * character_count(gs, K, 1, 1, 2, -1) + character_count(gs, K, 0, 1, 2, -1))
    assert GeometricConv(fin, fout, K, bias=False).weights.numel() == expected


@pytest.mark.parametrize("d,K", [(2, 5), (3, 3)])
def test_kernels_span_full_space_and_are_equivariant(d, K):
    """The weights are not redundant: the expanded kernels of the unit weight vectors are linearly independent,
    and each satisfies kappa(M a) = rho_out(g) kappa(a) rho_in(g)^T (checked on the dense kernel by pixel bookkeeping)."""
    gs = GS[d]
    fin = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    fout = et.tensor_type(gs, [(2, 1, 1)])
    layer = GeometricConv(fin, fout, K, bias=False).double()
    n = layer.weights.numel()
    kernels = []
    with torch.no_grad():
        for i in range(n):
            layer.weights.zero_()
            layer.weights[i] = 1.0
            kernels.append(layer.expand_parameters()[0].clone())
    stack = torch.stack(kernels).reshape(n, -1)
    assert torch.linalg.matrix_rank(stack).item() == n
    # equivariance condition on one random combination, via escnn-layout -> grid-layout pixel positions
    kappa = torch.einsum("n,n...->...", torch.randn(n, dtype=torch.float64), torch.stack(kernels))
    grid = et.escnn_to_grid(kappa, d)  # (C_out, C_in, K..K), axis i along +x_i
    off = 2 * np.array(list(itertools.product(range(K), repeat=d))) - (K - 1)
    pos = {tuple(o): i for i, o in enumerate(off)}
    flat = grid.reshape(grid.shape[0], grid.shape[1], -1)
    for g in et.group_elements(gs):
        m = et.group_matrix(gs, g)
        r_out = torch.tensor(fout.representation(g), dtype=torch.float64)
        r_in = torch.tensor(fin.representation(g), dtype=torch.float64)
        for i, o in enumerate(off):
            moved = flat[:, :, pos[tuple(m @ o)]]
            assert torch.allclose(moved, r_out @ flat[:, :, i] @ r_in.T, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# bias


def invariant_count(gs, k, p):
    mats = et.group_matrices(gs)
    return int(round(np.mean([np.trace(m) ** k * (round(np.linalg.det(m)) if p == -1 else 1) for m in mats])))


@pytest.mark.parametrize("d", [2, 3])
def test_bias_spans_invariant_subspace(d):
    gs = GS[d]
    ks = range(4) if d == 3 else range(3)
    fout = et.tensor_type(gs, [(k, p, 1) for k in ks for p in (1, -1)])
    fin = et.tensor_type(gs, [(0, 1, 1)])
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).double()
    assert layer.bias.numel() == sum(invariant_count(gs, k, p) for k in ks for p in (1, -1))
    b = layer.expand_parameters()[1]
    for g in et.group_elements(gs):
        rho = torch.tensor(fout.representation(g), dtype=torch.float64)
        assert torch.allclose(rho @ b, b, atol=1e-12)
    # known invariants: scalar constant, delta_ij on true 2-tensors, epsilon_ijk on 3D pseudo-3-tensors,
    # nothing on vectors, pseudovectors and pseudoscalars
    offs = np.cumsum([0] + [d**k for k in ks for p in (1, -1)])
    field = {(k, p): b[offs[i] : offs[i + 1]] for i, (k, p) in enumerate((k, p) for k in ks for p in (1, -1))}
    for kp in [(0, -1), (1, 1), (1, -1)]:
        assert torch.count_nonzero(field[kp]) == 0
    delta = torch.eye(d, dtype=torch.float64).reshape(-1)
    assert torch.allclose(field[(2, 1)], field[(2, 1)][0] * delta) and field[(2, 1)][0] != 0
    if d == 3:
        eps = torch.zeros(3, 3, 3, dtype=torch.float64)
        for i, j, k in itertools.permutations(range(3)):
            eps[i, j, k] = np.linalg.det(np.eye(3)[[i, j, k]])
        eps = eps.reshape(-1)
        assert torch.allclose(field[(3, -1)], field[(3, -1)][5] / eps[5] * eps) and field[(3, -1)][5] != 0


def test_no_bias_parameter_when_invariant_subspace_empty():
    fin = et.tensor_type(GS[2], [(0, 1, 1)])
    fout = et.tensor_type(GS[2], [(1, 1, 2), (0, -1, 1)])
    layer = GeometricConv(fin, fout, 3)
    assert layer.bias is None and "bias" not in layer.state_dict()


# ------------------------------------------------------------------------------------------------------------------
# initialisation


@pytest.mark.parametrize("d", [2, 3])
def test_init_ten_layer_stack_keeps_std(d):
    torch.manual_seed(0)
    ft = et.tensor_type(GS[d], [(0, 1, 3), (0, -1, 1), (1, 1, 2), (1, -1, 1), (2, 1, 1)])
    layers = []
    for _ in range(10):
        layers += [GeometricConv(ft, ft, 3, padding=1), nn.NormNonLinearity(ft, "n_softplus", bias=False)]
    net = nn.SequentialModule(*layers)
    x = torch.randn(2, ft.size, *((24,) * d if d == 2 else (10,) * d))
    with torch.no_grad():
        y = net(nn.GeometricTensor(x, ft)).tensor
    ratio = (y.std() / x.std()).item()
    assert 0.3 <= ratio <= 3, ratio


@pytest.mark.parametrize("d,K", [(2, 3), (2, 4), (3, 3)])
def test_init_peak_expected_gain_is_one(d, K):
    """Monte Carlo over fresh inits: the expected power spectrum of the kernel, averaged over the output components
    of each output type and summed over inputs, peaks at 1 (computed with a zero-padded FFT, independent of the
    layer's own closed form)."""
    fin = et.tensor_type(GS[d], [(0, 1, 2), (1, 1, 1), (2, -1, 1)])
    fout = et.tensor_type(GS[d], [(0, 1, 1), (1, 1, 2)])
    layer = GeometricConv(fin, fout, K, bias=False).double()
    gen = torch.Generator().manual_seed(0)
    L, draws = 16, 400 if d == 2 else 150
    power = 0
    for _ in range(draws):
        layer.reset_parameters(generator=gen)
        with torch.no_grad():
            kernel = layer.expand_parameters()[0]
        spec = torch.fft.fftn(kernel, s=(L,) * d, dim=tuple(range(2, 2 + d)))
        power = power + (spec.abs() ** 2).sum(1) / draws  # (C_out, L..L): summed over inputs
    for rows in ([0], [1, 2, 3, 4] if d == 2 else [1, 2, 3, 4, 5, 6]):
        peak = power[rows].mean(0).max().item()
        assert 0.8 < peak < 1.2, (rows, peak)


# ------------------------------------------------------------------------------------------------------------------
# export


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
@pytest.mark.parametrize("d", [2, 3])
def test_export_same_output(d, mode):
    fin, fout = random_types(d, 11)
    layer = randomize(GeometricConv(fin, fout, 3, padding=2, stride=2, dilation=1, padding_mode=mode)).double()
    conv = layer.export()
    assert isinstance(conv, torch.nn.Conv2d if d == 2 else torch.nn.Conv3d)
    assert conv.padding_mode == mode and conv.weight.dtype == torch.float64
    x = random_input(fin, 7, 2, torch.float64, torch.Generator().manual_seed(0))
    expected = layer(x).tensor
    assert torch.allclose(conv(x.tensor), expected, rtol=0, atol=1e-12)
    assert layer.training  # export does not change the mode


# ------------------------------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("K,P,S,D,N", [(3, 1, 1, 1, 9), (5, (2, 2), 2, 1, 11), (4, 0, 3, 2, 17), (3, "same", 1, 2, 8)])
def test_evaluate_output_shape(K, P, S, D, N):
    fin, fout = random_types(2, 5)
    layer = GeometricConv(fin, fout, K, padding=P, stride=S, dilation=D)
    x = random_input(fin, N, 3, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EquivarianceWarning)
        y = layer(x)
    assert layer.evaluate_output_shape(x.shape) == tuple(y.shape)
    assert y.type == fout


# ------------------------------------------------------------------------------------------------------------------
# escnn interop, state, copying


def test_mixed_with_escnn_trains_and_is_equivariant():
    gs = GS[2]
    t0 = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t1 = et.tensor_type(gs, [(0, 1, 2), (1, 1, 2), (2, 1, 1)])
    t2 = et.tensor_type(gs, [(1, 1, 1), (0, 1, 1)])
    torch.manual_seed(0)
    net = nn.SequentialModule(
        nn.R2Conv(t0, t1, 3, padding=1, recompute=True),  # own basis: escnn shares cached ones across layers
        nn.NormNonLinearity(t1, "n_relu", bias=False),
        GeometricConv(t1, t1, 3, padding=1),
        nn.NormNonLinearity(t1, "n_softplus", bias=False),
        GeometricConv(t1, t2, 5, padding=2),
    )
    x = random_input(t0, 9, 4, torch.float32, torch.Generator().manual_seed(0))
    target = torch.randn(4, t2.size, 9, 9, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = ((net(x).tensor - target) ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < 0.9 * losses[0]
    geo = [m for m in net.modules() if isinstance(m, GeometricConv)]
    assert all(m.weights.grad is not None and m.weights.grad.abs().sum() > 0 for m in geo)
    # escnn's own R2Conv samples its basis in float32, so its kernel is equivariant only to ~1e-7 relative even
    # in float64; the stack is therefore checked at 1e-5 (float64), far below the O(1) error of a wrong layer.
    net = net.double().eval()
    with torch.no_grad():
        assert_equivariant(net, random_input(t0, 9, 1, torch.float64, torch.Generator().manual_seed(2)), rtol=1e-5)


def test_mixed_3d_sequential_forward_equivariant():
    gs = GS[3]
    t0 = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t1 = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    net = nn.SequentialModule(
        GeometricConv(t0, t1, 3, padding=1), nn.NormNonLinearity(t1, "n_softplus", bias=False),
        nn.R3Conv(t1, t1, 3, padding=1, recompute=True),  # own basis (escnn shares cached ones), so .double() stays local
    ).double().eval()
    with torch.no_grad():  # R3Conv: float32-sampled basis, see the 2D test
        assert_equivariant(net, random_input(t0, 5, 1, torch.float64, torch.Generator().manual_seed(0)), rtol=1e-5)


def test_state_dict_same_in_train_and_eval_and_round_trip():
    fin, fout = random_types(2, 21)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1))
    sd_train = layer.state_dict()
    layer.eval()
    with torch.no_grad():
        layer(random_input(fin, 5, 1, torch.float32))  # fills the eval cache
    sd_eval = layer.state_dict()
    assert list(sd_train) == list(sd_eval) == ["weights", "bias", "_extra_state"]  # field types stored (issue 20 item 6)
    assert all(torch.equal(sd_train[k], sd_eval[k]) for k in sd_train)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = GeometricConv(fin, fout, 3, padding=1).eval()
    x = random_input(fin, 7, 2, torch.float32, torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = other(x).tensor.clone()  # caches other's kernel: loading must invalidate it
        other.load_state_dict(torch.load(buf))
        after = other(x).tensor
        assert not torch.allclose(before, after)
        assert torch.equal(after, layer(x).tensor)


def test_eval_cache_reused_and_gradients_in_eval_mode():
    fin, fout = random_types(2, 4)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).eval()
    with torch.no_grad():
        k1, _ = layer._kernel_and_bias()
        k2, _ = layer._kernel_and_bias()
    assert k1 is k2  # cached in eval mode
    layer.train()
    assert layer._kernel_and_bias()[0] is not layer._kernel_and_bias()[0]  # recomputed in train mode
    layer.eval()  # with gradients enabled the weights still get them (no stale detached kernel)
    layer(random_input(fin, 5, 1, torch.float32)).tensor.sum().backward()
    assert layer.weights.grad is not None and layer.weights.grad.abs().sum() > 0


@pytest.mark.parametrize("d", [2, 3])
def test_deepcopy_and_pickle(d):
    fin, fout = random_types(d, 8)
    layer = randomize(GeometricConv(fin, fout, 3, padding=1, padding_mode="circular", stride=1))
    x = random_input(fin, 5, 1, torch.float32, torch.Generator().manual_seed(0))
    y = layer(x).tensor
    dc = copy.deepcopy(layer)
    assert dc.in_type is layer.in_type and dc.out_type is layer.out_type
    assert dc.weights is not layer.weights and torch.equal(dc(x).tensor, y)
    pk = pickle.loads(pickle.dumps(layer))
    assert pk.in_type == layer.in_type and pk.out_type == layer.out_type
    assert torch.equal(pk(x).tensor, y)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x).tensor, y)
    with torch.no_grad():
        dc.weights.add_(1.0)
    assert torch.equal(layer(x).tensor, y)  # the copy is independent


@pytest.mark.parametrize("make", [lambda: gspaces.flip2dOnR2(axis=np.pi / 4), lambda: gspaces.mirOnR3(),
                                  lambda: gspaces.rot2dOnR3(n=4)])
def test_pickle_subgroup_gspaces(make):
    gs = make()
    fin = et.tensor_type(gs, [(0, 1, 1), (1, -1, 1)])
    layer = randomize(GeometricConv(fin, fin, 3, padding=1))
    pk = pickle.loads(pickle.dumps(layer))
    assert action_key(pk.space) == action_key(gs) and pk.in_type == fin
    x = random_input(fin, 5, 1, torch.float32, torch.Generator().manual_seed(0))
    assert torch.equal(pk(x).tensor, layer(x).tensor)


def test_double_on_one_layer_leaves_another_alone_and_basis_stays_exact():
    fin, fout = random_types(3, 9)
    a = randomize(GeometricConv(fin, fout, 3, padding=1))
    b = randomize(GeometricConv(fin, fout, 3, padding=1), seed=1)
    x = random_input(fin, 5, 1, torch.float32, torch.Generator().manual_seed(0))
    yb = b(x).tensor.clone()
    a.double()
    assert all(t.dtype == torch.float32 for t in itertools.chain(b.parameters(), b.buffers()) if t.is_floating_point())
    assert torch.equal(b(x).tensor, yb)
    a.float().double()  # float32 -> float64 round trip: the basis comes back exact, not float32-rounded
    assert_equivariant(a, random_input(fin, 5, 1, torch.float64, torch.Generator().manual_seed(1)))


# ------------------------------------------------------------------------------------------------------------------
# bad input


def test_accepts_any_fields_but_not_two_stage_on_them():
    gs = GS[2]
    good = et.tensor_type(gs, [(1, 1, 1)])
    regular = nn.FieldType(gs, [gs.trivial_repr, gs.regular_repr])
    # any escnn fields are accepted (issue 17; tests/nn/test_conv_any_types.py checks them), on the dense path
    assert GeometricConv(regular, good, 3).method == "dense"
    with pytest.raises(ValueError, match=r"method='two_stage' needs tensor fields.*-> 1 x \(k=0,p=\+1\) \+ 1 x regular"):
        GeometricConv(good, regular, 3, method="two_stage")
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        GeometricConv([(1, 1, 1)], good, 3)


def test_rejects_mismatched_gspaces():
    a = et.tensor_type(GS[2], [(1, 1, 1)])
    b = et.tensor_type(gspaces.rot2dOnR2(N=4), [(1, 1, 1)])
    with pytest.raises(ValueError, match="same gspace"):
        GeometricConv(a, b, 3)
    with pytest.raises(ValueError, match="same gspace"):
        GeometricConv(a, et.tensor_type(GS[3], [(1, 1, 1)]), 3)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(padding=(1, 2)), ValueError, r"padding=\(1, 2\) differs between axes"),
        (dict(padding=-1), ValueError, "padding must be an integer >= 0"),
        (dict(kernel_size=4, padding="same"), ValueError, "moves the centre"),
        (dict(padding="full"), ValueError, "padding must be"),
        (dict(stride=(1, 2)), ValueError, "stride=.* differs between axes"),
        (dict(kernel_size=0), ValueError, "kernel_size must be an integer >= 1"),
        (dict(kernel_size=3.0), TypeError, "kernel_size must be an integer"),
        (dict(dilation=0), ValueError, "dilation must be an integer >= 1"),
        (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
    ],
)
def test_rejects_bad_arguments(kwargs, exc, match):
    ft = et.tensor_type(GS[2], [(0, 1, 1), (1, 1, 1)])
    args = dict(kernel_size=3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        GeometricConv(ft, ft, **args)


def test_rejects_bad_forward_input():
    ft = et.tensor_type(GS[2], [(0, 1, 1), (1, 1, 1)])
    other = et.tensor_type(GS[2], [(1, 1, 1), (0, 1, 1)])
    layer = GeometricConv(ft, ft, 3)
    with pytest.raises(TypeError, match="GeometricTensor"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="in_type"):
        layer(nn.GeometricTensor(torch.randn(1, 3, 5, 5), other))
    with pytest.raises(ValueError, match="input_shape must be"):
        layer.evaluate_output_shape((1, 4, 5, 5))


# ------------------------------------------------------------------------------------------------------------------
# the expansion is a gather (issue 10): same kernel as the dense contraction, gradients, scale, refusals


def dense_reference_kernel(layer):
    """sum_n w_n B_n per field pair from the *dense* public invariant_filters (relaid to escnn's layout), assembled
    channel by channel from the FieldTypes: an independent construction of the kernel (C_out, C_in, K..)."""
    from escnn_tensor.groups import grid_to_escnn

    gs, K, d = layer.space, layer.kernel_size, layer.d
    sig_in, sig_out = et.field_signature(layer.in_type), et.field_signature(layer.out_type)
    types_in, types_out = list(dict.fromkeys(sig_in)), list(dict.fromkeys(sig_out))
    start = lambda sig: np.cumsum([0] + [d**k for k, _ in sig])
    s_in, s_out = start(sig_in), start(sig_out)
    kernel = torch.zeros(layer.out_type.size, layer.in_type.size, K**d, dtype=torch.float64)
    w = layer.weights.detach().double()
    offset = 0
    for t_out in types_out:
        fields_out = [j for j, t in enumerate(sig_out) if t == t_out]
        for t_in in types_in:
            fields_in = [j for j, t in enumerate(sig_in) if t == t_in]
            (k_in, p_in), (k_out, p_out) = t_in, t_out
            f = et.invariant_filters(gs, K, k_in + k_out, p_in * p_out)
            n = f.shape[0]
            f = grid_to_escnn(f, d, n_trailing=k_in + k_out).reshape(n, K**d, d**k_out, d**k_in).permute(0, 2, 3, 1)
            for a, jo in enumerate(fields_out):
                for b, ji in enumerate(fields_in):
                    coeff = w[offset + (a * len(fields_in) + b) * n : offset + (a * len(fields_in) + b + 1) * n]
                    kernel[s_out[jo] : s_out[jo + 1], s_in[ji] : s_in[ji + 1]] = torch.einsum("n,nois->ois", coeff, f)
            offset += len(fields_out) * len(fields_in) * n
    assert offset == layer.weights.numel()
    return kernel.reshape(kernel.shape[:2] + (K,) * d)


@pytest.mark.parametrize("d,seed,K", [(2, 11, 3), (2, 12, 4), (2, 13, 5), (3, 14, 3), (3, 15, 2)])
def test_gathered_kernel_equals_dense_contraction(d, seed, K):
    fin, fout = random_types(d, seed, max_fields=5)
    try:
        layer = randomize(GeometricConv(fin, fout, K)).double()
    except ValueError as err:  # no equivariant kernel between these types at this size: nothing to compare
        assert "no nonzero equivariant kernel" in str(err)
        return
    kernel, _ = layer.expand_parameters()
    ref = dense_reference_kernel(layer)
    assert torch.allclose(kernel, ref, rtol=0, atol=1e-12 * ref.abs().max())
    assert (ref != 0).any()


def test_gather_gradients_are_the_transposed_expansion():
    """d loss / d weights through the gather == the same through the dense contraction (autograd on both)."""
    fin = et.tensor_type(GS[2], [(0, 1, 2), (1, 1, 1), (2, -1, 1)])
    fout = et.tensor_type(GS[2], [(1, -1, 1), (0, 1, 1), (2, 1, 1)])
    layer = randomize(GeometricConv(fin, fout, 3, padding=1)).double()
    x = random_input(fin, 6, 2, torch.float64, torch.Generator().manual_seed(3))
    g = torch.randn(layer.evaluate_output_shape(x.tensor.shape), generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64)
    (layer(x).tensor * g).sum().backward()
    grad = layer.weights.grad.clone()
    # reference: the kernel as a linear function of the weights, through dense_reference_kernel's contraction
    basis = []
    for j in range(layer.weights.numel()):
        unit = copy.deepcopy(layer)
        with torch.no_grad():
            unit.weights.zero_()
            unit.weights[j] = 1.0
        basis.append(dense_reference_kernel(unit))
    basis = torch.stack(basis)  # (n_weights, C_out, C_in, K, K)
    w = layer.weights.detach().clone().requires_grad_(True)
    kernel = torch.einsum("j,jabuv->abuv", w, basis)
    bias = layer.expand_parameters()[1].detach()
    (torch.nn.functional.conv2d(x.tensor, kernel, bias, padding=1) * g).sum().backward()
    assert torch.allclose(grad, w.grad, rtol=1e-12, atol=1e-12 * w.grad.abs().max())
    # double backward (a gradient penalty) goes through the gather too
    layer.weights.grad = None
    out = layer(x).tensor.pow(2).sum()
    (gw,) = torch.autograd.grad(out, layer.weights, create_graph=True)
    gw.pow(2).sum().backward()
    assert layer.weights.grad is not None and torch.isfinite(layer.weights.grad).all()


def test_3d_order4_fields_equivariant_and_complete():
    """3D k=4 -> k=4 at K=3 (order-8 filters; its dense basis would be 5.1 GiB): built from the sparse basis."""
    gs = GS[3]
    ft = et.tensor_type(gs, [(4, 1, 1)])
    layer = GeometricConv(ft, ft, 3, padding=1)
    assert layer.weights.numel() == filter_count(gs, 3, 8, 1)
    layer = randomize(layer).double()
    assert_equivariant(layer, random_input(ft, 3, 1, torch.float64, torch.Generator().manual_seed(0)))


def test_3d_vectors_large_kernel_equivariant_and_complete():
    gs = GS[3]
    ft = et.tensor_type(gs, [(1, 1, 1)])
    layer = GeometricConv(ft, ft, 15)
    assert layer.weights.numel() == filter_count(gs, 15, 2, 1)
    layer = randomize(layer).double()
    assert_equivariant(layer, random_input(ft, 17, 1, torch.float64, torch.Generator().manual_seed(0)))


def test_plan_too_large_is_refused_before_allocation(monkeypatch):
    import escnn_tensor.representations as reps_module

    monkeypatch.setattr(reps_module, "MEMORY_LIMIT_BYTES", 100_000)
    ft = et.tensor_type(GS[2], [(0, 1, 8), (1, 1, 8)])  # 24 x 24 x 25 entries x 24 bytes = 345 kB > 100 kB
    with pytest.raises(ValueError, match=r"GeometricConv.*would need about .*24 x 24 x 5\^2 entries.*MEMORY_LIMIT"):
        GeometricConv(ft, ft, 5)


def brute_force_peak_gain(gram, K, d, stride, dilation):
    """max over omega = 2 pi m / L of s^-d sum_r phi_r^H G_rr phi_r, every frequency and pixel pair summed directly."""
    L = max(16, 4 * K)
    pos = dilation * np.array(list(itertools.product(range(K), repeat=d)))
    phase = pos % stride
    off = (pos - phase) // stride
    best = -np.inf
    for m in itertools.product(range(L), repeat=d):
        omega = 2 * np.pi * np.array(m) / L
        total = 0.0
        for r in np.unique(phase, axis=0):
            sel = np.flatnonzero((phase == r).all(1))
            phi = np.exp(1j * off[sel] @ omega)
            total += (phi.conj() @ gram[np.ix_(sel, sel)] @ phi).real
        best = max(best, total / stride**d)
    return best


@pytest.mark.parametrize("d,K,stride,dilation", [(2, 3, 1, 1), (2, 4, 2, 1), (2, 5, 1, 3), (2, 3, 3, 2), (3, 2, 2, 1)])
def test_peak_kernel_gain_fft_matches_direct_sum(d, K, stride, dilation):
    from escnn_tensor.nn._kernel import peak_kernel_gain

    a = np.random.default_rng(K + 10 * stride).standard_normal((K**d, K**d))
    gram = a @ a.T
    expected = brute_force_peak_gain(gram, K, d, stride, dilation)
    assert abs(peak_kernel_gain(gram, K, d, stride, dilation) - expected) <= 1e-10 * abs(expected)


# ------------------------------------------------------------------------------------------------------------------
# two-stage evaluation (fixed invariant filters per input field, then a pointwise mixing): same map as the dense path


TWO_STAGE_CASES = [
    (3, [(1, 1, 3)], [(1, 1, 2)], 3, {}),
    (3, [(0, 1, 2), (1, 1, 1), (2, -1, 1), (0, 1, 1)], [(1, -1, 1), (0, 1, 2), (2, 1, 1), (1, 1, 1)], 3,
     dict(padding=1, padding_mode="circular")),
    (3, [(1, -1, 1), (0, 1, 1)], [(0, -1, 1), (1, 1, 2)], 2, dict(stride=2, padding=1)),
    (2, [(0, 1, 2), (1, 1, 2), (2, 1, 1)], [(1, 1, 1), (0, 1, 2), (2, -1, 1)], 4, dict(stride=2, dilation=2, padding=3)),
    (2, [(1, 1, 1), (0, 1, 1)], [(0, -1, 1), (1, -1, 1)], 5, dict(padding=2, padding_mode="reflect")),
]


def dense_and_two_stage(d, fin, fout, K, kw, seed=0):
    gs = GS[d]
    a, b = et.tensor_type(gs, fin), et.tensor_type(gs, fout)
    dense = randomize(GeometricConv(a, b, K, method="dense", **kw), seed).double()
    two = GeometricConv(a, b, K, method="two_stage", **kw).double()
    two.load_state_dict(dense.state_dict())
    assert dense.method == "dense" and two.method == "two_stage"
    return a, dense, two


@pytest.mark.parametrize("case", range(len(TWO_STAGE_CASES)))
def test_two_stage_equals_dense_path_with_gradients(case):
    d, fin, fout, K, kw = TWO_STAGE_CASES[case]
    a, dense, two = dense_and_two_stage(d, fin, fout, K, kw)
    xs = [random_input(a, 9 if d == 2 else 6, 2, torch.float64, torch.Generator().manual_seed(5)) for _ in range(2)]
    for x in xs:
        x.tensor.requires_grad_(True)
    y_dense, y_two = dense(xs[0]).tensor, two(xs[1]).tensor
    assert y_dense.shape == y_two.shape
    scale = y_dense.abs().max()
    assert scale > 0 and (y_dense - y_two).abs().max() <= 1e-10 * scale
    g = torch.randn(y_dense.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    (y_dense * g).sum().backward()
    (y_two * g).sum().backward()
    for p, q in [(dense.weights.grad, two.weights.grad), (xs[0].tensor.grad, xs[1].tensor.grad)] + (
        [(dense.bias.grad, two.bias.grad)] if dense.bias is not None else []
    ):
        assert (p - q).abs().max() <= 1e-10 * p.abs().max()
    two.eval()  # eval mode: the same path, no cache involved
    with torch.no_grad():
        assert (two(xs[1]).tensor - y_dense).abs().max() <= 1e-10 * scale


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_two_stage_equivariant_every_element(dtype):
    d, fin, fout, K, kw = TWO_STAGE_CASES[1]
    a, _, two = dense_and_two_stage(d, fin, fout, K, kw, seed=3)
    two = two.to(dtype)
    assert_equivariant(two, random_input(a, 5, 1, dtype, torch.Generator().manual_seed(7)))
    assert max(e for _, e in two.check_equivariance()) <= 1e-10


def test_two_stage_copies_pickles_and_changes_dtype():
    d, fin, fout, K, kw = TWO_STAGE_CASES[2]
    a, dense, two = dense_and_two_stage(d, fin, fout, K, kw, seed=4)
    x = random_input(a, 6, 1, torch.float64, torch.Generator().manual_seed(8))
    y = two(x).tensor
    for other in (copy.deepcopy(two), pickle.loads(pickle.dumps(two))):
        assert other.method == "two_stage" and torch.equal(other(x).tensor, y)
    back = copy.deepcopy(two).float().double()  # stage-1 filters re-rounded from their float64 originals
    assert torch.equal(back(x).tensor, y)
    assert "method='two_stage'" in repr(two)
    export = two.export()  # the dense Conv3d of the same map
    assert (export(x.tensor) - y).abs().max() <= 1e-10 * y.abs().max()


def test_auto_method_follows_the_measured_rule():
    from escnn_tensor.nn._two_stage import TWO_STAGE_MAX_FRACTION

    many = et.tensor_type(GS[3], [(1, 1, 128)])
    layer = GeometricConv(many, many, 3, padding=1, initialize=False)
    # 128 vector fields, K=3: n = 8 filters per pair, fraction 8/128 + 8/(3 * 27) (counted from the formula)
    n = filter_count(GS[3], 3, 2, 1)
    assert layer.two_stage_fraction == pytest.approx(n / 128 + n / 81)
    assert layer.two_stage_fraction <= TWO_STAGE_MAX_FRACTION and layer.method == "two_stage"
    mid = et.tensor_type(GS[3], [(1, 1, 64)])
    assert GeometricConv(mid, mid, 3, initialize=False).method == "two_stage"  # fraction 0.22: won at batch 1 and 2
    fewer = et.tensor_type(GS[3], [(1, 1, 48)])
    assert GeometricConv(fewer, fewer, 3, initialize=False).method == "dense"  # fraction 0.27: lost at batch 2
    few = et.tensor_type(GS[3], [(0, 1, 8), (1, 1, 8)])
    assert GeometricConv(few, few, 3).method == "dense"  # fraction 0.83
    flat = et.tensor_type(GS[2], [(1, 1, 64)])
    assert GeometricConv(flat, flat, 3).method == "dense"  # 2D: the two-stage path never won there
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'dense', 'two_stage'\), got 'fast'"):
        GeometricConv(few, few, 3, method="fast")


def test_two_stage_too_large_is_refused_before_allocation():
    """3D k=4 -> k=4 at K=3: the dense stage-1 filters would be 3830 x 81 x 81 x 27 entries (~11 GB): refused."""
    ft = et.tensor_type(GS[3], [(4, 1, 1)])
    with pytest.raises(ValueError, match=r"method='two_stage'.*would need about .*GiB.*use method='dense'"):
        GeometricConv(ft, ft, 3, method="two_stage")
    assert GeometricConv(ft, ft, 3, initialize=False).method == "dense"  # 'auto' never picks it (fraction ~3800)
