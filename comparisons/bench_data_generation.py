"""Seconds per generated sample of every 2D task at its quick and default sizes, interleaved in one run (so the
ratios hold on a loaded machine): ``python comparisons/bench_data_generation.py [--samples 4] [--reps 3]``.

Prints one line per (task, size): the median seconds per sample over ``--reps`` interleaved calls of
``task.make(samples, size, seed)`` and its ratio to navier-stokes at the same size (the cheapest solver-based
task). Generation is single-threaded unless ``OMP_NUM_THREADS`` says otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import time_interleaved  # noqa: E402

from escnn_tensor.data import TASKS  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tasks", nargs="*", default=[n for n, t in TASKS.items() if t.d == 2])
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.samples} samples per call")
    for which in ("quick", "default"):
        names = list(args.tasks)
        sizes = {n: getattr(TASKS[n], f"{which}_size") for n in names}
        fns = [lambda n=n: TASKS[n].make(args.samples, sizes[n], seed=0) for n in names]
        times = time_interleaved(fns, args.reps, warmup=0)
        ref = dict(zip(names, times)).get("navier-stokes")
        for n, t in zip(names, times):
            ratio = f"{t / ref:7.1f}x navier-stokes" if ref else ""
            print(f"{which:7s} size {sizes[n]:3d}  {n:16s} {t / args.samples:8.4f} s/sample  {ratio}")


if __name__ == "__main__":
    main()
