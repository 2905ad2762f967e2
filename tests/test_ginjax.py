"""Cross-checks against the real ginjax (the reference implementation of geometric convolutions).

ginjax needs numpy >= 2.2 and escnn numpy < 2, so ginjax runs in its own environment: every case's inputs go
into one .npz, ``tests/ginjax_bridge.py`` runs ONCE per session under that environment's python (path from
``ESCNN_TENSOR_GINJAX_PYTHON``, else ``.venv-ginjax/bin/python`` in the repository) and writes all results to
another .npz. The tests skip, saying why, only when no such python exists.

Inputs are random Gaussians rounded to float32 (ginjax casts convolution and max-pool inputs to float32;
rounding first makes that cast lossless). Our side runs in float64. Agreement criterion for every case:
``max|ours - ginjax| <= 1e-6 * max(1, max|ginjax|)``.

JAX's persistent compilation cache is kept in ``ESCNN_TENSOR_JAX_CACHE`` (default
``~/.cache/escnn_tensor/jax``; set it to an empty string to switch the cache off): ginjax compiles XLA code for
every new shape, and the cache makes every run after the first one faster.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from escnn_tensor import group_matrices, hyperoctahedral_gspace, invariant_filters
from escnn_tensor.image import GeometricImage

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = Path(__file__).resolve().parent / "ginjax_bridge.py"
TOL = 1e-6


def _ginjax_python():
    env = os.environ.get("ESCNN_TENSOR_GINJAX_PYTHON")
    if env and Path(env).exists():
        return env
    fallback = ROOT / ".venv-ginjax" / "bin" / "python"
    if fallback.exists():
        return str(fallback)
    reason = "no ginjax environment: ESCNN_TENSOR_GINJAX_PYTHON is unset"
    if env:
        reason = f"no ginjax environment: ESCNN_TENSOR_GINJAX_PYTHON={env} does not exist"
    reason += f" and {fallback} does not exist (run `bash scripts/dev.sh test`, which makes it)"
    if os.environ.get("ESCNN_TENSOR_GINJAX_UNAVAILABLE"):
        reason += f"; set-up said: {os.environ['ESCNN_TENSOR_GINJAX_UNAVAILABLE']}"
    return reason, None


# ------------------------------------------------------------------------------------------------------
# the cases (deterministic, built at import so they can parametrize the tests)
# ------------------------------------------------------------------------------------------------------
_rng = np.random.default_rng(20251123)
CASES = []  # dicts: id, op, D, ... (ginjax parities 0/1)
ARRAYS = {}


def _rand(shape):
    return _rng.standard_normal(shape).astype(np.float32).astype(np.float64)


def _g(p):  # our parity -> ginjax's
    return 0 if p == 1 else 1


def _add(op, D, k, parity, N, **kw):
    cid = f"{op}-D{D}-k{k}{'+' if parity == 1 else '-'}-N{N}-{len(CASES)}"
    case = dict(id=cid, op=op, D=D, k=k, parity=_g(parity), N=N, **{a: b for a, b in kw.items() if a != "arrays"})
    ARRAYS[f"{cid}/image"] = _rand((N,) * D + (D,) * k)
    for name, arr in kw.get("arrays", {}).items():
        ARRAYS[f"{cid}/{name}"] = arr
    case.pop("arrays", None)
    CASES.append(case)


def _conv(D, k, p, N, fk, fp, M, **kw):
    _add("convolve", D, k, p, N, filter_parity=_g(fp), fk=fk, M=M,
         arrays={"filter": _rand((M,) * D + (D,) * fk)}, **kw)


for k, p in [(0, 1), (1, 1), (1, -1), (2, 1)]:
    for fk, fp in [(0, 1), (1, -1), (2, 1)]:
        if k + fk <= 3:
            _conv(2, k, p, 7, fk, fp, 3)
_conv(2, 1, 1, 6, 1, 1, 3)  # even image
_conv(2, 1, 1, 8, 0, 1, 5)
_conv(2, 1, 1, 8, 1, 1, 3, stride=2)
_conv(2, 0, 1, 9, 1, 1, 3, dilation=2)
_conv(2, 1, -1, 7, 1, 1, 3, is_torus=False)  # zero padding ('SAME')
_conv(2, 1, 1, 7, 0, 1, 3, is_torus=[True, False])  # mixed torus
_conv(2, 1, 1, 7, 1, 1, 3, padding="VALID")
_conv(2, 0, 1, 7, 1, 1, 2, padding=[[0, 1], [1, 0]])  # even filter, literal padding
_conv(3, 1, 1, 5, 1, -1, 3)
_conv(3, 0, -1, 4, 2, 1, 3)
for D, k, idx in [(2, 2, (0, 1)), (2, 3, (0, 1)), (2, 3, (0, 2)), (2, 3, (1, 2)), (3, 2, (0, 1)), (3, 3, (0, 2))]:
    _add("contract", D, k, -1, 5, indices=list(idx))
_add("multicontract", 2, 4, 1, 4, indices=[[0, 2], [1, 3]])
_add("multicontract", 3, 4, -1, 3, indices=[[0, 3], [1, 2]])
for D, k, idx in [(2, 1, 0), (2, 2, 0), (2, 2, 1), (2, 3, 2), (3, 2, [0, 1]), (3, 2, [1, 0]), (3, 3, [0, 2])]:
    _add("levi_civita_contract", D, k, 1, 5 if D == 2 else 4, indices=idx)
_add("transpose", 2, 3, 1, 5, axes=[2, 0, 1])
_add("transpose", 3, 2, -1, 4, axes=[1, 0])
_add("mul", 2, 1, -1, 5, other_parity=_g(-1), ok=2, arrays={"other": _rand((5, 5, 2, 2))})
_add("mul", 3, 1, 1, 4, other_parity=_g(-1), ok=1, arrays={"other": _rand((4, 4, 4, 3))})
for D, k in [(2, 0), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2)]:
    _add("norm", D, k, 1, 5 if D == 2 else 4)
_add("normalize", 2, 1, 1, 5)
_add("normalize", 3, 2, -1, 4)
# every element: in 2D with six (k, parity) types on odd and even grids; in 3D one type per element, in turn
for gi, M in enumerate(group_matrices(hyperoctahedral_gspace(2))):
    for j, (k, p) in enumerate([(0, -1), (1, 1), (1, -1), (2, 1), (2, -1), (3, -1)]):
        _add("times_group_element", 2, k, p, (4, 5)[(gi + j) % 2], g_index=gi, arrays={"gg": M.astype(np.float64)})
for gi, M in enumerate(group_matrices(hyperoctahedral_gspace(3))):
    k, p = [(0, -1), (1, 1), (2, -1), (1, -1)][gi % 4]
    _add("times_group_element", 3, k, p, (3, 4)[(gi // 4) % 2], g_index=gi, arrays={"gg": M.astype(np.float64)})
for D, k, N, size in [(2, 0, 6, 2), (2, 0, 6, 3), (2, 1, 6, 2), (2, 2, 6, 3), (3, 1, 4, 2)]:
    _add("max_pool", D, k, -1, N, size=size)
for D, k, N, size in [(2, 1, 6, 2), (2, 2, 6, 3), (3, 0, 4, 2)]:
    _add("average_pool", D, k, 1, N, size=size)
for D, k, N, size in [(2, 1, 4, 2), (3, 0, 3, 2)]:
    _add("unpool", D, k, 1, N, size=size)
_add("translate", 2, 1, 1, 5, shift=[1, -2])
_add("translate", 3, 1, -1, 4, shift=[2, 0, -1])

# ginjax compiles XLA code for every new filter shape (seconds each), so the set is kept small: 2D 3x3 for
# k = 0, 1, 2 and both parities, an even 2D size, and 3D vectors of both parities
FILTER_CASES = [(2, 3, k, p) for k in (0, 1, 2) for p in (1, -1)] + [(2, 4, 1, 1)]
FILTER_CASES += [(3, 3, 1, p) for p in (1, -1)]
for D, M, k, p in FILTER_CASES:
    CASES.append(dict(id=f"filters-D{D}-M{M}-k{k}{'+' if p == 1 else '-'}", op="invariant_filters", D=D, M=M, k=k,
                      parity=_g(p)))


# ---- ginjax's functional API, MultiImage methods and time-series helpers (issue 21) ----------------------
def _multi_case(op, D, blocks=None, **kw):
    """blocks: {name: [(k, parity, array), ...]}: MultiImage arrays as ginjax takes them."""
    cid = f"{op}-D{D}-{len(CASES)}"
    case = dict(id=cid, op=op, D=D, **kw)
    for name, items in (blocks or {}).items():
        case[name] = [[k, _g(p)] for k, p, _ in items]
        for i, (_, _, arr) in enumerate(items):
            ARRAYS[f"{cid}/{name}/{i}"] = arr
    for name, arr in kw.pop("arrays", {}).items():
        ARRAYS[f"{cid}/{name}"] = arr
    case.pop("arrays", None)
    CASES.append(case)


for D, ka, kb, torus, extra in [(2, 1, 1, [True, True], {}), (2, 0, 2, [False, False], {}),
                                (2, 1, 0, [True, False], {"dilation": 2}), (3, 1, 1, [True, True, True], {})]:
    N = (7, 6) if D == 2 else (4, 5, 4)  # rectangular grids
    x, f = _rand((2, 3) + N + (D,) * ka), _rand((4, 3) + (3,) * D + (D,) * kb)
    _multi_case("fconvolve", D, is_torus=torus, arrays={"x": x, "f": f}, **extra)
    fc = _rand((4, 3) + (3,) * D + (D,) * (ka + kb))
    _multi_case("fconvolve_contract", D, is_torus=torus, arrays={"x": x, "f": fc}, **extra)
_multi_case("fconvolve", 2, is_torus=[False, False], padding="VALID", arrays={"x": _rand((1, 2, 6, 5)), "f": _rand((3, 2, 3, 3, 2))})
for k0, k1, sw in [(4, 0, []), (5, 1, [[0, 1]]), (5, 1, [[0, 1], [2, 3]]), (6, 2, [[0, 1], [2, 3]]), (6, 0, [[1, 2]])]:
    _multi_case("contraction_indices", 2, initial_k=k0, final_k=k1, swappable=sw)
_MI = [(0, 1, _rand((2, 3, 5, 4))), (1, 1, _rand((2, 1, 5, 4, 2))), (1, -1, _rand((2, 2, 5, 4, 2))),
       (2, 1, _rand((2, 1, 5, 4, 2, 2)))]
_multi_case("scalar_layout", 2, {"mi": _MI})
_multi_case("multi_norm", 2, {"mi": _MI})
_multi_case("multi_norm", 3, {"mi": [(0, -1, _rand((2, 2, 3, 3, 3))), (2, -1, _rand((2, 1, 3, 3, 3, 3, 3)))]})
_FLOW = [(0, 1, _rand((2 * 3, 5, 5))), (1, 1, _rand((3, 5, 5, 2)))]  # 2 scalars + 1 vector, 3 time steps
for comp in (0, 1, 3, [1, 4]):
    _multi_case("get_component", 2, {"mi": _FLOW}, component=comp, future=3)
for past, future, dt, skip, const in [(4, 1, 1, 0, True), (2, 2, 2, 1, False)]:
    T = 12
    dyn = [(0, 1, _rand((3, 2 * T, 5, 5))), (1, 1, _rand((3, T, 5, 5, 2)))]
    cst = [(1, 1, _rand((3, 1, 5, 5, 2))), (2, 1, _rand((3, 1, 5, 5, 2, 2)))] if const else []
    _multi_case("batch_time_series", 2, {"dynamic": dyn, "constant": cst}, total=T, past=past, future=future,
                delta_t=dt, skip=skip, x_keys=[[0, 0], [1, 0]] + ([[2, 0]] if const else []), y_keys=[[0, 0], [1, 0]])
_multi_case("autoregressive_step", 2, {"x": [(0, 1, _rand((2 * 4 + 1, 5, 5))), (1, 1, _rand((4 + 1, 5, 5, 2))),
                                            (2, -1, _rand((1, 5, 5, 2, 2)))],
                                      "y": [(0, 1, _rand((2, 5, 5))), (1, 1, _rand((1, 5, 5, 2)))]},
            past=4, constant=[[0, 0, 1], [1, 0, 1], [2, 1, 1]])
MULTI_CASES = [c for c in CASES if c["op"] in ("fconvolve", "fconvolve_contract", "contraction_indices",
                                                 "batch_time_series", "scalar_layout", "get_component",
                                                 "autoregressive_step", "multi_norm")]


@pytest.fixture(scope="module")
def ginjax_results(tmp_path_factory):
    """Run ginjax once on every case; returns {name: array}."""
    py = _ginjax_python()
    if isinstance(py, tuple):
        pytest.skip(py[0])
    tmp = tmp_path_factory.mktemp("ginjax")
    src, dst = tmp / "inputs.npz", tmp / "outputs.npz"
    np.savez(src, spec=np.asarray(json.dumps(CASES)), **ARRAYS)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    # JAX's persistent compilation cache makes every run after the first one much faster
    env.setdefault("ESCNN_TENSOR_JAX_CACHE", str(Path.home() / ".cache" / "escnn_tensor" / "jax"))
    proc = subprocess.run([py, str(BRIDGE), str(src), str(dst)], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"ginjax bridge failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    with np.load(dst) as f:
        return {name: f[name] for name in f.files}


def _ours(case):
    """Our result for a case: (array, parity ±1)."""
    D, k = case["D"], case["k"]
    p = 1 - 2 * case["parity"]
    img = GeometricImage(torch.from_numpy(ARRAYS[case["id"] + "/image"]), p, D,
                         is_torus=tuple(case["is_torus"]) if isinstance(case.get("is_torus"), list)
                         else case.get("is_torus", True))
    op = case["op"]
    if op == "convolve":
        flt = GeometricImage(torch.from_numpy(ARRAYS[case["id"] + "/filter"]), 1 - 2 * case["filter_parity"], D)
        pad = case.get("padding")
        out = img.convolve_with(flt, stride=case.get("stride", 1), dilation=case.get("dilation", 1),
                                padding=[tuple(q) for q in pad] if isinstance(pad, list) else pad)
    elif op == "mul":
        other = GeometricImage(torch.from_numpy(ARRAYS[case["id"] + "/other"]), 1 - 2 * case["other_parity"], D)
        out = img * other
    elif op == "contract":
        out = img.contract(*case["indices"])
    elif op == "multicontract":
        out = img.multicontract([tuple(q) for q in case["indices"]])
    elif op == "levi_civita_contract":
        out = img.levi_civita_contract(case["indices"])
    elif op == "transpose":
        out = img.transpose(case["axes"])
    elif op == "norm":
        out = img.norm()
    elif op == "normalize":
        out = img.normalize()
    elif op == "times_group_element":
        out = img.times_group_element(ARRAYS[case["id"] + "/gg"])
    elif op in ("max_pool", "average_pool", "unpool"):
        out = getattr(img, op)(case["size"])
    elif op == "translate":
        out = img.translate(case["shift"])
    else:
        raise AssertionError(op)
    return out.data.numpy(), out.parity


OP_CASES = [c for c in CASES if c["op"] != "invariant_filters" and c not in MULTI_CASES]


@pytest.mark.parametrize("case", OP_CASES, ids=[c["id"] for c in OP_CASES])
def test_operation_agrees_with_ginjax(ginjax_results, case):
    theirs = ginjax_results[case["id"]]
    ours, parity = _ours(case)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(ours - theirs).max())
    assert err <= TOL * scale, f"{case['id']}: max error {err:.3g} vs scale {scale:.3g}"
    assert parity == 1 - 2 * int(ginjax_results[case["id"] + "/parity"])
    assert np.abs(theirs).max() > 0.1  # a non-trivial output: the comparison can fail


FILTER_IDS = [c["id"] for c in CASES if c["op"] == "invariant_filters"]


@pytest.mark.parametrize("D,M,k,p", FILTER_CASES, ids=FILTER_IDS)
def test_invariant_filters_span_ginjax_space(ginjax_results, D, M, k, p):
    """Our invariant_filters and ginjax's get_invariant_filters span the same space (same dimension, and each
    basis lies in the other's span)."""
    cid = f"filters-D{D}-M{M}-k{k}{'+' if p == 1 else '-'}"
    size = M**D * D**k
    theirs = ginjax_results[cid].reshape(-1, size)
    ours = invariant_filters(hyperoctahedral_gspace(D), M, k, p).numpy().reshape(-1, size)
    rank_theirs = np.linalg.matrix_rank(theirs, tol=1e-8) if len(theirs) else 0
    assert rank_theirs == len(theirs) == len(ours), (rank_theirs, len(theirs), len(ours))
    if len(ours) == 0:  # e.g. 3x3 pseudoscalars under D4: both find none
        return
    # ours is orthonormal: projecting ginjax's filters onto its span must leave nothing
    residual = theirs - (theirs @ ours.T) @ ours
    assert np.abs(residual).max() <= TOL * max(1.0, np.abs(theirs).max())


