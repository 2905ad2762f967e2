"""GeometricConv on escnn field types (regular / irreps, issue 17) against the tensor-type path at the same sizes.

Run:  .venv/bin/python comparisons/bench_any_types.py [--reps N]

For each case the two layers have the same number of input and output channels: one between escnn fields (regular
representations, or all irreps), one between tensor fields (escnn_tensor.tensor_type). Columns:
  - build: wall time and peak memory of the constructor (tracemalloc's peak, which sees numpy, plus the layer's
    parameters and buffers), each in a fresh Python process after the imports, the gspace and the FieldTypes (so the
    caches of bases are cold); ratio = escnn-fields / tensor-fields (the issue asks <= 2);
  - eval: median forward time in eval mode (the kernel is cached, so this is one conv2d/conv3d) over the time of
    torch's conv2d/conv3d with the same dense kernel, interleaved in one process (ratio near 1 = dense speed);
  - train: median forward + backward time in train mode (the kernel is expanded every call), escnn-fields over
    tensor-fields, interleaved.
Timings are noisy on a shared machine; the ratios are taken from interleaved runs. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "comparisons"))

CASES = {
    # name: (d, K, spatial, batch, escnn-fields spec, tensor-fields spec)
    "2D regular x4 -> regular x4 (32 ch), K=3": (2, 3, 64, 8, ("regular", 4, "regular", 4),
                                                  [(0, 1, 8), (1, 1, 4), (2, 1, 4)]),
    "2D irreps x4 -> irreps x4 (24 ch), K=5": (2, 5, 64, 8, ("irreps", 4, "irreps", 4),
                                               [(0, 1, 8), (1, 1, 4), (2, 1, 2)]),
    "3D regular x1 -> regular x1 (48 ch), K=3": (3, 3, 16, 2, ("regular", 1, "regular", 1),
                                                  [(0, 1, 6), (1, 1, 6), (2, 1, 2), (1, -1, 2)]),
}


def types(d, spec_escnn, spec_tensor):
    import escnn_tensor as et
    from escnn import nn

    gs = et.hyperoctahedral_gspace(d)
    G = gs.fibergroup

    def fields(kind, m):
        reps = [G.regular_representation] if kind == "regular" else list(G.irreps())
        return nn.FieldType(gs, reps * m)

    a = fields(spec_escnn[0], spec_escnn[1]), fields(spec_escnn[2], spec_escnn[3])
    t = et.tensor_type(gs, spec_tensor)
    assert a[0].size == t.size, (a[0].size, t.size)
    return gs, a, (t, t)


def build_child(case: str, which: str) -> None:
    """In a fresh process: build one layer, print {seconds, bytes} of the constructor (bytes: tracemalloc's peak,
    which counts numpy's arrays, plus the layer's parameters and buffers, which torch allocates outside it)."""
    import time
    import tracemalloc

    from escnn_tensor.nn import GeometricConv

    d, K, _, _, se, st = CASES[case]
    gs, a, t = types(d, se, st)
    pair = a if which == "escnn" else t
    tracemalloc.start()
    t0 = time.perf_counter()
    layer = GeometricConv(pair[0], pair[1], K, padding=K // 2, method="dense")
    seconds = time.perf_counter() - t0
    grown = tracemalloc.get_traced_memory()[1] + sum(
        t.numel() * t.element_size() for t in list(layer.parameters()) + list(layer.buffers()))
    tracemalloc.stop()
    print(json.dumps({"seconds": seconds, "bytes": grown, "weights": layer.weights.numel()}))


def build(case: str, which: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", case, which], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(case: str, reps: int) -> dict:
    import torch
    import torch.nn.functional as F
    from escnn.nn import GeometricTensor

    from _timing import eval_step, time_interleaved, train_step
    from escnn_tensor.nn import GeometricConv

    torch.manual_seed(0)
    d, K, N, B, se, st = CASES[case]
    gs, a, t = types(d, se, st)
    la = GeometricConv(a[0], a[1], K, padding=K // 2, method="dense")
    lt = GeometricConv(t[0], t[1], K, padding=K // 2, method="dense")
    x = torch.randn((B, a[0].size) + (N,) * d)
    xa, xt = GeometricTensor(x, a[0]), GeometricTensor(x, t[0])
    conv = F.conv2d if d == 2 else F.conv3d
    with torch.no_grad():
        ka, ba = la.expand_parameters()
    la.eval(), lt.eval()
    e_a, e_t, e_dense = time_interleaved(
        [lambda: eval_step(la, xa), lambda: eval_step(lt, xt), lambda: conv(x, ka, ba, 1, K // 2)], reps)
    la.train(), lt.train()
    tr_a, tr_t = time_interleaved([lambda: train_step(la, xa), lambda: train_step(lt, xt)], reps)
    return {"eval_escnn_fields": e_a, "eval_tensor_fields": e_t, "eval_dense": e_dense,
            "train_escnn_fields": tr_a, "train_tensor_fields": tr_t}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        build_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    print("| case | weights (escnn fields / tensor fields) | build s (ratio) | build MiB (ratio) | eval / dense conv "
          "| eval tensor / dense conv | train fwd+bwd ratio |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        ba, bt = build(case, "escnn"), build(case, "tensor")
        s = speed(case, args.reps)
        mib = lambda b: b / 2**20
        print(f"| {case} | {ba['weights']} / {bt['weights']} | {ba['seconds']:.2f} / {bt['seconds']:.2f} "
              f"({ba['seconds'] / bt['seconds']:.2f}) | {mib(ba['bytes']):.1f} / {mib(bt['bytes']):.1f} "
              f"({ba['bytes'] / max(bt['bytes'], 1):.2f}) | {s['eval_escnn_fields'] / s['eval_dense']:.2f} | "
              f"{s['eval_tensor_fields'] / s['eval_dense']:.2f} | "
              f"{s['train_escnn_fields'] / s['train_tensor_fields']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
