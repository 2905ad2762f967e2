"""Benchmark one training step of the model families (geometric, steerable, plain) and of ginjax's own ResNet.

Run:  .venv/bin/python comparisons/bench_models.py [--threads 1] [--reps 7] [--size 64] [--batch 8] [--width 16]
          [--no-ginjax | --ginjax-result FILE] [--ginjax-reps 2] [--unet [--unet-width 2] [--no-resnet]] [--profile]

One step = forward, MSE loss, backward, Adam step, on a scalar -> vector task (gravity's types), 2D ``size``^2,
``batch`` samples. Architectures: ``ResNet`` (8 pre-activation blocks of 2 convolutions, kernel 3; the default
options of :class:`escnn_tensor.models.ResNet`) and with ``--unet`` also ``UNet`` (4 poolings; ``--unet-width``
fields per type at the finest level, doubling per level). Every family has the same number
of hidden channels: geometric ``width`` fields of each hidden type (scalars, vectors, 2-tensors: 7 ``width``
channels), steerable and plain that many channels (``level`` = 7 ``width``: regular fields of D4 plus trivial
fields for the remainder).

Rows (all timed interleaved, repetition by repetition, medians; the ratios are printed side by side):
  geometric (gated, batch norm)          the family's default layers
  geometric (vector neuron, no norm)     the layers of ginjax's ResNet (ginjax's LayerNorm refuses 2-tensors)
  steerable, plain                       their defaults (ELU, batch norm)
  plain (no norm)                        as the row above it, for the ginjax-like geometric row
  ginjax ResNet                          ginjax's equivariant ResNet of the same width and hidden orders (VN
                                         nonlinearity, no norm), run in .venv-ginjax through
                                         comparisons/ginjax_resnet_step.py (1 thread, jitted; compile excluded); it
                                         runs after the torch rows, not interleaved with them, so the geometric
                                         rows are timed again right after it and ginjax is compared with the
                                         mean of both timings (one run at width 16, 64x64, batch 8 took 2.5-6 min
                                         to compile and 2.5-5 min per step on a loaded 2-core machine). Its JSON
                                         line is written to
                                         --ginjax-save FILE; --ginjax-result FILE reuses such a line instead of
                                         running ginjax again (the ratio then mixes two runs: say so).
With ``--small``: the small-model comparison of docs/speed_layers.md instead (issue 22's acceptance case): ResNet
with ``--blocks`` blocks (default 2) at ``--size`` (use 16), ``--batch`` 8, geometric width ``--width`` (use 4: 28
hidden channels) against the plain family at equal hidden channels and at equal parameters, eager and (with
``--compile``) under ``torch.compile(fullgraph=True)``; ``--clock cpu`` times each call by the thread's CPU time
(``time.thread_time``, 1 thread only) instead of wall time, which on a shared machine leaves out the time the process
waits for a core.
With ``--small`` also: the geometric model with its fused norm -> gate pairs in their PyTorch formulation
(``ESCNN_TENSOR_NATIVE=0``, i.e. without the C kernels of ``escnn_tensor/nn/csrc/``), and the geometric
family's default nonlinearity (``gated_quadratic``) at the same width (with ``--attribute`` also that model with
its quadratic terms removed: each ``GatedQuadratic`` its gate alone).
With ``--attribute`` (with ``--small``): rows of the geometric model with its norm -> gate pairs unfused, with torch
``BatchNorm2d`` + ``ELU`` in their place, and with torch ``Conv2d`` for its hidden convolutions (timing only).
With ``--breakdown``: the share of the geometric ResNet steps taken by each kind of layer (each timed alone at the
hidden shape, times its count); with ``--profile``: torch.profiler tables of the geometric and plain steps.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import warnings
from pathlib import Path

import torch
from escnn import nn as enn

from _timing import time_interleaved  # noqa: E402  (comparisons/ is on sys.path when run as a script)
import escnn_tensor as et
from escnn_tensor import _native
from escnn_tensor.models import ResNet, UNet, count_parameters

ROOT = Path(__file__).resolve().parents[1]
GINJAX_PYTHON = ROOT / ".venv-ginjax" / "bin" / "python"


def make_step(model, x, y):
    """A closure doing one training step (forward, MSE, backward, Adam step) of ``model`` on ``(x, y)``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gx = enn.GeometricTensor(x, model.in_type)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(gx).tensor
        loss = torch.nn.functional.mse_loss(out, y)
        loss.backward()
        opt.step()

    return step


