"""Two-stage GeometricConv (fixed invariant filters per input field + pointwise mixing) vs its dense path vs torch.

Run:  .venv/bin/python comparisons/bench_two_stage.py [--threads 1] [--reps 7] [--only TEXT]

For each layer (same in and out FieldType, padding K//2) it times, interleaved repetition by repetition, and prints
medians and ratios to the dense torch Conv2d/Conv3d of the same shape:
  eval  = forward under torch.no_grad() in eval mode (the dense path reuses its cached kernel);
  train = forward + backward in train mode, the input requiring a gradient (an inner layer of a network).
``frac`` is the two-stage multiply-adds over the dense ones (GeometricConv.two_stage_fraction) and ``auto`` the
method that ``method='auto'`` picks. The rule in escnn_tensor.nn._two_stage (3D and frac <= 0.2) was set from this
table (docs/speed.md). Nothing here is a test.
"""
from __future__ import annotations

import argparse

import torch

from _timing import time_interleaved  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn.nn import GeometricTensor
from escnn_tensor.nn import GeometricConv

CASES = [
    # label, d, fields (k, parity, multiplicity), spatial, batch, K
    ("3D 16v 16^3 b1 K3", 3, [(1, 1, 16)], 16, 1, 3),
    ("3D 16v 16^3 b2 K3", 3, [(1, 1, 16)], 16, 2, 3),
    ("3D 32v 16^3 b1 K3", 3, [(1, 1, 32)], 16, 1, 3),
    ("3D 64v 16^3 b1 K3", 3, [(1, 1, 64)], 16, 1, 3),
    ("3D 64v 16^3 b2 K3", 3, [(1, 1, 64)], 16, 2, 3),
    ("3D 128v 8^3 b1 K3", 3, [(1, 1, 128)], 8, 1, 3),
    ("3D 128v 8^3 b4 K3", 3, [(1, 1, 128)], 8, 4, 3),
    ("3D 32s+32v 16^3 b1 K3", 3, [(0, 1, 32), (1, 1, 32)], 16, 1, 3),
    ("3D 64v 12^3 b1 K5", 3, [(1, 1, 64)], 12, 1, 5),
    ("3D 16T 8^3 b1 K3", 3, [(2, 1, 16)], 8, 1, 3),
    ("2D 64v 64x64 b8 K3", 2, [(1, 1, 64)], 64, 8, 3),
    ("2D 128v 32x32 b4 K5", 2, [(1, 1, 128)], 32, 4, 5),
    ("3D 48v 16^3 b2 K3", 3, [(1, 1, 48)], 16, 2, 3),
    ("2D 64v 32x32 b8 K5", 2, [(1, 1, 64)], 32, 8, 5),
    ("2D 32s+32v 64x64 b4 K5", 2, [(0, 1, 32), (1, 1, 32)], 64, 4, 5),
    ("2D 16s+16v+8T 32x32 b8 K5", 2, [(0, 1, 16), (1, 1, 16), (2, 1, 8)], 32, 8, 5),
]


def bench(d, fields, N, B, K, reps):
    ft = et.tensor_type(et.hyperoctahedral_gspace(d), fields)
    dense = GeometricConv(ft, ft, K, padding=K // 2, method="dense")
    two = GeometricConv(ft, ft, K, padding=K // 2, method="two_stage")
    two.load_state_dict(dense.state_dict())
    auto = GeometricConv(ft, ft, K, padding=K // 2, initialize=False).method
    torch_conv = (torch.nn.Conv2d if d == 2 else torch.nn.Conv3d)(ft.size, ft.size, K, padding=K // 2)
    x = torch.randn(B, ft.size, *(N,) * d)
    gx = GeometricTensor(x, ft)
    xg = x.clone().requires_grad_(True)
    gxg = GeometricTensor(xg, ft)

    def ev(m, inp):
        def f():
            with torch.no_grad():
                m(inp)
        return f

    def tr(m, inp):
        def f():
            out = m(inp)
            (out.tensor if isinstance(out, GeometricTensor) else out).sum().backward()
        return f

    for m in (dense, two, torch_conv):
        m.eval()
    e = time_interleaved([ev(torch_conv, x), ev(dense, gx), ev(two, gx)], reps, warmup=1)
    for m in (dense, two, torch_conv):
        m.train()
    t = time_interleaved([tr(torch_conv, xg), tr(dense, gxg), tr(two, gxg)], reps, warmup=1)
    return two.two_stage_fraction, auto, e, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="", help="run only the cases whose label contains this text")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={args.reps}; ms = median per call; "
          f"ratios to torch's dense conv of the same shape\n")
    head = (f"{'case':26s} {'frac':>5s} {'auto':>9s} | {'eval Conv':>9s} {'dense/':>6s} {'2stage/':>7s} | "
            f"{'train Conv':>10s} {'dense/':>6s} {'2stage/':>7s}")
    print(head)
    print("-" * len(head))
    for label, d, fields, N, B, K in CASES:
        if args.only not in label:
            continue
        frac, auto, e, t = bench(d, fields, N, B, K, args.reps)
        print(f"{label:26s} {frac:5.2f} {auto:>9s} | {1e3 * e[0]:9.2f} {e[1] / e[0]:6.2f} {e[2] / e[0]:7.2f} | "
              f"{1e3 * t[0]:10.2f} {t[1] / t[0]:6.2f} {t[2] / t[0]:7.2f}", flush=True)


if __name__ == "__main__":
    main()
