"""The report of a comparison run: the results table (Markdown) and the figures."""
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


def field_images(tensor: torch.Tensor, signature: Sequence[Tuple[int, int]], d: int) -> List[Tuple[np.ndarray, int, int]]:
    """Split one sample ``(C, N..)`` (escnn layout) into its fields in grid layout: ``[(array, parity, k)]``.

    Each array has shape ``(N,)*d + (d,)*k`` (array axis ``i`` along ``+x_i``), as :func:`escnn_tensor.plot_image`
    takes it.
    """
    out, start = [], 0
    for k, p in signature:
        block = tensor[start : start + d**k]
        start += d**k
        arr = block.movedim(0, -1).reshape(block.shape[1:] + (d,) * k)
        out.append((escnn_to_grid(arr, d, n_trailing=k).detach().cpu().double().numpy(), p, k))
    return out


def write_figures(rows: List[Dict[str, Any]], out: Path) -> List[Path]:
    """``errors.png`` and one ``samples_<task>.png`` per task; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = [_plot_errors(rows, Path(out) / "errors.png", plt)]
    for task in OrderedDict.fromkeys(r["task"] for r in rows):
        paths.append(_plot_samples(rows, task, Path(out), plt))
    return paths


def _plot_errors(rows, path: Path, plt) -> Path:
    entries = aggregate(rows)
    tasks = list(OrderedDict.fromkeys(e["task"] for e in entries))
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 + 3.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        es = [e for e in entries if e["task"] == task]
        x = np.arange(len(es))
        for off, key, hatch, name in ((-0.2, "test_error", None, "test"), (0.2, "rotated_test_error", "//", "rotated test (worst g)")):
            means = [e[key][0] for e in es]
            stds = [e[key][1] for e in es]
            ax.bar(x + off, means, 0.4, yerr=stds, hatch=hatch, label=name,
                   color=[_COLORS.get(e["label"], "tab:gray") for e in es], edgecolor="black", linewidth=0.5)
        ax.set_yscale("log")
        low = min(min(e["test_error"][0], e["rotated_test_error"][0]) for e in es)
        ax.set_ylim(bottom=low / 3)
        ax.set_xticks(x, [f"{e['label']}\n{e['model']}" for e in es], fontsize=8)
        ax.set_title(task)
        ax.set_ylabel("relative squared error")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


_COLORS = {"geometric": "tab:blue", "steerable": "tab:green", "plain": "tab:orange", "plain+aug": "tab:red"}


def _colour_limit(arr: np.ndarray, k: int, d: int) -> float:
    """The quantity :func:`escnn_tensor.plot_image` colours, at its largest: |value|, |v|, |trace| or |T|."""
    if k == 0:
        q = np.abs(arr)
    elif k == 1:
        q = np.sqrt((arr**2).sum(-1))
    elif k == 2:
        q = np.abs(np.trace(arr, axis1=-2, axis2=-1))
    else:
        q = np.sqrt((arr.reshape(arr.shape[:d] + (-1,)) ** 2).sum(-1))
    m = float(q.max())
    return m if m > 0 else 1.0


def _plot_samples(rows, task: str, out: Path, plt) -> Path:
    """Input, target and the prediction of every family (first model and seed) for the first test sample; the
    target and the predictions of one field share their colour scale (the target's)."""
    from ..plotting import plot_image

    rs = [r for r in rows if r["task"] == task]
    model, seed = rs[0]["model"], rs[0]["seed"]
    chosen = [r for r in rs if r["model"] == model and r["seed"] == seed]
    first = torch.load(out / "predictions" / f"{chosen[0]['job']}.pt", weights_only=False)
    d = first["input"].dim() - 1
    targets = field_images(first["target"], first["out_fields"], d)
    limits = [_colour_limit(arr, k, d) for arr, _, k in targets]
    items = [(arr, p, "input", None) for arr, p, _ in field_images(first["input"], first["in_fields"], d)]
    items += [(arr, p, "target", lim) for (arr, p, _), lim in zip(targets, limits)]
    for r in chosen:
        pred = torch.load(out / "predictions" / f"{r['job']}.pt", weights_only=False)
        fields = field_images(pred["prediction"], pred["out_fields"], d)
        items += [(arr, p, f"{r['label']} ({model})", lim) for (arr, p, _), lim in zip(fields, limits)]
    ncols = min(len(items), 3 if d == 2 else 1)
    nrows = math.ceil(len(items) / ncols)
    width = 5.0 if d == 2 else 12.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * 3.9), squeeze=False, layout="constrained")
    for ax, (arr, p, title, lim) in zip(axes.ravel(), items):
        plot_image(arr, p, d, ax=ax, title=title, vmax=lim)
    for ax in axes.ravel()[len(items):]:
        ax.set_axis_off()
    fig.suptitle(f"{task}: first test sample (seed {seed})")
    path = out / f"samples_{task}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
