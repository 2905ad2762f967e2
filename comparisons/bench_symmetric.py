"""Symmetric hidden 2-tensors against full ones: channels, weights, time and memory of one 3D GeometricConv layer.

Run:  .venv/bin/python comparisons/bench_symmetric.py [--reps N]

Hidden type of a geometric model on O_h with m fields of each of scalar, vector and 2-tensor (the default hidden
ladder of a task without pseudotensors), once with full 2-tensors (9 components) and once with symmetric ones
(6 components) or symmetric traceless ones (5); a GeometricConv hidden -> hidden, K=3, grid 24^3, batch 2, float32.
Printed: channels, weights, build seconds, train step (forward + backward) and eval forward medians (interleaved in one
process; read the ratios, the machine is shared) and the bytes of the activations of one layer's output.
Nothing here is a test.
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    from _timing import eval_step, time_interleaved, train_step

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--grid", type=int, default=24)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
