r"""The figures of a comparison run (the tables are :mod:`escnn_tensor.compare.report`).

Every function takes the rows of ``results.json`` (dicts with at least ``task``, ``model``, ``label``, ``seed``,
``n_train``, ``test_error``, ``rotated_test_error``; optionally ``diverged``, ``rollout_errors``, ``history``,
``job``) and the output directory ``DIR`` of the run, and only *reads* what the run wrote there:

- ``errors.png`` (:func:`plot_errors`): test and worst-rotated test error per family (bars, log scale);
- ``samples_<task>.png`` (:func:`plot_samples`): the first test sample's input and target, every family's
  prediction and a **residual row** (prediction - target per family, one colour scale per field, each panel's
  relative squared error in its title), from ``DIR/predictions/<job>.pt``;
- ``learning_curves.png`` (:func:`plot_learning_curves`): training and validation error per epoch, per family,
  from the history of each row's chosen job (``row["history"]``, else ``DIR/jobs/*.json``, else
  ``DIR/checkpoints/<job>.pt``);
- ``efficiency.png`` (:func:`plot_efficiency`): test error against ``n_train`` per family, log-log, for the
  tasks with rows at several ``n_train`` (its table: :func:`escnn_tensor.compare.report.efficiency_table`);
- ``rollout.png`` (:func:`plot_rollout`): the error at every rollout step per family, for rows with
  ``rollout_errors`` (its table: :func:`escnn_tensor.compare.report.rollout_table`, steps 1, 5, 10, 20).

Rows are grouped by (task, model, label, n_train) (:mod:`~escnn_tensor.compare.summary`); a group's value is the
mean over its seeds with a finite value. Rows with ``diverged: true`` or non-finite errors never break a figure: a group with no finite value is
drawn as a "diverged" marker or note, never as a number. The ``make_*`` functions return the matplotlib
``Figure`` (for inspection); the ``plot_*`` functions save it and return the path (``None`` when there is
nothing to draw).
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..groups import escnn_to_grid
from .summary import efficiency_series, groups, mean_std, rollout_series, value

__all__ = [
    "COLORS",
    "field_images",
    "write_figures",
    "make_errors_figure",
    "plot_errors",
    "make_samples_figure",
    "plot_samples",
    "job_history",
    "make_learning_curves_figure",
    "plot_learning_curves",
    "make_efficiency_figure",
    "plot_efficiency",
    "make_rollout_figure",
    "plot_rollout",
]

#: the colour of each label in every figure (others: grey)
COLORS = {"geometric": "tab:blue", "steerable": "tab:green", "plain": "tab:orange", "plain+aug": "tab:red",
          "plain+avg": "tab:purple"}
_COLORS = COLORS  # the old private name

Row = Dict[str, Any]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------------- rows


def _tasks(rows: Sequence[Row]) -> List[str]:
    return list(OrderedDict.fromkeys(r["task"] for r in rows))


def _name(rows: Sequence[Row], task: str, model: str, label: str, n_train: Any = None, with_n: bool = True) -> str:
    """The display name of a group: the label, the model when a task has several, ``n=`` when it has several."""
    rs = [r for r in rows if r["task"] == task]
    name = label
    if len({r["model"] for r in rs}) > 1:
        name += f" ({model})"
    if with_n and len({r.get("n_train") for r in rs}) > 1:
        name += f" n={n_train}"
    return name


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- all


def write_figures(rows: List[Row], out: Path) -> List[Path]:
    """Every figure that ``rows`` and ``out`` hold data for (see the module docs); returns their paths.

    ``errors.png`` whenever there are rows (no figure for no rows); ``samples_<task>.png`` per task whose
    prediction files exist; the learning curves, efficiency and rollout figures when there are histories, several
    ``n_train`` or ``rollout_errors``.
    """
    out = Path(out)
    if not rows:
        return []
    paths = [plot_errors(rows, out / "errors.png")]
    for task in _tasks(rows):
        p = plot_samples(rows, task, out)
        if p is not None:
            paths.append(p)
    for p in (plot_learning_curves(rows, out), plot_efficiency(rows, out), plot_rollout(rows, out)):
        if p is not None:
            paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------------- errors


def _plot_errors(rows: Sequence[Row], path: Path, plt=None) -> Path:
    """Old name of :func:`plot_errors` (``plt`` is ignored)."""
    return plot_errors(rows, path)


def _plot_samples(rows: Sequence[Row], task: str, out: Path, plt=None) -> Optional[Path]:
    """Old name of :func:`plot_samples` (``plt`` is ignored)."""
    return plot_samples(rows, task, out)


def make_errors_figure(rows: Sequence[Row]):
    """One panel per task: bars of the test error and the worst rotated test error (hatched) of every group, mean
    ± std over seeds, log scale; a group with no finite error is labelled "diverged" instead of a bar."""
    plt = _pyplot()
    by_group = groups(rows)
    tasks = _tasks(rows)
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 + 3.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        keys = [k for k in by_group if k[0] == task]
        x = np.arange(len(keys))
        low, finite_any = math.inf, False
        for off, key, hatch, name in ((-0.2, "test_error", None, "test"),
                                      (0.2, "rotated_test_error", "//", "rotated test (worst g)")):
            stats = [mean_std(r.get(key) for r in by_group[k]) for k in keys]
            means = [m if n else 0.0 for m, _, n in stats]
            stds = [s if n else 0.0 for _, s, n in stats]
            ax.bar(x + off, means, 0.4, yerr=stds, hatch=hatch, label=name,
                   color=[COLORS.get(k[2], "tab:gray") for k in keys], edgecolor="black", linewidth=0.5)
            for m, _, n in stats:
                if n:
                    low, finite_any = min(low, m), True
        if finite_any and low > 0:
            ax.set_yscale("log")
            ax.set_ylim(bottom=low / 3)
        for i, k in enumerate(keys):
            if mean_std(r.get("test_error") for r in by_group[k])[2] == 0:
                ax.text(i, 0.02, "diverged", rotation=90, ha="center", va="bottom", color="red", fontsize=8,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(x, [f"{_name(rows, *k)}\n{k[1]}" for k in keys], fontsize=8)
        ax.set_title(task)
        ax.set_ylabel("relative squared error")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_errors(rows: Sequence[Row], path: Path) -> Path:
    """Save :func:`make_errors_figure` to ``path``."""
    return _save(make_errors_figure(rows), Path(path))


# ---------------------------------------------------------------------------------------------------- samples


def field_images(tensor: torch.Tensor, signature: Sequence[tuple], d: int) -> List[Tuple[np.ndarray, int, int]]:
    """Split one sample ``(C, N..)`` (escnn layout) into its fields in grid layout: ``[(array, parity, k)]``.

    ``signature``: ``(k, parity)`` per field, or ``(k, parity, symmetry)`` for a symmetric (traceless) field
    (:func:`escnn_tensor.field_signature` with ``with_symmetry=True``), whose coordinates become the full tensor
    (:func:`escnn_tensor.representations.to_full_tensor`). Each array has shape ``grid + (d,)*k`` (array axis ``i``
    along ``+x_i``; any grid shape), as :func:`escnn_tensor.plot_image` takes it.
    """
    from ..data.fields import escnn_to_grid_layout  # any grid shape (rectangles from data files too)
    from ..representations import symmetric_size, to_full_tensor

    out, start = [], 0
    for entry in signature:
        k, p = entry[0], entry[1]
        symmetry = entry[2] if len(entry) > 2 else None
        size = symmetric_size(d, k, symmetry)
        block = tensor[start : start + size].detach().cpu().double()
        start += size
        if symmetry is not None:
            block = to_full_tensor(block, d, k, symmetry, dim=0)
        out.append((escnn_to_grid_layout(block[None], d, k)[0].numpy(), p, k))
    return out


def _colour_limit(arr: np.ndarray, k: int, d: int) -> float:
    """The quantity :func:`escnn_tensor.plot_image` colours, at its largest: |value|, |v|, |trace| or |T|
    (1.0 for an all-zero or non-finite field)."""
    if k == 0:
        q = np.abs(arr)
    elif k == 1:
        q = np.sqrt((arr**2).sum(-1))
    elif k == 2:
        q = np.abs(np.trace(arr, axis1=-2, axis2=-1))
    else:
        q = np.sqrt((arr.reshape(arr.shape[:d] + (-1,)) ** 2).sum(-1))
    m = float(np.nanmax(q)) if np.isfinite(q).any() else 0.0
    return m if m > 0 and math.isfinite(m) else 1.0


def _k_name(k: int, p: int) -> str:
    base = {0: "scalar", 1: "vector"}.get(k, f"{k}-tensor")
    return ("pseudo" + base) if p == -1 else base


def _load(path: Path) -> Optional[Dict[str, Any]]:
    from .._io import load_checkpoint  # plain torch files and checksummed checkpoints alike

    try:
        return load_checkpoint(path, map_location="cpu")
    except (OSError, RuntimeError, EOFError, ValueError):
        return None


def make_samples_figure(rows: Sequence[Row], task: str, out: Path):
    """The first test sample of ``task`` (first model and seed of the rows, largest ``n_train``).

    Layout: row 0 holds the input fields then the target fields; then, for every target field, one row of every
    family's prediction (on the target's colour scale) and one **residual** row, prediction - target, with one
    colour scale shared by the row and each panel's relative squared error ``sum |p - t|^2 / sum |t|^2`` of that
    field in its title. A prediction with non-finite values is a "diverged" panel. Returns ``(figure, panels)``
    with ``panels`` a list of ``(kind, title, axes)``, kind ``"input"``, ``"target"``, ``"prediction"`` or
    ``"residual"``; ``None`` if the prediction files are missing or the grid is not square / cubic (a data file's
    rectangle: :func:`escnn_tensor.plot_image` draws square and cubic grids only).
    """
    from ..plotting import plot_image

    out = Path(out)
    rs = [r for r in rows if r["task"] == task and r.get("job")]
    if not rs:
        return None
    n_max = max((r.get("n_train") or 0) for r in rs)
    rs = [r for r in rs if (r.get("n_train") or 0) == n_max]
    model, seed = rs[0]["model"], rs[0]["seed"]
    chosen = [r for r in rs if r["model"] == model and r["seed"] == seed]
    preds = [(r, _load(out / "predictions" / f"{r['job']}.pt")) for r in chosen]
    preds = [(r, p) for r, p in preds if p is not None]
    if not preds:
        return None
    first = preds[0][1]
    d = first["input"].dim() - 1
    if len(set(first["input"].shape[1:])) != 1:  # escnn_tensor.plot_image draws square / cubic grids only
        return None
    inputs = field_images(first["input"], first["in_fields"], d)
    targets = field_images(first["target"], first["out_fields"], d)
    fields = [(r, field_images(p["prediction"], p["out_fields"], d)) for r, p in preds]
    top = len(inputs) + len(targets)
    ncols = max(top, len(fields))
    nrows = 1 + 2 * len(targets)
    width = 4.6 if d == 2 else 12.0
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * width, nrows * 3.7), squeeze=False, layout="constrained")
    panels = []

    def draw(ax, arr, p, title, vmax, kind):
        if np.isfinite(arr).all():
            plot_image(arr, p, d, ax=ax, title=title, vmax=vmax)
        else:
            ax.text(0.5, 0.5, "diverged\n(non-finite prediction)", ha="center", va="center", color="red",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title)
        panels.append((kind, title, ax))

    used = set()
    for j, (arr, p, k) in enumerate(inputs):
        draw(axes[0, j], arr, p, f"input: {_k_name(k, p)}", None, "input")
        used.add((0, j))
    for j, (arr, p, k) in enumerate(targets):
        draw(axes[0, len(inputs) + j], arr, p, f"target: {_k_name(k, p)}", _colour_limit(arr, k, d), "target")
        used.add((0, len(inputs) + j))
    for j, (tgt, p, k) in enumerate(targets):
        limit = _colour_limit(tgt, k, d)
        residuals = [pred[j][0] - tgt for _, pred in fields]
        finite = [res for res in residuals if np.isfinite(res).all()]
        res_limit = max([_colour_limit(res, k, d) for res in finite], default=1.0)
        norm = float((tgt**2).sum())
        for c, ((r, pred), res) in enumerate(zip(fields, residuals)):
            name = _name(rows, task, r["model"], r["label"], with_n=False)
            draw(axes[1 + 2 * j, c], pred[j][0], p, f"{name}: {_k_name(k, p)}", limit, "prediction")
            err = float((res**2).sum()) / norm if norm > 0 else math.nan
            text = f"{err:.3g}" if math.isfinite(err) else "diverged"
            draw(axes[2 + 2 * j, c], res, p, f"{name} − target (rel. err {text})", res_limit, "residual")
            used.update({(1 + 2 * j, c), (2 + 2 * j, c)})
    for i in range(nrows):
        for j in range(ncols):
            if (i, j) not in used:
                axes[i, j].set_axis_off()
    fig.suptitle(f"{task}: first test sample ({model}, seed {seed}, n_train {n_max}); residual rows share one "
                 f"colour scale per field")
    return fig, panels


def plot_samples(rows: Sequence[Row], task: str, out: Path) -> Optional[Path]:
    """Save :func:`make_samples_figure` as ``out/samples_<task>.png`` (``None`` without prediction files)."""
    made = make_samples_figure(rows, task, out)
    if made is None:
        return None
    return _save(made[0], Path(out) / f"samples_{task}.png")


# ---------------------------------------------------------------------------------------------------- histories


def _job_files(out: Path) -> Dict[str, List[Dict[str, Any]]]:
    """job id -> history, from every ``out/jobs/*.json`` (the per-row files of the harness)."""
    found: Dict[str, List[Dict[str, Any]]] = {}
    for path in sorted((Path(out) / "jobs").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for job in data.get("jobs", []) if isinstance(data, dict) else []:
            if isinstance(job, dict) and job.get("job") and isinstance(job.get("history"), list):
                found[job["job"]] = job["history"]
    return found


def job_history(row: Row, out: Path, _cache: Optional[Dict[str, Any]] = None) -> Optional[List[Dict[str, Any]]]:
    """The per-epoch history (``[{"epoch", "train_loss", "val_error"}, ...]``) of ``row``'s chosen job.

    From ``row["history"]`` if present, else the job files ``out/jobs/*.json``, else the checkpoint
    ``out/checkpoints/<job>.pt``; ``None`` if none holds it.
    """
    if isinstance(row.get("history"), list):
        return row["history"]
    job = row.get("job")
    if not job:
        return None
    if _cache is None:
        _cache = {}
    if "jobs" not in _cache:
        _cache["jobs"] = _job_files(out)
    if job in _cache["jobs"]:
        return _cache["jobs"][job]
    path = Path(out) / "checkpoints" / f"{job}.pt"
    if path.exists():
        from .._io import load_checkpoint

        try:
            ck = load_checkpoint(path, map_location="cpu")
        except (OSError, ValueError, RuntimeError):
            return None
        if isinstance(ck, dict) and isinstance(ck.get("history"), list):
            return ck["history"]
    return None


def _curve(histories: List[List[Dict[str, Any]]], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean over histories of ``key`` per epoch (finite values only; NaN where none)."""
    by_epoch: "OrderedDict[int, List[float]]" = OrderedDict()
    for h in histories:
        for e in h:
            by_epoch.setdefault(int(e.get("epoch", 0)), []).append(value(e.get(key)))
    epochs = sorted(by_epoch)
    means = [mean_std(by_epoch[e])[0] for e in epochs]
    return np.array(epochs, dtype=float), np.array(means, dtype=float)


def make_learning_curves_figure(rows: Sequence[Row], out: Path):
    """One panel per task: the validation error (solid) and the training error (dashed: the relative squared
    error of the training batches, averaged over the epoch) per epoch of every group, mean over seeds, log scale.
    Groups whose history has non-finite values get "(diverged)" in the legend. ``None`` if no row has a history."""
    cache: Dict[str, Any] = {}
    by_group = groups(rows)
    curves = []
    for key, rs in by_group.items():
        hs = [h for h in (job_history(r, out, cache) for r in rs) if h]
        if hs:
            curves.append((key, hs))
    if not curves:
        return None
    plt = _pyplot()
    tasks = list(OrderedDict.fromkeys(k[0] for k, _ in curves))
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.0 + 4.4 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        drawn = False
        for key, hs in curves:
            if key[0] != task:
                continue
            colour = COLORS.get(key[2], "tab:gray")
            bad = any(not math.isfinite(value(e.get(m))) for h in hs for e in h for m in ("train_loss", "val_error"))
            name = _name(rows, *key) + (" (diverged)" if bad else "")
            epochs, val = _curve(hs, "val_error")
            _, train = _curve(hs, "train_loss")
            ax.plot(epochs, val, "-", color=colour, label=f"{name} validation")
            ax.plot(epochs, train, "--", color=colour, label=f"{name} train")
            drawn = drawn or bool(np.isfinite(val).any() and (val[np.isfinite(val)] > 0).any())
        if drawn:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("relative squared error")
        ax.set_title(task)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_learning_curves(rows: Sequence[Row], out: Path) -> Optional[Path]:
    """Save :func:`make_learning_curves_figure` as ``out/learning_curves.png`` (``None`` without histories)."""
    fig = make_learning_curves_figure(rows, out)
    return None if fig is None else _save(fig, Path(out) / "learning_curves.png")


# ---------------------------------------------------------------------------------------------------- efficiency


def make_efficiency_figure(rows: Sequence[Row]):
    """One panel per task with rows at several ``n_train``: test error against ``n_train`` per family (mean ±
    std over seeds), log-log; a size at which every seed diverged is an ``x`` on the bottom edge and
    "(diverged at n=...)" in the legend. ``None`` if no task has several ``n_train``."""
    data = efficiency_series(rows)
    if not data:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(data), figsize=(1.0 + 4.2 * len(data), 3.8), squeeze=False)
    for ax, (task, series) in zip(axes[0], data.items()):
        for (model, lab), points in series.items():
            colour = COLORS.get(lab, "tab:gray")
            ok = [(n, m, s) for n, m, s, k, _ in points if k]
            bad = [n for n, m, s, k, _ in points if not k]
            name = _name(rows, task, model, lab, with_n=False)
            if bad:
                name += f" (diverged at n={', '.join(str(n) for n in bad)})"
            if ok:
                ns, ms, ss = (np.asarray(v, dtype=float) for v in zip(*ok))
                ax.errorbar(ns, ms, yerr=ss, marker="o", color=colour, label=name, capsize=2)
            else:
                ax.plot([], [], color=colour, label=name)
            if bad:
                ax.plot(bad, [0.0] * len(bad), "x", color=colour, transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_xscale("log")
        if any(k and m > 0 for ps in series.values() for _, m, _, k, _ in ps):
            ax.set_yscale("log")
        ax.set_xlabel("training samples (n_train)")
        ax.set_ylabel("test error (relative squared)")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_efficiency(rows: Sequence[Row], out: Path) -> Optional[Path]:
    """Save :func:`make_efficiency_figure` as ``out/efficiency.png`` (``None`` without several ``n_train``)."""
    fig = make_efficiency_figure(rows)
    return None if fig is None else _save(fig, Path(out) / "efficiency.png")


# ---------------------------------------------------------------------------------------------------- rollout


def make_rollout_figure(rows: Sequence[Row]):
    """One panel per task: the relative error at every step of the autoregressive rollout (``rollout_errors``),
    per group (colour: family, line style: ``n_train``), mean over seeds with a finite value at that step, log
    scale; steps where every seed diverged are gaps, and the group gets "(diverged from step s)" in the legend. ``None`` if no row has ``rollout_errors``."""
    data = rollout_series(rows)
    if not data:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(data), figsize=(1.0 + 4.2 * len(data), 3.8), squeeze=False)
    for ax, (task, series) in zip(axes[0], data.items()):
        positive = False
        sizes = sorted({k[3] for k in series}, key=lambda n: (n is None, n or 0))
        styles = ["-", "--", ":", "-."]
        for key, (means, _, counts, _) in series.items():
            name = _name(rows, *key)
            gone = np.nonzero(counts == 0)[0]
            if gone.size:
                name += f" (diverged from step {int(gone[0]) + 1})"
            ax.plot(np.arange(1, means.size + 1), means, marker=".", color=COLORS.get(key[2], "tab:gray"), label=name,
                    linestyle=styles[sizes.index(key[3]) % len(styles)])
            positive = positive or bool((means[np.isfinite(means)] > 0).any())
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("rollout step")
        ax.set_ylabel("relative squared error")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_rollout(rows: Sequence[Row], out: Path) -> Optional[Path]:
    """Save :func:`make_rollout_figure` as ``out/rollout.png`` (``None`` without ``rollout_errors``)."""
    fig = make_rollout_figure(rows)
    return None if fig is None else _save(fig, Path(out) / "rollout.png")
