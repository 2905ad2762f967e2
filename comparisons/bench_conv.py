"""Benchmark GeometricConv against torch.nn.Conv2d/Conv3d (same dense shape) and escnn R2Conv/R3Conv (same FieldTypes).

Run:  .venv/bin/python comparisons/bench_conv.py [--threads N] [--reps R] [--weights]

All three layers are timed in the same run, interleaved repetition by repetition (so machine load hits them
alike), and the table reports medians and ratios:
  eval  = forward in eval mode under torch.no_grad() (GeometricConv and escnn reuse their cached kernel);
  train = forward + backward in train mode (the kernel is expanded from the weights on every call).
Also printed: basis construction time per layer (first construction in the process = cold, and a second one).
With --weights it prints, instead, the number of weights per field pair: ours (= the dimension of the space of
equivariant kernels) beside escnn's R2Conv/R3Conv for the same field types.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import torch
from escnn import nn

from _timing import eval_step, time_interleaved, train_step  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor import filters as _filters
from escnn_tensor.nn import GeometricConv

CASES = [
    # label, d, fields (k, parity, multiplicity), spatial, batch, kernel_size
    ("(a) 2D 16s+16v 64x64 b8 K3", 2, [(0, 1, 16), (1, 1, 16)], 64, 8, 3),
    ("(a) 2D 16s+16v 64x64 b8 K5", 2, [(0, 1, 16), (1, 1, 16)], 64, 8, 5),
    ("(b) 2D 16s+16v 16x16 b1 K3", 2, [(0, 1, 16), (1, 1, 16)], 16, 1, 3),
    ("(b) 2D 16s+16v 16x16 b1 K5", 2, [(0, 1, 16), (1, 1, 16)], 16, 1, 5),
    ("(c) 3D 8s+8v 16^3 b2 K3", 3, [(0, 1, 8), (1, 1, 8)], 16, 2, 3),
    ("(d) 3D 8s+8v 8^3 b1 K3", 3, [(0, 1, 8), (1, 1, 8)], 8, 1, 3),
    ("(d) 3D 8s+8v 8^3 b1 K5", 3, [(0, 1, 8), (1, 1, 8)], 8, 1, 5),
]


def _layers(d, fields, K):
    gs = et.hyperoctahedral_gspace(d)
    ft = et.tensor_type(gs, fields)
    ours = GeometricConv(ft, ft, K, padding=K // 2)
    dense_cls = torch.nn.Conv2d if d == 2 else torch.nn.Conv3d
    dense = dense_cls(ft.size, ft.size, K, padding=K // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = (nn.R2Conv if d == 2 else nn.R3Conv)(ft, ft, K, padding=K // 2)
    return ft, ours, dense, theirs


def bench_case(label, d, fields, N, B, K, reps):
    ft, ours, dense, theirs = _layers(d, fields, K)
    x = torch.randn(B, ft.size, *(N,) * d)
    gx = nn.GeometricTensor(x, ft)
    for m in (ours, dense, theirs):
        m.eval()
    ev = time_interleaved([lambda: eval_step(ours, gx), lambda: eval_step(dense, x), lambda: eval_step(theirs, gx)], reps, warmup=1)
    for m in (ours, dense, theirs):
        m.train()
    tr = time_interleaved([lambda: train_step(ours, gx), lambda: train_step(dense, x), lambda: train_step(theirs, gx)], reps, warmup=1)
    return ev, tr


def construction_times(d, fields, K):
    """Seconds to build one layer: (ours cold, ours warm, escnn first, escnn second)."""
    gs = et.hyperoctahedral_gspace(d)
    ft = et.tensor_type(gs, fields)
    _filters._filters_np.cache_clear()  # cold: the invariant filters are recomputed
    out = []
    for _ in range(2):
        t0 = time.perf_counter()
        GeometricConv(ft, ft, K, padding=K // 2)
        out.append(time.perf_counter() - t0)
    for _ in range(2):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (nn.R2Conv if d == 2 else nn.R3Conv)(ft, ft, K, padding=K // 2)
        out.append(time.perf_counter() - t0)
    return out


def run_speed(reps):
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={reps} (median ms per call)\n")
    head = (f"{'case':30s} | {'eval ours':>9s} {'Conv':>8s} {'escnn':>8s} {'/Conv':>6s} {'/escnn':>6s} | "
            f"{'train ours':>10s} {'Conv':>8s} {'escnn':>8s} {'/Conv':>6s} {'/escnn':>6s}")
    print(head)
    print("-" * len(head))
    for label, d, fields, N, B, K in CASES:
        ev, tr = bench_case(label, d, fields, N, B, K, reps if d == 2 or N < 16 or reps < 10 else max(5, reps // 3))
        ms = lambda t: f"{1e3 * t:8.2f}"
        print(f"{label:30s} | {ms(ev[0]):>9s} {ms(ev[1])} {ms(ev[2])} {ev[0] / ev[1]:6.2f} {ev[0] / ev[2]:6.2f} | "
              f"{ms(tr[0]):>10s} {ms(tr[1])} {ms(tr[2])} {tr[0] / tr[1]:6.2f} {tr[0] / tr[2]:6.2f}", flush=True)
    print("\nbasis construction, seconds per layer (ours: cold = invariant filters recomputed, warm = cached)")
    print(f"{'layer':30s} | {'ours cold':>9s} {'ours warm':>9s} | {'escnn 1st':>9s} {'escnn 2nd':>9s}")
    for label, d, fields, _, _, K in CASES[:2] + CASES[4:5] + CASES[6:]:
        c = construction_times(d, fields, K)
        print(f"{label.split(' ', 1)[1]:30s} | {c[0]:9.3f} {c[1]:9.3f} | {c[2]:9.3f} {c[3]:9.3f}", flush=True)


def escnn_weights(d, kin, kout, K):
    gs = et.hyperoctahedral_gspace(d)
    a, b = et.tensor_type(gs, [kin + (1,)]), et.tensor_type(gs, [kout + (1,)])
    try:  # escnn prints a warning to stdout for each empty block: silenced
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return (nn.R2Conv if d == 2 else nn.R3Conv)(a, b, K, bias=False).weights.numel()
    except ValueError:  # escnn refuses an empty basis
        return 0


def ours_weights(d, kin, kout, K):
    return _filters.num_invariant_filters(et.hyperoctahedral_gspace(d), K, kin[0] + kout[0], kin[1] * kout[1])


def run_weights():
    pairs = [((ki, pi), (ko, po)) for ki in range(3) for ko in range(3) for pi in (1, -1) for po in (1, -1)
             if (pi, po) in ((1, 1), (1, -1)) or ki == ko == 1 or (ki, ko) == (2, 2)]
    sizes = [(2, 3), (2, 5), (2, 7), (3, 3), (3, 5)]
    name = lambda kp: f"{kp[0]}{'+' if kp[1] == 1 else '-'}"
    print("weights per field pair (k, parity): ours (= dim of all equivariant kernels) / escnn R2Conv|R3Conv")
    print(f"{'in -> out':10s} | " + " | ".join(f"{('D4' if d == 2 else 'Oh')} {K}^{d}".center(11) for d, K in sizes))
    for kin, kout in pairs:
        cells = []
        for d, K in sizes:
            cells.append(f"{ours_weights(d, kin, kout, K):4d} / {escnn_weights(d, kin, kout, K):<4d}")
        print(f"{name(kin) + ' -> ' + name(kout):10s} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--weights", action="store_true", help="print the weight-count table instead")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_weights() if args.weights else run_speed(args.reps)
