r"""Statistics of result rows shared by the tables (:mod:`~escnn_tensor.compare.report`) and the figures
(:mod:`~escnn_tensor.compare.figures`), robust to diverged rows.

Rows (dicts of ``results.json``) are grouped by (task, model, label, n_train); a group's value is the mean (and
sample standard deviation) over its seeds **with a finite value**, with the count of those; a group with none is
reported as diverged by the callers, never as a number. ``None``, non-numbers, NaN and infinities count as
non-finite.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np

__all__ = ["value", "diverged", "mean_std", "groups", "tasks", "fmt", "efficiency_series", "rollout_series"]

Row = Dict[str, Any]


def value(x: Any) -> float:
    """``x`` as a float, or NaN for ``None`` / non-numbers / non-finite values."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def diverged(row: Row) -> bool:
    """``row["diverged"]`` or a non-finite ``test_error``."""
    return bool(row.get("diverged")) or not math.isfinite(value(row.get("test_error")))


def mean_std(values: Iterable[Any]) -> Tuple[float, float, int]:
    """Mean and sample std (0 for one value) of the finite ``values``, and how many there were; ``(nan, nan, 0)``
    if none."""
    v = np.array([x for x in (value(x) for x in values) if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def groups(rows: Sequence[Row]) -> "OrderedDict[Tuple[str, str, str, Any], List[Row]]":
    """Rows by (task, model, label, n_train), in order of appearance."""
    out: "OrderedDict[Tuple, List[Row]]" = OrderedDict()
    for r in rows:
        out.setdefault((r["task"], r["model"], r["label"], r.get("n_train")), []).append(r)
    return out


def tasks(rows: Sequence[Row]) -> List[str]:
    """The tasks of ``rows`` in order of appearance."""
    return list(OrderedDict.fromkeys(r["task"] for r in rows))


def fmt(mean: float, std: float, n: int, digits: int = 3) -> str:
    """``mean`` (one value), ``mean ± std`` (several) or ``"diverged"`` (``n == 0``)."""
    if n == 0:
        return "diverged"
    return f"{mean:.{digits}g}" if n == 1 else f"{mean:.{digits}g} ± {std:.2g}"


def efficiency_series(rows: Sequence[Row]) -> "OrderedDict[str, OrderedDict]":
    """``{task: {(model, label): [(n_train, mean, std, n_finite, n_rows), ...]}}`` of the test error, ascending in
    ``n_train``, for the tasks with rows at several ``n_train`` only."""
    out: "OrderedDict[str, OrderedDict]" = OrderedDict()
    for task in tasks(rows):
        rs = [r for r in rows if r["task"] == task]
        if len({r.get("n_train") for r in rs}) < 2:
            continue
        series: "OrderedDict[Tuple[str, str], List]" = OrderedDict()
        for (_, model, lab, n), grp in groups(rs).items():
            series.setdefault((model, lab), []).append((n, *mean_std(r.get("test_error") for r in grp), len(grp)))
        for v in series.values():
            v.sort(key=lambda e: (e[0] is None, e[0] or 0))
        out[task] = series
    return out


def rollout_series(rows: Sequence[Row]) -> "OrderedDict[str, OrderedDict]":
    """``{task: {group key: (means, stds, counts, n_rows)}}`` per rollout step (arrays of the longest rollout of
    the group; a step beyond a row's rollout does not count for it), over the rows with ``rollout_errors``."""
    out: "OrderedDict[str, OrderedDict]" = OrderedDict()
    for key, grp in groups([r for r in rows if isinstance(r.get("rollout_errors"), (list, tuple))]).items():
        length = max(len(r["rollout_errors"]) for r in grp)
        stats = [mean_std(r["rollout_errors"][t] for r in grp if t < len(r["rollout_errors"])) for t in range(length)]
        if stats:
            means, stds, counts = (np.array(v, dtype=float) for v in zip(*stats))
        else:
            means = stds = counts = np.zeros(0)
        out.setdefault(key[0], OrderedDict())[key] = (means, stds, counts, len(grp))
    return out
