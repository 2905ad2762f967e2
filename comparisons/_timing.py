"""The one timing helper of the benchmark scripts (run them as ``python comparisons/bench_*.py``)."""
from __future__ import annotations

import statistics
import time
from typing import Callable, List, Sequence


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
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
