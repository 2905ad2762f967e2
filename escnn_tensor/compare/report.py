"""The report of a comparison run: the results table (Markdown); the figures are in :mod:`.figures`."""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..groups import escnn_to_grid

__all__ = ["aggregate", "write_markdown", "write_figures", "field_images"]

_METRICS = ("test_error", "rotated_test_error", "equivariance_error", "seconds_per_epoch")


def aggregate(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One entry per (task, model, label) in order of appearance: ``n`` seeds, and ``mean`` / ``std`` (sample
    standard deviation; 0 for one seed) of every metric and of the parameter count."""
    groups: "OrderedDict[Tuple, List[Dict]]" = OrderedDict()
    for r in rows:
        groups.setdefault((r["task"], r["model"], r["label"]), []).append(r)
    out = []
    for (task, model, lab), rs in groups.items():
        entry = {"task": task, "model": model, "label": lab, "n": len(rs)}
        for key in _METRICS + ("params",):
            v = np.array([float(r[key]) for r in rs])
            entry[key] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        out.append(entry)
    return out


def _fmt(mean_std: Tuple[float, float], n: int, digits: int = 3) -> str:
    m, s = mean_std
    return f"{m:.{digits}g}" if n == 1 else f"{m:.{digits}g} ± {s:.2g}"


def write_markdown(rows, path: Path, config, figures: Sequence[Path], seconds: float) -> str:
    """Write the results table to ``path`` (and return it)."""
    lines = [
        "# escnn_tensor comparison: geometric vs steerable vs plain CNNs",
        "",
        f"{config.n_train} training / {config.n_val} validation / {config.n_test} test samples per task, "
        f"{config.epochs} epochs, batch {config.batch_size}, {config.dtype}, learning rates {list(config.lrs)} "
        f"(chosen on validation), seeds {list(config.seeds)}; parameter budget "
        f"{config.params if config.params else 'none (default widths)'}; total {seconds / 60:.1f} min.",
        "",
        "Errors are relative squared errors over the whole test set, sum |pred - target|^2 / sum |target|^2; "
        "'rotated' is the worst over the group elements g of model(g x) against g target; 'equivariance' is "
        "max_g max|f(g x) - g f(x)| / max|f(x)| on the test inputs (float64). Mean ± std over seeds.",
        "",
        "| task | model | family | params | test error | rotated test error | equivariance error | s / epoch |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for e in aggregate(rows):
        n = e["n"]
        lines.append(
            f"| {e['task']} | {e['model']} | {e['label']} | {e['params'][0]:,.0f} | {_fmt(e['test_error'], n)} | "
            f"{_fmt(e['rotated_test_error'], n)} | {_fmt(e['equivariance_error'], n, 2)} | "
            f"{_fmt(e['seconds_per_epoch'], n, 2)} |"
        )
    if figures:
        lines += ["", "Figures:", ""] + [f"- [{f.name}]({f.name})" for f in figures]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


# The figures live in :mod:`escnn_tensor.compare.figures`; the old names stay importable from here.
from .figures import _COLORS, _colour_limit, _plot_errors, _plot_samples, field_images, write_figures  # noqa: E402,F401
