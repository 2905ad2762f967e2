"""Benchmark GeometricConvTransposed against torch.nn.ConvTranspose2d/3d of the same dense shape.

Run:  .venv/bin/python comparisons/bench_conv_transposed.py [--threads N] [--reps R]

Both layers are timed in the same run, interleaved repetition by repetition (so machine load hits them alike); the
table reports medians and ratios:
  eval  = forward in eval mode under torch.no_grad() (GeometricConvTransposed reuses its cached kernel, after checking
          that the weights still hold the values it was built from);
  train = forward + backward in train mode (the kernel is expanded from the weights on every call).
"""
from __future__ import annotations

import argparse

import torch
from escnn import nn

from _timing import eval_step, time_interleaved, train_step  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor.nn._conv_transposed import GeometricConvTransposed

CASES = [
    # label, d, fields (k, parity, multiplicity), spatial, batch, kernel_size, stride, padding
    ("2D 16s+16v 32->64 b8 K2 s2", 2, [(0, 1, 16), (1, 1, 16)], 32, 8, 2, 2, 0),
    ("2D 16s+16v 32->63 b8 K3 s2", 2, [(0, 1, 16), (1, 1, 16)], 32, 8, 3, 2, 1),
    ("2D 16s+16v 16->32 b1 K4 s2", 2, [(0, 1, 16), (1, 1, 16)], 16, 1, 4, 2, 1),
    ("2D 8s+8v+4T 64 b4 K3 s1", 2, [(0, 1, 8), (1, 1, 8), (2, 1, 4)], 64, 4, 3, 1, 1),
    ("3D 8s+8v 8->16 b2 K2 s2", 3, [(0, 1, 8), (1, 1, 8)], 8, 2, 2, 2, 0),
]


def bench_case(d, fields, N, B, K, S, P, reps):
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), fields)
    ours = GeometricConvTransposed(ft, ft, K, stride=S, padding=P)
    dense = (torch.nn.ConvTranspose2d if d == 2 else torch.nn.ConvTranspose3d)(ft.size, ft.size, K, stride=S, padding=P)
    x = torch.randn(B, ft.size, *(N,) * d)
    gx = nn.GeometricTensor(x, ft)
    ours.eval(), dense.eval()
    ev = time_interleaved([lambda: eval_step(ours, gx), lambda: eval_step(dense, x)], reps, warmup=1)
    ours.train(), dense.train()
    tr = time_interleaved([lambda: train_step(ours, gx), lambda: train_step(dense, x)], reps, warmup=1)
    return ev, tr


def main(reps):
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={reps} (median ms per call)\n")
    head = f"{'case':30s} | {'eval ours':>9s} {'torch':>8s} {'ratio':>6s} | {'train ours':>10s} {'torch':>8s} {'ratio':>6s}"
    print(head)
    print("-" * len(head))
    for label, d, fields, N, B, K, S, P in CASES:
        ev, tr = bench_case(d, fields, N, B, K, S, P, reps)
        ms = lambda t: f"{1e3 * t:8.2f}"
        print(f"{label:30s} | {ms(ev[0]):>9s} {ms(ev[1])} {ev[0] / ev[1]:6.2f} | "
              f"{ms(tr[0]):>10s} {ms(tr[1])} {tr[0] / tr[1]:6.2f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    main(args.reps)
