"""Symmetric hidden 2-tensors against full ones: channels, weights, time and memory, of one 3D GeometricConv layer
(default) or of whole 3D geometric models (``--models``).

Run:  .venv/bin/python comparisons/bench_symmetric.py [--reps N]            (one layer)
      .venv/bin/python comparisons/bench_symmetric.py --models [--reps N]   (models, issue 17 item 4)

Layer: the hidden type of a geometric model on O_h with m fields of each of scalar, vector and 2-tensor (the default
hidden ladder of a task without pseudotensors), once with full 2-tensors (9 components) and once with symmetric ones
(6 components) or symmetric traceless ones (5); a GeometricConv hidden -> hidden, K=3, grid 24^3, batch 2, float32.
Printed: channels, weights, build seconds, train step (forward + backward) and eval forward medians (interleaved in one
process; read the ratios, the machine is shared) and the bytes of the activations of one layer's output.

Models: the geometric ResNet (escnn_tensor.models, vector -> 2-tensor on O_h, ``--width`` fields of each hidden type:
scalars, vectors, 2-tensors; ``--blocks`` residual blocks) with full, symmetric and symmetric traceless hidden
2-tensors at the same number of hidden fields, for the nonlinearities 'gated' and 'gated_quadratic'. Printed per
model: hidden channels, parameters, the median seconds of one training step (forward, MSE loss, backward; models timed
round-robin in one process, so the ratios are comparable on a loaded machine), and two memory figures of one step:
the bytes autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``, storages counted once:
deterministic, independent of the machine's load), and the rise of the peak resident set size (Linux ``VmHWM``,
reset through ``/proc/self/clear_refs``) over one first step, each model in a fresh process. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "comparisons"))

import torch  # noqa: E402
from escnn.nn import GeometricTensor  # noqa: E402

import escnn_tensor as et  # noqa: E402
from escnn_tensor.nn import GeometricConv  # noqa: E402


def run_layer(args) -> None:
    from _timing import eval_step, time_interleaved, train_step

    gs = et.hyperoctahedral_gspace(3)
    m = args.fields
    rows = {}
    for sym in (None, "symmetric", "symmetric_traceless"):
        t = et.tensor_type(gs, [(0, 1, m), (1, 1, m), (2, 1, m, sym)])
        t0 = time.perf_counter()
        layer = GeometricConv(t, t, 3, padding=1, method="dense")
        rows[sym] = {"type": t, "layer": layer, "build": time.perf_counter() - t0}
    x = {s: GeometricTensor(torch.randn((2, r["type"].size) + (args.grid,) * 3), r["type"]) for s, r in rows.items()}

    def tr(s):
        rows[s]["layer"].train()
        train_step(rows[s]["layer"], x[s])

    def ev(s):
        rows[s]["layer"].eval()
        eval_step(rows[s]["layer"], x[s])

    t_train = time_interleaved([lambda s=s: tr(s) for s in rows], args.reps)
    t_eval = time_interleaved([lambda s=s: ev(s) for s in rows], args.reps)
    print(f"O_h, {m} fields each of scalar, vector, 2-tensor; GeometricConv hidden -> hidden, K=3, grid {args.grid}^3, "
          f"batch 2, float32")
    print("| 2-tensors | channels | weights | build s | train step ms (ratio) | eval ms (ratio) | output MiB |")
    print("|---|---|---|---|---|---|---|")
    base_tr, base_ev = t_train[0], t_eval[0]
    for (s, r), tt, te in zip(rows.items(), t_train, t_eval):
        mib = 2 * r["type"].size * args.grid**3 * 4 / 2**20
        print(f"| {s or 'full'} | {r['type'].size} | {r['layer'].weights.numel()} | {r['build']:.2f} | "
              f"{1e3 * tt:.0f} ({tt / base_tr:.2f}) | {1e3 * te:.0f} ({te / base_ev:.2f}) | {mib:.1f} |")


VARIANTS = [(sym, nl) for nl in ("gated", "gated_quadratic") for sym in (None, "symmetric", "symmetric_traceless")]


def build_model(sym, nonlinearity, width, blocks):
    """The 3D geometric ResNet vector -> 2-tensor with hidden 2-tensors of symmetry ``sym`` (float32, seed 0)."""
    from escnn_tensor.models import MODELS

    gs = et.hyperoctahedral_gspace(3)
    t_in, t_out = et.tensor_type(gs, [(1, 1, 1)]), et.tensor_type(gs, [(2, 1, 1)])
    torch.manual_seed(0)
    return MODELS["resnet"](t_in, t_out, "geometric", width=width, num_blocks=blocks, hidden_symmetry=sym,
                            nonlinearity=nonlinearity)


def data(model, batch, grid):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((batch, model.in_type.size) + (grid,) * 3, generator=g)
    y = torch.randn((batch, model.out_type.size) + (grid,) * 3, generator=g)
    return GeometricTensor(x, model.in_type), y


def step(model, x, y) -> None:
    """One training step without the optimizer: forward, MSE loss, backward."""
    model.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x).tensor, y).backward()


def hidden_channels(model) -> int:
    convs = [m for m in model.modules() if isinstance(m, GeometricConv)]
    return max(c.out_type.size for c in convs)


def saved_bytes(model, x, y) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one step (each storage once)."""
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        seen[(st.data_ptr(), t.device)] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.mse_loss(model(x).tensor, y)
    loss.backward()
    return sum(seen.values())


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args) -> None:
    """In a fresh process: the rise of the peak RSS over one first training step of one model (JSON on stdout)."""
    sym, nl = VARIANTS[args.child]
    model = build_model(sym, nl, args.width, args.blocks)
    x, y = data(model, args.batch, args.grid)
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    base = _status_kib("VmRSS")
    step(model, x, y)
    print(json.dumps({"peak_rise_mib": (_status_kib("VmHWM") - base) / 1024}))


