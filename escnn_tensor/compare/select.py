r"""Model selection on the validation split only.

The epoch is chosen inside each job (the trainer keeps the parameters of its best validation epoch); of the jobs of
one row (one per learning rate) :func:`choose` keeps the one with the lowest validation error. The test split is
used once, for the chosen model (:func:`~escnn_tensor.compare.metrics.evaluate`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

__all__ = ["choose"]


def choose(summaries: Sequence[Dict[str, Any]]) -> int:
    """The position of the lowest ``val_error`` among ``summaries`` (the first on a tie; a non-finite error is never
    chosen over a finite one; position 0 when none is finite)."""
    if not summaries:
        raise ValueError("choose needs at least one candidate")
    best = None
    for i, s in enumerate(summaries):
        v = s["val_error"]
        if not math.isfinite(v):
            continue
        if best is None or v < summaries[best]["val_error"]:
            best = i
    return 0 if best is None else best