def without_native(step):
    """``step`` run with the native kernels off (the PyTorch formulation of every layer that has a C kernel)."""
    def run():
        with _native.disabled():
            step()

    return run


def build_rows(arch, width, scale=1, d=2):
    """The models of every row; ``scale``: how many times the widest level is wider than the finest (the UNet's
    2^num_downsamples), since ``level`` counts channels at the widest level and ``width`` at the finest."""
    gs = et.hyperoctahedral_gspace(d)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    channels = 7 * width * scale  # width x (1 + 2 + 4) components of scalars, vectors, 2-tensors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        rows = [
            ("geometric (gated, batch norm)",
             arch(in_type, out_type, "geometric", width=width, norm="batch", nonlinearity="gated")),
            ("geometric (vector neuron, no norm)",
             arch(in_type, out_type, "geometric", width=width, nonlinearity="vector_neuron", norm=None)),
            ("steerable (ELU, batch norm)", arch(in_type, out_type, "steerable", level=channels, norm="batch")),
            ("plain (ELU, batch norm)", arch(in_type, out_type, "plain", level=channels, norm="batch")),
            ("plain (ELU, no norm)", arch(in_type, out_type, "plain", level=channels, norm=None)),
        ]
    return in_type, out_type, rows


def ginjax_step(width, size, batch, reps, num_blocks=8):
    """Seconds per training step of ginjax's ResNet (list of ``reps`` timings) and its compile time, or None."""
    if not GINJAX_PYTHON.exists():
        print(f"(ginjax environment {GINJAX_PYTHON} missing: ginjax row skipped)")
        return None
    cfg = {"width": width, "size": size, "batch": batch, "num_blocks": num_blocks, "orders": [0, 1, 2], "reps": reps}
    res = subprocess.run([str(GINJAX_PYTHON), str(ROOT / "comparisons" / "ginjax_resnet_step.py"), json.dumps(cfg)],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                              if not k.startswith("PYTHON")})
    if res.returncode != 0:
        print("ginjax run failed:\n" + res.stderr[-2000:])
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def profile_step(step, reps=3, row_limit=18):
    """Self-CPU time of ``step`` by torch operator (top ``row_limit``), the total, and the number of profiler events
    (torch operators, autograd nodes) per step."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            step()
    averages = prof.key_averages()
    print(f"profiler events per step: {sum(e.count for e in averages) / reps:.0f}")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=row_limit))


def breakdown(model, step, x, reps):
    """Where a ResNet training step goes: each kind of layer of ``model`` timed alone (forward + backward at the
    hidden shape), interleaved with the whole ``step`` so that both see the same machine load, times the number of
    such layers in the model; the rest (residual adds, the first and last convolutions' smaller types, loss,
    optimiser, Python) is the step minus their sum. Returns ``(labels, layer times, step time)``."""
    kinds = {}
    for mod in model.modules():
        inner = getattr(mod, "module", None)
        if inner is None or not hasattr(inner, "in_type"):
            continue
        key = type(inner).__name__
        if key in ("GeometricConv",) and inner.in_type != inner.out_type:
            continue  # encoder/decoder ends: counted in the rest
        kinds.setdefault(key, [inner, 0])[1] += 1
    fns, labels = [], []
    for key, (inner, count) in kinds.items():
        t = torch.randn(x.shape[0], inner.in_type.size, *x.shape[2:])

        def f(inner=inner, t=t):
            u = t.detach().requires_grad_(True)
            inner(enn.GeometricTensor(u, inner.in_type)).tensor.sum().backward()

        fns.append(f)
        labels.append((key, count))
    times = time_interleaved([step] + fns, reps, warmup=2)
    return labels, times[1:], times[0]


def run_small(args):
    """The small-model rows (see the module docstring, ``--small``): geometric vs plain at equal channels and equal
    parameters, eager and compiled, interleaved; ratios to the plain rows printed side by side."""
    gs = et.hyperoctahedral_gspace(2)
    in_type, out_type = et.tensor_type(gs, [(0, 1, 1)]), et.tensor_type(gs, [(1, 1, 1)])
    channels = 7 * args.width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        geo = ResNet(in_type, out_type, "geometric", width=args.width, norm="batch", num_blocks=args.blocks,
                     nonlinearity="gated")
        plain_c = ResNet(in_type, out_type, "plain", level=channels, norm="batch", num_blocks=args.blocks)
        plain_p = ResNet(in_type, out_type, "plain", params=count_parameters(geo), norm="batch",
                         num_blocks=args.blocks)
        gq = ResNet(in_type, out_type, "geometric", width=args.width, norm="batch", num_blocks=args.blocks,
                    nonlinearity="gated_quadratic")
    rows = [("geometric (gated, batch norm)", geo), ("plain, equal channels", plain_c),
            ("plain, equal parameters", plain_p)]
    x = torch.randn(args.batch, in_type.size, args.size, args.size)
    y = torch.randn(args.batch, out_type.size, args.size, args.size)
    if args.attribute:
        rows += attribution_rows(geo)
    steps = [make_step(m.train(), x, y) for _, m in rows]
    # the same model with its fused pairs in their PyTorch formulation (ESCNN_TENSOR_NATIVE=0 for its steps), and
    # the family's default nonlinearity (its norms and GatedQuadratic layers are not fused)
    import copy

    rows.append(("geometric (gated), its pairs in PyTorch (native off)", copy.deepcopy(geo)))
    steps.append(without_native(make_step(rows[-1][1].train(), x, y)))
    rows.append(("geometric (gated_quadratic, the default), batch norm", gq))
    steps.append(make_step(gq.train(), x, y))
    if args.attribute:  # the default's quadratic terms removed: its GatedQuadratic layers are their gates alone
        linear = copy.deepcopy(gq)
        for m in linear.modules():
            if type(m).__name__ == "GatedQuadratic":
                m.product = m.probe = m.squash = None
        rows.append(("default, its quadratic terms removed (gates alone)", linear))
        steps.append(make_step(linear.train(), x, y))
    labels = [label for label, _ in rows]
    n_eager = len(rows)
    if args.compile:
        import copy
        import time

        for label, m in rows[:2]:
            mc = copy.deepcopy(m).train()
            compiled = torch.compile(mc, fullgraph=True)
            opt = torch.optim.Adam(mc.parameters(), lr=1e-3)
            gx = enn.GeometricTensor(x, mc.in_type)

            def step(compiled=compiled, opt=opt, gx=gx):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(compiled(gx).tensor, y).backward()
                opt.step()

            t0 = time.perf_counter()
            step()
            print(f"(compiled {label}: compile + first step {time.perf_counter() - t0:.0f} s)", flush=True)
            steps.append(step)
            labels.append(label + ", compiled")
    t = time_interleaved(steps, args.reps, warmup=2)
    clock = "thread CPU time" if args.clock == "cpu" else "wall time"
    print(f"ResNet, {args.blocks} blocks, {args.size}x{args.size}, batch {args.batch}, 1 thread; median ms per training "
          f"step ({clock}) of {args.reps} interleaved repetitions")
    print(f"geometric hidden: {geo.hidden} ({channels} channels); plain equal channels: {plain_c.hidden}; "
          f"plain equal parameters: {plain_p.hidden}")
    print(f"{'row':58s} | {'params':>7s} {'ms/step':>8s} | {'geo / row':>9s} | {'row / plain eq. ch.':>19s}")
    models = [m for _, m in rows] + [m for _, m in rows[:2]][: len(steps) - n_eager]
    for i, (label, m, ti) in enumerate(zip(labels, models, t)):
        geo_t, plain_t = (t[n_eager], t[n_eager + 1]) if i >= n_eager else (t[0], t[1])
        print(f"{label:58s} | {count_parameters(m):7d} {1e3 * ti:8.2f} | {geo_t / ti:9.2f} | {ti / plain_t:19.2f}",
              flush=True)
    if args.profile:
        for label, step in zip(labels[:2], steps[:2]):
            print(f"\nprofile of {label}:")
            profile_step(step, reps=5, row_limit=12)


class _TorchLayer(torch.nn.Module):
    """A torch layer on plain tensors, in place of an escnn_tensor ``OnTensors`` layer (``--attribute`` rows)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, t):
        return self.layer(t)


