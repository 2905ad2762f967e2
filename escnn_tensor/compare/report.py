"""The report of a comparison run: the results table (Markdown); the figures are in :mod:`.figures`."""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..groups import escnn_to_grid
from .summary import efficiency_series, fmt, rollout_series

__all__ = ["aggregate", "write_markdown", "efficiency_table", "rollout_table", "ROLLOUT_STEPS", "write_figures",
           "field_images"]

#: the steps of :func:`rollout_table`
ROLLOUT_STEPS = (1, 5, 10, 20)

_METRICS = ("test_error", "rotated_test_error", "equivariance_error", "seconds_per_epoch")


def _diverged(row: Dict[str, Any]) -> bool:
    """The row's ``diverged`` flag (rows written before it existed: a non-finite test error)."""
    if "diverged" in row:
        return bool(row["diverged"])
    return not all(math.isfinite(float(row[k])) for k in ("test_error", "rotated_test_error"))


def aggregate(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One entry per (task, model, label, n_train) in order of appearance: ``n`` seeds, ``n_train``, ``diverged``
    (how many of them diverged: a non-finite error), and ``mean`` / ``std`` (sample standard deviation; 0 for one
    seed) of every metric and of the parameter count over the seeds that did not diverge (``nan`` when all did)."""
    groups: "OrderedDict[Tuple, List[Dict]]" = OrderedDict()
    for r in rows:
        groups.setdefault((r["task"], r["model"], r["label"], r.get("n_train")), []).append(r)
    out = []
    for (task, model, lab, n_train), rs in groups.items():
        ok = [r for r in rs if not _diverged(r)]
        entry = {"task": task, "model": model, "label": lab, "n_train": n_train, "n": len(rs),
                 "diverged": len(rs) - len(ok)}
        for key in _METRICS + ("params",):
            v = np.array([float(r[key]) for r in (ok if key not in ("params", "seconds_per_epoch") else rs)])
            if len(v) == 0:
                entry[key] = (math.nan, math.nan)
            else:
                entry[key] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        out.append(entry)
    return out


def _sizes(n_train) -> str:
    """``8`` -> ``'8'``; ``[8, 16]`` -> ``'8, 16'``."""
    return ", ".join(str(n) for n in n_train) if isinstance(n_train, (list, tuple)) else str(n_train)


def _fmt(mean_std: Tuple[float, float], n: int, digits: int = 3) -> str:
    m, s = mean_std
    return f"{m:.{digits}g}" if n == 1 else f"{m:.{digits}g} ± {s:.2g}"


def _cell(e: Dict[str, Any], key: str, digits: int = 3) -> str:
    """A metric's cell: mean ± std over the seeds that did not diverge, and how many diverged."""
    n_ok = e["n"] - e["diverged"]
    if n_ok == 0:
        return "diverged" if e["n"] == 1 else f"diverged ({e['n']} of {e['n']})"
    text = _fmt(e[key], n_ok, digits)
    return text if not e["diverged"] else f"{text} ({e['diverged']} of {e['n']} diverged)"


def write_markdown(rows, path: Path, config, figures: Sequence[Path], seconds: float) -> str:
    """Write the results table to ``path`` (and return it)."""
    lines = [
        "# escnn_tensor comparison: geometric vs steerable vs plain CNNs",
        "",
        f"{_sizes(config.n_train)} training / {config.n_val} validation / {config.n_test} test samples per task, "
        f"{config.epochs} epochs, batch {config.batch_size}, {config.dtype}, learning rates {list(config.lrs)} "
        f"(chosen on validation), seeds {list(config.seeds)}; parameter budget "
        f"{config.params if config.params else 'none (default widths)'}; total {seconds / 60:.1f} min.",
        "",
        "Errors are relative squared errors over the whole test set, sum |pred - target|^2 / sum |target|^2; "
        "'rotated' is the worst over the group elements g of model(g x) against g target; 'equivariance' is "
        "max_g max|f(g x) - g f(x)| / max|f(x)| on the test inputs (float64). Mean ± std over seeds; a run whose "
        "errors are not finite is marked diverged and left out of the mean.",
        "",
        "| task | model | family | params | test error | rotated test error | equivariance error | s / epoch |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    several = {t for t in {r["task"] for r in rows} if len({r.get("n_train") for r in rows if r["task"] == t}) > 1}
    for e in aggregate(rows):
        family = e["label"] + (f" (n_train {e['n_train']})" if e["task"] in several else "")
        lines.append(
            f"| {e['task']} | {e['model']} | {family} | {e['params'][0]:,.0f} | {_cell(e, 'test_error')} | "
            f"{_cell(e, 'rotated_test_error')} | {_cell(e, 'equivariance_error', 2)} | "
            f"{_fmt(e['seconds_per_epoch'], e['n'], 2)} |"
        )
    efficiency = efficiency_table(rows)
    if efficiency:
        lines += ["", "Test error against the number of training samples (nested training sets, the same validation "
                  "and test samples; mean ± std over seeds):", "", efficiency.rstrip("\n")]
    rollout = rollout_table(rows)
    if rollout:
        lines += ["", "Rollout: error after each autoregressive step (mean ± std over seeds):", "", rollout.rstrip("\n")]
    if figures:
        lines += ["", "Figures:", ""] + [f"- [{f.name}]({f.name})" for f in figures]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


def efficiency_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The table of ``efficiency.png``: one line per (task, model, family), one column per ``n_train``, the test
    error mean ± std over the seeds with a finite error ("diverged" where none, "—" where not run). Empty string if
    no task has rows at several ``n_train``."""
    data = efficiency_series(rows)
    if not data:
        return ""
    sizes = sorted({p[0] for series in data.values() for ps in series.values() for p in ps})
    lines = ["| task | model | family | " + " | ".join(f"n_train {n}" for n in sizes) + " |",
             "|---|---|---|" + "---:|" * len(sizes)]
    for task, series in data.items():
        for (model, lab), points in series.items():
            at = {p[0]: p for p in points}
            cells = [fmt(at[n][1], at[n][2], at[n][3]) if n in at else "—" for n in sizes]
            lines.append(f"| {task} | {model} | {lab} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rollout_table(rows: Sequence[Dict[str, Any]], steps: Sequence[int] = ROLLOUT_STEPS) -> str:
    """The table of ``rollout.png``: the error after ``steps`` autoregressive steps (1-based; steps beyond every
    rollout are left out), mean ± std over the seeds with a finite error, "diverged" where none, "—" past a
    group's rollout. Empty string if no row has ``rollout_errors``."""
    data = rollout_series(rows)
    if not data:
        return ""
    longest = max(int(v[0].size) for series in data.values() for v in series.values())
    steps = [int(s) for s in steps if 1 <= int(s) <= longest]
    if not steps:
        return ""
    lines = ["| task | model | family | n_train | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|---|---|---|---:|" + "---:|" * len(steps)]
    for series in data.values():
        for (task, model, lab, n), (means, stds, counts, _) in series.items():
            cells = [fmt(means[s - 1], stds[s - 1], int(counts[s - 1])) if s <= means.size else "—" for s in steps]
            lines.append(f"| {task} | {model} | {lab} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The figures live in :mod:`escnn_tensor.compare.figures`; the old names stay importable from here.
from .figures import _COLORS, _colour_limit, _plot_errors, _plot_samples, field_images, write_figures  # noqa: E402,F401