def run_models(args) -> None:
    from _timing import time_interleaved

    t0 = time.perf_counter()
    rows = []
    for i, (sym, nl) in enumerate(VARIANTS):
        tb = time.perf_counter()
        model = build_model(sym, nl, args.width, args.blocks)
        build = time.perf_counter() - tb
        x, y = data(model, args.batch, args.grid)
        rows.append({"sym": sym or "full", "nl": nl, "model": model, "x": x, "y": y, "build": build,
                     "channels": hidden_channels(model), "params": sum(p.numel() for p in model.parameters()),
                     "saved": saved_bytes(model, x, y) / 2**20})
    times = time_interleaved([lambda r=r: step(r["model"], r["x"], r["y"]) for r in rows], args.reps)
    for i, r in enumerate(rows):
        out = subprocess.run([sys.executable, __file__, "--child", str(i), "--width", str(args.width), "--blocks",
                              str(args.blocks), "--grid", str(args.grid), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        r["rss"] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rise_mib"]
    print(f"O_h geometric ResNet vector -> 2-tensor, {args.width} hidden fields each of scalar, vector, 2-tensor, "
          f"{args.blocks} blocks, grid {args.grid}^3, batch {args.batch}, float32, torch threads "
          f"{torch.get_num_threads()}; train step = forward + MSE + backward, medians of {args.reps} interleaved")
    print("| nonlinearity | hidden 2-tensors | hidden channels | parameters | build s | train step ms (ratio) | "
          "saved for backward MiB (ratio) | peak RSS rise MiB (ratio) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for i, (r, t) in enumerate(zip(rows, times)):
        base = rows[i - i % 3]
        tb = times[i - i % 3]
        print(f"| {r['nl']} | {r['sym']} | {r['channels']} | {r['params']:,} | {r['build']:.2f} | "
              f"{1e3 * t:.0f} ({t / tb:.2f}) | {r['saved']:.1f} ({r['saved'] / base['saved']:.2f}) | "
              f"{r['rss']:.0f} ({r['rss'] / base['rss']:.2f}) |")
    print(f"total {time.perf_counter() - t0:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fields", type=int, default=4, help="layer: fields of each hidden type")
    parser.add_argument("--grid", type=int, default=None, help="grid side (default: 24 for the layer, 16 for models)")
    parser.add_argument("--models", action="store_true", help="whole geometric models instead of one layer")
    parser.add_argument("--width", type=int, default=4, help="models: hidden fields of each type")
    parser.add_argument("--blocks", type=int, default=2, help="models: residual blocks")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grid is None:
        args.grid = 16 if (args.models or args.child is not None) else 24
    if args.child is not None:
        child(args)
    elif args.models:
        run_models(args)
    else:
        run_layer(args)


if __name__ == "__main__":
    main()