def attribution_rows(geo):
    """``--attribute``: copies of the geometric model in which one kind of layer is done otherwise, to say where its
    extra time goes: its norm -> gate pairs run layer by layer (``Chain`` -> ``Sequential``: without the fused
    node), its norms and gates replaced by torch's ``BatchNorm2d`` and ``ELU`` on the same channels, its hidden
    convolutions replaced by ``Conv2d`` (not equivariant: timing only)."""
    import copy

    from escnn_tensor.models._families import Chain
    from escnn_tensor.nn import GatedNonLinearity, GeometricConv, TensorBatchNorm

    def swapped(model, kind, make, keep=lambda layer: True):
        m = copy.deepcopy(model)
        for seq in m.modules():
            if isinstance(seq, torch.nn.Sequential):
                for name, child in list(seq._modules.items()):
                    layer = getattr(child, "module", None)
                    if isinstance(layer, kind) and keep(layer):
                        seq._modules[name] = _TorchLayer(make(layer))
        return m

    layered = copy.deepcopy(geo)
    for seq in layered.modules():
        if type(seq) is Chain:
            seq.__class__ = torch.nn.Sequential
    pointwise = swapped(geo, TensorBatchNorm, lambda layer: torch.nn.BatchNorm2d(layer.in_type.size))
    pointwise = swapped(pointwise, GatedNonLinearity, lambda layer: torch.nn.ELU())
    convs = swapped(geo, GeometricConv,
                    lambda layer: torch.nn.Conv2d(layer.in_type.size, layer.out_type.size, layer.kernel_size,
                                                  padding=layer.padding, padding_mode=layer.padding_mode),
                    keep=lambda layer: layer.in_type == layer.out_type)
    return [("geometric, norm -> gate pairs layer by layer (unfused)", layered),
            ("geometric, torch BatchNorm2d + ELU for its norms and gates", pointwise),
            ("geometric, torch Conv2d for its hidden convolutions", convs)]


