"""escnn_tensor.compare.figures on synthetic result rows: every figure is written, has the right panels and lines
holding the rows' numbers (matplotlib objects inspected, not pixels), the matching tables of report.py agree, and diverged rows (NaN
errors, non-finite predictions) are shown as diverged instead of breaking anything."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from escnn_tensor._io import save_checkpoint  # noqa: E402
from escnn_tensor.compare import figures as F  # noqa: E402
from escnn_tensor.compare import report  # noqa: E402

LABELS = ["geometric", "steerable", "plain"]
IN_FIELDS = [(0, 1), (1, 1)]
OUT_FIELDS = [(1, 1), (2, 1)]
N = 6


def _history(scale, epochs=4):
    return [{"epoch": e + 1, "train_loss": scale / (e + 1), "val_error": 2 * scale / (e + 1)} for e in range(epochs)]


def _rows(tmp_path, n_trains=(8, 16), seeds=(0, 1), rollout=6, task="toy"):
    """Rows of a run with a prediction file per row; test error = f(label, n, seed) known in closed form."""
    (tmp_path / "predictions").mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, N, N, dtype=torch.float64, generator=gen)
    y = torch.randn(6, N, N, dtype=torch.float64, generator=gen)
    rows = []
    for n in n_trains:
        for i, lab in enumerate(LABELS):
            for s in seeds:
                job = f"{task}-{lab}-n{n}-s{s}"
                err = (i + 1) * 0.1 / n * (1 + 0.1 * s)
                pred = y + (i + 1) * 0.1 * torch.randn(6, N, N, dtype=torch.float64, generator=gen)
                torch.save({"input": x, "target": y, "prediction": pred, "in_fields": IN_FIELDS,
                            "out_fields": OUT_FIELDS}, tmp_path / "predictions" / f"{job}.pt")
                rows.append({
                    "task": task, "model": "resnet", "family": lab, "label": lab, "seed": s, "n_train": n,
                    "test_error": err, "rotated_test_error": 1.5 * err, "diverged": False, "job": job,
                    "history": _history(err), "rollout_errors": [err * (t + 1) for t in range(rollout)],
                })
    return rows


def _close(fig):
    plt.close(fig)


def test_write_figures_writes_every_figure_and_report_keeps_the_old_names(tmp_path):
    rows = _rows(tmp_path)
    paths = F.write_figures(rows, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["efficiency.png", "errors.png", "learning_curves.png", "rollout.png", "samples_toy.png"]
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)
    assert report.write_figures is F.write_figures and report.field_images is F.field_images
    assert report._plot_errors(rows, tmp_path / "e2.png", plt).exists()


def test_only_the_figures_the_rows_have_data_for(tmp_path):
    """One n_train, no rollout_errors, no history anywhere, no prediction files: only errors.png."""
    rows = _rows(tmp_path, n_trains=(8,), rollout=0)
    for r in rows:
        r.pop("history")
        r["rollout_errors"] = None
        (tmp_path / "predictions" / f"{r['job']}.pt").unlink()
    assert [p.name for p in F.write_figures(rows, tmp_path)] == ["errors.png"]
    assert F.write_figures([], tmp_path) == []
    assert report.efficiency_table(rows) == "" and report.rollout_table(rows) == ""


def test_samples_figure_has_a_residual_row_on_one_colour_scale(tmp_path):
    """Row 0: 2 input + 2 target panels; per target field a row of 3 predictions and a row of 3 residuals. Each
    residual title holds that field's relative error computed here from the tensors; the residuals of one field
    share one colour limit, the largest residual of the row."""
    rows = _rows(tmp_path, n_trains=(8,), seeds=(0,))
    fig, panels = F.make_samples_figure(rows, "toy", tmp_path)
    kinds = [k for k, _, _ in panels]
    assert [kinds.count(k) for k in ("input", "target", "prediction", "residual")] == [2, 2, 6, 6]
    residuals = [(t, ax) for k, t, ax in panels if k == "residual"]
    for j, (start, stop, k) in enumerate([(0, 2, 1), (2, 6, 2)]):
        row_axes = [ax for t, ax in residuals[3 * j : 3 * j + 3]]
        limits = {ax.images[0].get_clim() for ax in row_axes}
        assert len(limits) == 1
        biggest = 0.0
        for (title, _), r in zip(residuals[3 * j : 3 * j + 3], rows):
            p = torch.load(tmp_path / "predictions" / f"{r['job']}.pt")
            res = (p["prediction"] - p["target"])[start:stop]
            err = float((res**2).sum() / (p["target"][start:stop] ** 2).sum())
            assert title.startswith(r["label"]) and f"rel. err {err:.3g}" in title
            if k == 1:
                biggest = max(biggest, float(res.pow(2).sum(0).sqrt().max()))
            else:
                biggest = max(biggest, float((res[0] + res[3]).abs().max()))  # trace of the 2-tensor
        assert limits.pop()[1] == pytest.approx(biggest, rel=1e-12)
    _close(fig)


def test_learning_curves_from_rows_job_files_and_checkpoints(tmp_path):
    """Two lines (validation, train) per family; the validation line is the mean over seeds of the histories,
    found in row["history"], in DIR/jobs/*.json or in the checkpoint, whichever holds it."""
    rows = _rows(tmp_path, n_trains=(8,))
    rows[0].pop("history")  # geometric seed 0: from a job file
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "row0.json").write_text(json.dumps(
        {"row": {}, "jobs": [{"job": rows[0]["job"], "history": _history(rows[0]["test_error"])}]}))
    rows[1].pop("history")  # geometric seed 1: from its checkpoint
    (tmp_path / "checkpoints").mkdir()
    save_checkpoint({"history": _history(rows[1]["test_error"])}, tmp_path / "checkpoints" / f"{rows[1]['job']}.pt")
    fig = F.make_learning_curves_figure(rows, tmp_path)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == sorted(f"{lab} {kind}" for lab in LABELS for kind in ("validation", "train"))
    for lab in LABELS:
        errs = [r["test_error"] for r in rows if r["label"] == lab]
        expected = [np.mean([2 * e / (k + 1) for e in errs]) for k in range(4)]
        np.testing.assert_allclose(lines[f"{lab} validation"].get_ydata(), expected, rtol=1e-12)
        np.testing.assert_allclose(lines[f"{lab} train"].get_xdata(), [1, 2, 3, 4])
    assert ax.get_yscale() == "log"
    _close(fig)


def test_efficiency_figure_and_table(tmp_path):
    """Log-log, one series per family through (n_train, mean over seeds); the table has a column per n_train."""
    rows = _rows(tmp_path, n_trains=(32, 8, 16))
    fig = F.make_efficiency_figure(rows)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: the data line of each series
    assert sorted(lines) == sorted(LABELS)
    for lab in LABELS:
        np.testing.assert_array_equal(lines[lab].get_xdata(), [8, 16, 32])
        expected = [np.mean([r["test_error"] for r in rows if r["label"] == lab and r["n_train"] == n]) for n in (8, 16, 32)]
        np.testing.assert_allclose(lines[lab].get_ydata(), expected, rtol=1e-12)
    _close(fig)
    table = report.efficiency_table(rows).splitlines()
    assert table[0] == "| task | model | family | n_train 8 | n_train 16 | n_train 32 |"
    assert len(table) == 2 + len(LABELS)
    geo = [r["test_error"] for r in rows if r["label"] == "geometric" and r["n_train"] == 8]
    assert f"{np.mean(geo):.3g} ± {np.std(geo, ddof=1):.2g}" in table[2]
    assert F.make_efficiency_figure(_rows(tmp_path, n_trains=(8,))) is None


def test_rollout_figure_and_table(tmp_path):
    """One line per family over steps 1..T with the mean error; the table keeps the steps that exist (1 and 5 of
    1, 5, 10, 20 for T = 6), and a shorter rollout gets a dash."""
    rows = _rows(tmp_path, n_trains=(8,), rollout=6)
    rows[-1]["rollout_errors"] = rows[-1]["rollout_errors"][:3]  # plain seed 1: 3 steps only
    rows[-2]["rollout_errors"] = rows[-2]["rollout_errors"][:3]  # plain seed 0
    fig = F.make_rollout_figure(rows)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == sorted(LABELS)
    steel = [r for r in rows if r["label"] == "steerable"]
    np.testing.assert_array_equal(lines["steerable"].get_xdata(), np.arange(1, 7))
    np.testing.assert_allclose(lines["steerable"].get_ydata(),
                               [np.mean([r["rollout_errors"][t] for r in steel]) for t in range(6)], rtol=1e-12)
    assert len(lines["plain"].get_xdata()) == 3
    _close(fig)
    table = report.rollout_table(rows).splitlines()
    assert table[0] == "| task | model | family | n_train | step 1 | step 5 |"
    assert table[-1].startswith("| toy | resnet | plain | 8 |") and table[-1].endswith("| — |")


def test_diverged_and_non_finite_rows_break_no_figure(tmp_path):
    """A family whose every seed diverged (NaN errors, a non-finite prediction, NaN history and rollout) and one
    seed of another that diverged: every figure and table is still made, and says "diverged" where it applies."""
    rows = _rows(tmp_path, n_trains=(8, 16))
    for r in rows:
        if r["label"] == "plain" and r["n_train"] == 16:
            r.update(test_error=math.nan, rotated_test_error=float("inf"), diverged=True,
                     rollout_errors=[0.1, math.nan, math.nan, math.nan, math.nan, math.nan],
                     history=[{"epoch": 1, "train_loss": 1.0, "val_error": math.nan}])
            p = torch.load(tmp_path / "predictions" / f"{r['job']}.pt")
            p["prediction"][:, 0, 0] = math.nan  # every field has a non-finite pixel
            torch.save(p, tmp_path / "predictions" / f"{r['job']}.pt")
    rows[0].update(test_error=None, diverged=True)  # geometric n=8 seed 0: one of two seeds
    paths = F.write_figures(rows, tmp_path)
    assert len(paths) == 5 and all(p.exists() for p in paths)

    fig = F.make_errors_figure(rows)
    assert sum(t.get_text() == "diverged" for t in fig.axes[0].texts) == 1
    _close(fig)
    fig, panels = F.make_samples_figure(rows, "toy", tmp_path)  # largest n_train: 16, where plain diverged
    diverged = [(k, t, ax) for k, t, ax in panels if any("diverged" in x.get_text() for x in ax.texts)]
    assert {k for k, _, _ in diverged} == {"prediction", "residual"} and len(diverged) == 4
    assert all(t.startswith("plain") for _, t, _ in diverged)
    _close(fig)
    fig = F.make_rollout_figure(rows)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "plain n=16 (diverged from step 2)" in labels
    _close(fig)
    fig = F.make_learning_curves_figure(rows, tmp_path)
    assert "plain n=16 (diverged) validation" in [line.get_label() for line in fig.axes[0].get_lines()]
    _close(fig)
    eff = report.efficiency_table(rows)
    plain = next(line for line in eff.splitlines() if "| plain |" in line)
    assert plain.endswith("| diverged |")
    geo = next(line for line in eff.splitlines() if "| geometric |" in line)
    assert "±" not in geo.split("|")[4]  # n=8: the one finite seed only
    assert "diverged" in report.rollout_table(rows)
