"""The one timing helper of the benchmark scripts (run them as ``python comparisons/bench_*.py``)."""
from __future__ import annotations

import statistics
import time
from typing import Callable, List, Sequence

#: the clock of :func:`time_interleaved` (``time.thread_time`` to count only this thread's CPU time)
CLOCK = time.perf_counter


def time_interleaved(fns: Sequence[Callable[[], object]], reps: int, warmup: int = 1) -> List[float]:
    """Median seconds per call of each of ``fns``, called round-robin ``reps`` times after ``warmup`` calls each.

    Interleaving makes every function see the same machine load, so ratios between them are meaningful even on a
    shared machine where absolute times drift.
    """
    for f in fns:
        for _ in range(warmup):
            f()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, f in enumerate(fns):
            t0 = CLOCK()
            f()
            times[i].append(CLOCK() - t0)
    return [statistics.median(t) for t in times]


def eval_step(layer, x):
    """One forward without gradients (eval-mode timing)."""
    import torch

    with torch.no_grad():
        return layer(x)


def train_step(layer, x) -> None:
    """One forward and a backward of the output's sum; ``layer`` may return a tensor or an escnn GeometricTensor."""
    out = layer(x)
    t = getattr(out, "tensor", out)
    t.sum().backward()