def run(args):
    archs = ([] if args.no_resnet else [("ResNet", ResNet)]) + ([("UNet", UNet)] if args.unet else [])
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, reps={args.reps}, 2D {args.size}x{args.size},"
          f" batch {args.batch}; median ms per training step\n")
    for name, arch in archs:
        width = args.width if name == "ResNet" else args.unet_width
        if name == "ResNet":
            print(f"ResNet: width {width} ({7 * width} hidden channels in every family)")
        else:
            print(f"UNet: width {width} at the finest level ({7 * width} channels), x2 per level down to {width * 16}"
                  f" ({7 * width * 16} channels) at the coarsest")
        in_type, out_type, rows = build_rows(arch, width, 1 if name == "ResNet" else 16)
        x = torch.randn(args.batch, in_type.size, args.size, args.size)
        y = torch.randn(args.batch, out_type.size, args.size, args.size)
        steps = [make_step(m.train(), x, y) for _, m in rows]
        t = time_interleaved(steps, args.reps, warmup=2)
        plain_bn, plain_nn = t[3], t[4]
        print(f"{name:6s} {'row':38s} | {'params':>8s} {'ms/step':>9s} | {'/plain':>7s}")
        for (label, m), ti in zip(rows, t):
            ref = plain_nn if "no norm" in label else plain_bn
            print(f"{'':6s} {label:38s} | {count_parameters(m):8d} {1e3 * ti:9.1f} | {ti / ref:7.2f}", flush=True)
        if name == "ResNet" and not args.no_ginjax:
            if args.ginjax_result:
                g = json.loads(Path(args.ginjax_result).read_text().strip().splitlines()[-1])
                print(f"(ginjax row from {args.ginjax_result}, a separate run)")
            else:
                g = ginjax_step(args.width, args.size, args.batch, args.ginjax_reps)
                if g is not None and args.ginjax_save:
                    Path(args.ginjax_save).write_text(json.dumps(g) + "\n")
            if g is not None and not args.ginjax_result:
                # the machine load drifts over the ~15 min of the ginjax run: time the geometric rows again right
                # after it and compare ginjax with the mean of the timings before and after
                after = time_interleaved(steps[:2] + steps[3:5], args.reps, warmup=2)
                print(f"{'':6s} (geometric rows re-timed after ginjax: {1e3 * after[0]:.1f}, {1e3 * after[1]:.1f} ms; "
                      f"plain {1e3 * after[2]:.1f}, {1e3 * after[3]:.1f} ms)")
                t = list(t)
                t[0], t[1] = (t[0] + after[0]) / 2, (t[1] + after[1]) / 2
            if g is not None:
                tg = statistics.median(g["step_s"])
                print(f"{'':6s} {'ginjax ResNet (VN, no norm)':38s} | {g['params']:8d} {1e3 * tg:9.1f} | "
                      f"{tg / plain_nn:7.2f}   (compile {g['compile_s']:.1f} s, {len(g['step_s'])} steps)")
                print(f"{'':6s} ginjax / geometric (vector neuron, no norm): {tg / t[1]:.1f}x;  "
                      f"ginjax / geometric (gated, batch norm): {tg / t[0]:.1f}x")
        print(flush=True)
        if args.breakdown and name == "ResNet":
            for row in (0, 1):
                labels, tk, ts = breakdown(rows[row][1], steps[row], x, args.reps)
                parts = [f"{key} {count} x {1e3 * v:.1f} ms = {100 * count * v / ts:.0f}%"
                         for (key, count), v in zip(labels, tk)]
                rest = ts - sum(count * v for (_, count), v in zip(labels, tk))
                print(f"breakdown of {rows[row][0]} ({1e3 * ts:.0f} ms in this run): " + "; ".join(parts)
                      + f"; rest {100 * rest / ts:.0f}%", flush=True)
            print()
        if args.profile:
            print(f"profile of {name} geometric (gated, batch norm):")
            profile_step(steps[0])
            print(f"profile of {name} plain (ELU, batch norm):")
            profile_step(steps[3])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--no-ginjax", action="store_true")
    ap.add_argument("--ginjax-reps", type=int, default=2)
    ap.add_argument("--ginjax-result", default=None, help="reuse ginjax's JSON line from this file")
    ap.add_argument("--ginjax-save", default=None, help="write ginjax's JSON line to this file")
    ap.add_argument("--unet", action="store_true", help="also time UNet (4 poolings), no ginjax row")
    ap.add_argument("--no-resnet", action="store_true", help="skip the ResNet rows (with --unet)")
    ap.add_argument("--unet-width", type=int, default=2, help="UNet width at the finest level (default 2)")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler tables of the geometric and plain steps (also with --small)")
    ap.add_argument("--breakdown", action="store_true", help="share of the geometric ResNet steps per layer kind")
    ap.add_argument("--small", action="store_true", help="the small-model comparison (equal channels and parameters)")
    ap.add_argument("--blocks", type=int, default=2, help="ResNet blocks with --small (default 2)")
    ap.add_argument("--compile", action="store_true", help="with --small: also torch.compile(fullgraph=True) rows")
    ap.add_argument("--attribute", action="store_true",
                    help="with --small: also the geometric model with its norm -> gate pairs unfused, with torch "
                         "BatchNorm2d + ELU for them, and with torch Conv2d for its hidden convolutions")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time by wall clock (default) or by the thread's CPU time (1 thread only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if args.threads != 1:
            ap.error("--clock cpu needs --threads 1 (the CPU time of the calling thread only)")
        import _timing
        _timing.CLOCK = __import__("time").thread_time
    run_small(args) if args.small else run(args)