def test_group_is_ginjax_group(ginjax_results):
    """ginjax's make_all_operators(D) is the same set of matrices as our hyperoctahedral group."""
    for D in (2, 3):
        ours = {m.tobytes() for m in group_matrices(hyperoctahedral_gspace(D)).astype(np.int64)}
        theirs = {m.tobytes() for m in ginjax_results[f"operators/{D}"].astype(np.int64)}
        assert len(ours) == 2**D * (2 if D == 2 else 6) and ours == theirs


def _multi_image(case, name, batch=True):
    """Our MultiImage of case[name] (ginjax arrays without a batch axis get B = 1)."""
    from escnn_tensor.image import MultiImage

    arrays = {(k, 1 - 2 * p): torch.from_numpy(ARRAYS[f"{case['id']}/{name}/{i}"]) for i, (k, p) in enumerate(case[name])}
    if not batch:
        arrays = {key: v[None] for key, v in arrays.items()}
    return MultiImage(arrays, case["D"])


def _blocks(mi, keys):
    return np.concatenate([mi[(k, 1 - 2 * p)].numpy().reshape(-1) for k, p in keys])


def _ours_multi(case):
    from escnn_tensor.image import functional as fn
    from escnn_tensor.image import time_series as ts

    op, D, cid = case["op"], case["D"], case["id"]
    if op in ("fconvolve", "fconvolve_contract"):
        f = fn.convolve if op == "fconvolve" else fn.convolve_contract
        return f(D, torch.from_numpy(ARRAYS[f"{cid}/x"]), torch.from_numpy(ARRAYS[f"{cid}/f"]), tuple(case["is_torus"]),
                 stride=case.get("stride", 1), padding=case.get("padding"), rhs_dilation=case.get("dilation", 1)).numpy()
    if op == "contraction_indices":
        idxs = fn.get_contraction_indices(case["initial_k"], case["final_k"], [tuple(p) for p in case["swappable"]])
        return np.asarray(idxs).reshape(len(idxs), -1)
    if op == "batch_time_series":
        X, Y = ts.batch_time_series(_multi_image(case, "dynamic"), _multi_image(case, "constant"), case["total"],
                                    case["past"], case["future"], case.get("skip", 0), case.get("delta_t", 1))
        return np.concatenate([_blocks(X, case["x_keys"]), _blocks(Y, case["y_keys"])])
    if op == "scalar_layout":
        return _multi_image(case, "mi").to_scalar_multi_image()[(0, 1)].numpy()
    if op == "multi_norm":
        return _multi_image(case, "mi").norm()[(0, 1)].numpy()
    if op == "get_component":
        comp = case["component"]
        comp = slice(*comp) if isinstance(comp, list) else comp
        return _multi_image(case, "mi", batch=False).get_component(comp, case["future"])[(0, 1)].numpy()[0]
    if op == "autoregressive_step":
        const = {(k, 1 - 2 * p): n for k, p, n in case["constant"]}
        new = ts.autoregressive_step(_multi_image(case, "x", False), _multi_image(case, "y", False), case["past"], const)
        return _blocks(new, case["x"])
    raise ValueError(op)


@pytest.mark.parametrize("case", MULTI_CASES, ids=[c["id"] for c in MULTI_CASES])
def test_functional_multi_image_and_time_series_agree_with_ginjax(ginjax_results, case):
    """ginjax's convolve / convolve_contract with channels on rectangular grids, get_contraction_indices,
    MultiImage.to_scalar_multi_image / norm / get_component, batch_time_series and autoregressive_step."""
    theirs = ginjax_results[case["id"]]
    ours = _ours_multi(case)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if case["op"] == "contraction_indices":
        assert np.array_equal(ours, theirs)
        return
    scale = max(1.0, float(np.abs(theirs).max()))
    assert float(np.abs(ours - theirs).max()) <= TOL * scale, case["id"]
    assert np.abs(theirs).max() > 0.1  # a non-trivial output: the comparison can fail
