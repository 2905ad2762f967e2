"""Build time and peak memory of the invariant-filter bases and tensor representations, against escnn.

Run:  .venv/bin/python comparisons/bench_bases.py [--timeout SECONDS] [--escnn-memory GB] [--no-escnn]

Every measurement runs in a fresh Python process (so every cache is cold) and measures the one call that builds
the object: wall time, and peak memory as the growth of the process's peak resident set (ru_maxrss) during the
call. escnn's side builds the same thing its own way where it can:
  - filters / kernels: escnn's R3Conv between the same FieldTypes (its kernel basis for those field types);
  - tensor_rep: escnn's ``Representation.tensor`` applied k-1 times to our vector representation (escnn's own
    decomposition of the tensor power, in the same natural kron basis). Both sides first build the vector
    representation, which evaluates escnn's irreps on every element once per group and process (O_h: ~0.13 s);
  - GeometricConv: R3Conv with the same in/out FieldTypes.
escnn's processes run under an address-space cap (--escnn-memory, default 6 GB) and a time limit, so a case escnn
cannot build reports "failed" instead of exhausting the shared machine. The last column is escnn's time / ours.
escnn stores parts of its bases on disk (joblib), so its times after the first run on a machine are partly warm.
Nothing here is a test: the tests never time anything.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# id: (label, ours, escnn or None)
CASES = {
    "order8": ("3D order 8, K=3 (k=4 -> k=4 kernels), sparse", ("sparse", 3, 3, 8, 1),
               ("conv", 3, [(4, 1, 1)], [(4, 1, 1)], 3)),
    "conv_order8": ("GeometricConv 3D k=4 -> k=4, K=3", ("geoconv", 3, [(4, 1, 1)], 3),
                    ("conv", 3, [(4, 1, 1)], [(4, 1, 1)], 3)),
    "conv_K15": ("GeometricConv 3D vector -> vector, K=15", ("geoconv", 3, [(1, 1, 1)], 15), None),
    "order2_K15": ("3D order 2, K=15 (vector -> vector)", ("dense", 3, 15, 2, 1),
                   ("conv", 3, [(1, 1, 1)], [(1, 1, 1)], 15)),
    "order6": ("3D order 6, K=3 (k=3 -> k=3 kernels)", ("dense", 3, 3, 6, 1), ("conv", 3, [(3, 1, 1)], [(3, 1, 1)], 3)),
    "order6_K5": ("3D order 6, K=5 (k=3 -> k=3 kernels)", ("dense", 3, 5, 6, 1), None),
    "order9_K1": ("3D order 9, K=1 (pseudo; bilinear maps)", ("dense", 3, 1, 9, -1), None),
    "conv_cold": ("cold GeometricConv 3D 8s+8v, K=3", ("geoconv", 3, [(0, 1, 8), (1, 1, 8)], 3),
                  ("conv", 3, [(0, 1, 8), (1, 1, 8)], [(0, 1, 8), (1, 1, 8)], 3)),
    "rep3_k4": ("tensor_rep O_h, k=4 (81)", ("rep", 3, 4, 1), ("tensor", 3, 4)),
    "rep3_k6": ("tensor_rep O_h, k=6 (729)", ("rep", 3, 6, 1), ("tensor", 3, 6)),
    "rep3_k7": ("tensor_rep O_h, k=7 (2187)", ("rep", 3, 7, -1), None),
    "rep2_k6": ("tensor_rep D4, k=6 (64)", ("rep", 2, 6, 1), ("tensor", 2, 6)),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(spec) -> dict:
    """Build one object in this (fresh) process; return seconds, peak MB growth and a short description."""
    import torch
    from escnn import nn

    import escnn_tensor as et
    from escnn_tensor.filters import invariant_filters_sparse

    torch.set_num_threads(1)
    kind, d = spec[0], spec[1]
    gs = et.hyperoctahedral_gspace(d)
    if kind == "conv":
        _, _, fin, fout, K = spec
        a, b = et.tensor_type(gs, fin), et.tensor_type(gs, fout)

        def build():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                conv = nn.R3Conv(a, b, K) if d == 3 else nn.R2Conv(a, b, K)
            return f"{conv.weights.numel()} weights"
    elif kind == "geoconv":
        from escnn_tensor.nn._conv import GeometricConv

        _, _, fields, K = spec
        ft = et.tensor_type(gs, fields)

        def build():
            conv = GeometricConv(ft, ft, K, padding=K // 2)
            return f"{conv.weights.numel()} weights"
    elif kind in ("sparse", "dense"):
        _, _, K, k, p = spec

        def build():
            if kind == "sparse":
                s = invariant_filters_sparse(gs, K, k, p)
                return f"{s.shape[0]} filters, {s._nnz()} nonzeros"
            f = et.invariant_filters(gs, K, k, p)
            return f"{f.shape[0]} filters, dense {f.numel() * 8 / 2**20:.0f} MB"
    elif kind == "rep":
        _, _, k, p = spec
        et.tensor_rep(gs, 1, 1)  # same set-up as escnn's side: the vector rep (and escnn's irreps evaluated once)

        def build():
            r = et.tensor_rep(gs, k, p)
            return f"{len(r.irreps)} irreps"
    elif kind == "tensor":
        _, _, k = spec
        vec = et.tensor_rep(gs, 1, 1)

        def build():
            r = vec
            for _ in range(k - 1):
                r = r.tensor(vec)
            return f"{len(r.irreps)} irreps"
    else:
        raise ValueError(kind)
    before = _peak_mb()
    t0 = time.perf_counter()
    info = build()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": max(0.0, _peak_mb() - before), "info": info}


def _limit_memory(gb: float):
    def set_limit():
        b = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (b, b))

    return set_limit


def measure(spec, timeout: float, memory_gb: float = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             preexec_fn=_limit_memory(memory_gb) if memory_gb else None)
    except subprocess.TimeoutExpired:
        return {"failed": f"> {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    last = (out.stderr.strip().splitlines() or ["?"])[-1]
    return {"failed": ("out of memory" if "memory" in last.lower() else last)[:40]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per escnn measurement (default 300)")
    ap.add_argument("--escnn-memory", type=float, default=6.0, help="address-space cap (GB) for escnn (default 6)")
    ap.add_argument("--no-escnn", action="store_true", help="measure escnn_tensor only")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    print("fresh process per measurement, 1 torch thread; time = the building call, MB = growth of peak RSS\n")
    head = (f"{'case':46s} | {'ours s':>8s} {'ours MB':>8s} | {'escnn s':>8s} {'escnn MB':>8s} | {'escnn/ours':>10s}"
            " | what")
    print(head)
    print("-" * len(head))
    for label, ours_spec, escnn_spec in CASES.values():
        ours = measure(ours_spec, timeout=600.0)
        theirs = None if (escnn_spec is None or args.no_escnn) else measure(escnn_spec, args.timeout, args.escnn_memory)
        o_s = f"{ours['seconds']:8.3f} {ours['peak_mb']:8.1f}" if "seconds" in ours else f"{ours['failed']:>17s}"
        if theirs is None:
            t_s, ratio, t_info = f"{'-':>8s} {'-':>8s}", f"{'-':>10s}", ""
        elif "seconds" in theirs:
            t_s = f"{theirs['seconds']:8.3f} {theirs['peak_mb']:8.1f}"
            ratio = f"{theirs['seconds'] / ours['seconds']:10.1f}" if "seconds" in ours else f"{'-':>10s}"
            t_info = f"; escnn: {theirs['info']}"
        else:
            t_s, ratio, t_info = f"{theirs['failed']:>17s}", f"{'-':>10s}", ""
        print(f"{label:46s} | {o_s} | {t_s} | {ratio} | ours: {ours.get('info', '')}{t_info}", flush=True)


if __name__ == "__main__":
    main()
