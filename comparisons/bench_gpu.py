"""GPU timings (called by scripts/gpu_check.sh): layers and one training step per model family on a CUDA device.

Run:  .venv/bin/python comparisons/bench_gpu.py [--reps 20] [--size 64] [--batch 16]

Prints, in float32 on ``cuda:0`` (medians of ``--reps`` interleaved repetitions, each ended by
``torch.cuda.synchronize()``, after warm-up):

1. forward + backward (gradients to the input and the weights) of ``GeometricConv`` against torch's ``Conv2d`` with
   the same channels and escnn's ``R2Conv`` between the same field types, kernel 3, ``--batch`` x ``--size``^2, for
   a few field types of D4 (mixed scalars, vectors, 2-tensors);
2. one training step (forward, MSE, backward, Adam) of ``ResNet`` (8 blocks, default options) of the geometric,
   steerable and plain families at equal hidden channels (geometric width 4 = 28 channels) and of the geometric
   family compiled with ``torch.compile`` (its compile time printed separately).

Without a CUDA device it refuses in one line (exit status 2). Finishes in about a minute on a recent GPU.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from escnn import nn as enn

from _timing import time_interleaved  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor.models import ResNet, count_parameters
from escnn_tensor.nn import GeometricConv

DEV = torch.device("cuda")


def synced(fn):
    def run():
        fn()
        torch.cuda.synchronize()

    return run


def conv_rows(size: int, batch: int, reps: int) -> None:
    gs = et.hyperoctahedral_gspace(2)
    cases = [
        ("8 s + 8 v + 4 T (60 ch)", [(0, 1, 8), (1, 1, 8), (2, 1, 4)]),
        ("16 s + 16 v + 8 T (120 ch)", [(0, 1, 16), (1, 1, 16), (2, 1, 8)]),
        ("32 vectors (64 ch)", [(1, 1, 32)]),
    ]
    print(f"GeometricConv vs Conv2d vs escnn R2Conv, K=3, padding 1, batch {batch}, {size}x{size}, float32, "
          f"forward + backward, median ms of {reps}")
    print(f"{'fields (in = out)':30s} | {'Geometric':>9s} {'Conv2d':>8s} {'R2Conv':>8s} | {'G/Conv2d':>8s} {'G/R2Conv':>8s}")
    for label, fields in cases:
        t = et.tensor_type(gs, fields)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layers = [GeometricConv(t, t, 3, padding=1), torch.nn.Conv2d(t.size, t.size, 3, padding=1),
                      enn.R2Conv(t, t, 3, padding=1)]
        layers = [m.to(DEV).train() for m in layers]
        x = torch.randn(batch, t.size, size, size, device=DEV)
        fns = []
        for m in layers:
            def f(m=m):
                u = x.detach().requires_grad_(True)
                inp = u if isinstance(m, torch.nn.Conv2d) else enn.GeometricTensor(u, t)
                out = m(inp)
                getattr(out, "tensor", out).sum().backward()

            fns.append(synced(f))
        ms = [1e3 * v for v in time_interleaved(fns, reps, warmup=3)]
        print(f"{label:30s} | {ms[0]:9.3f} {ms[1]:8.3f} {ms[2]:8.3f} | {ms[0] / ms[1]:8.2f} {ms[0] / ms[2]:8.2f}",
              flush=True)


def model_rows(size: int, batch: int, reps: int) -> None:
    gs = et.hyperoctahedral_gspace(2)
    tin, tout = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [
            ("geometric (gated, batch norm)", ResNet(tin, tout, "geometric", width=4, nonlinearity="gated")),
            ("steerable (ELU, batch norm)", ResNet(tin, tout, "steerable", level=28)),
            ("plain (ELU, batch norm)", ResNet(tin, tout, "plain", level=28)),
        ]
    x = torch.randn(batch, tin.size, size, size, device=DEV)
    y = torch.randn(batch, tout.size, size, size, device=DEV)
    steps = []
    for _, m in rows:
        m.to(DEV).train()
        steps.append(synced(make_step(m, m, x, y)))
    compiled_model = rows[0][1]
    compiled = torch.compile(compiled_model, fullgraph=True)
    t0 = time.perf_counter()
    step_c = synced(make_step(compiled_model, compiled, x, y))
    step_c()
    compile_s = time.perf_counter() - t0
    ms = [1e3 * v for v in time_interleaved(steps + [step_c], reps, warmup=3)]
    print(f"\nResNet (8 blocks) training step, 28 hidden channels per family, batch {batch}, {size}x{size}, float32, "
          f"median ms of {reps}")
    print(f"{'family':40s} | {'params':>8s} {'ms/step':>8s} | {'/plain':>6s}")
    for (label, m), v in zip(rows, ms):
        print(f"{label:40s} | {count_parameters(m):8d} {v:8.2f} | {v / ms[2]:6.2f}")
    print(f"{'geometric, torch.compile(fullgraph=True)':40s} | {count_parameters(rows[0][1]):8d} {ms[3]:8.2f} | "
          f"{ms[3] / ms[2]:6.2f}   (compile + first step {compile_s:.1f} s)", flush=True)


def make_step(model, call, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gx = enn.GeometricTensor(x, model.in_type)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(call(gx).tensor, y)
        loss.backward()
        opt.step()

    return step


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA device available to torch {torch.__version__}; run it on a GPU machine "
              f"(scripts/gpu_check.sh)", file=sys.stderr)
        sys.exit(2)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    conv_rows(args.size, args.batch, args.reps)
    model_rows(args.size, args.batch // 2, args.reps)
