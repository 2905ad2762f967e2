"""The result tables of README.md and docs/*.md are the output of scripts/readme_table.py from stored results files
(docs/results/NAME/: results.json, results.md, run.json), never typed by hand: every generated block is up to date,
and the README's quick table agrees with docs/results/quick/results.json cell by cell."""
import importlib.util
import json
import math
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "docs" / "results" / "quick"


def _script():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "scripts" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _quick_block() -> str:
    blocks = dict(_script().blocks((ROOT / "README.md").read_text()))
    assert "docs/results/quick" in blocks, "README.md has no <!-- results-table docs/results/quick --> block"
    return blocks["docs/results/quick"]


def test_every_generated_block_is_up_to_date():
    script = _script()
    assert script.update(check=True) == [], "run: python scripts/readme_table.py"


def test_a_changed_cell_is_found_stale(tmp_path):
    """The check can fail: a README whose table differs in one cell from the stored file is reported, --check
    writes nothing, and a render restores the stored table."""
    script = _script()
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in _quick_block().splitlines() if line.startswith("| gravity |"))
    cells = row.split(" | ")
    cells[4] = "0.123"  # the test error
    page = tmp_path / "README.md"
    page.write_text(readme.replace(row, " | ".join(cells)))
    assert script.update(check=True, files=[page]) == ["README.md: docs/results/quick"]
    assert page.read_text() != readme
    assert script.update(check=False, files=[page]) == ["README.md: docs/results/quick"]
    assert page.read_text() == readme


def _number(cell: str) -> float:
    return float(cell.replace(",", "").split(" ± ")[0].strip("* "))


#: results.md column -> (results.json key, significant digits shown; 0: an integer with thousands separators)
COLUMNS = {"params": ("params", 0), "test error": ("test_error", 3), "rotated test error": ("rotated_test_error", 3),
           "equivariance error": ("equivariance_error", 2), "s / epoch": ("seconds_per_epoch", 2)}


def _first_table(text: str):
    """Header cells and row cells of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| task |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return table[0], table[2:]


def test_readme_quick_table_matches_the_stored_results_to_3_digits():
    rows = json.loads((QUICK / "results.json").read_text())
    by_key = {}
    for r in rows:
        key = (r["task"], r["model"], r["label"])
        assert key not in by_key, f"more than one seed for {key}: the quick table shows single runs"
        by_key[key] = r
    header, table = _first_table(_quick_block())
    assert header[:3] == ["task", "model", "family"] and set(COLUMNS) <= set(header)
    assert len(table) == len(rows) > 0
    for cells in table:
        r = by_key[tuple(cells[:3])]
        for column, cell in zip(header, cells):
            if column not in COLUMNS:
                continue
            name, digits = COLUMNS[column]
            value = float(r[name])
            if digits == 0:
                assert _number(cell) == round(value), (cells, column)
            else:  # the cell shows the stored value rounded to `digits` significant digits
                assert _number(cell) == float(f"{value:.{digits}g}"), (cells, column, value)


def test_pivot_block_of_several_seeds(tmp_path):
    """The pivot form (tasks x families, mean ± std of the test error over seeds, best in bold), on a stored run
    made here: the numbers are checked against numpy's mean and sample std."""
    import numpy as np

    script = _script()
    folder = tmp_path / "run"
    folder.mkdir()
    errors = {("gravity", "geometric"): [1e-3, 2e-3], ("gravity", "plain"): [4e-3, 5e-3],
              ("tidal", "geometric"): [7e-3, 8e-3, 9e-3], ("tidal", "plain"): [6e-3, 6e-3]}
    rows = [dict(task=t, model="resnet", label=lab, n_train=8, params=100, test_error=e, rotated_test_error=e,
                 equivariance_error=0.0, seconds_per_epoch=1.0) for (t, lab), es in errors.items() for e in es]
    (folder / "results.json").write_text(json.dumps(rows))
    (folder / "run.json").write_text(json.dumps(dict(command="cmd", date="2026-01-01", commit="0" * 40,
                                                     wall_seconds=None, machine="m", note="")))
    text = script.render(f"{folder} pivot")
    assert "`cmd` at commit 0000000" in text
    header, body = _first_table(text.replace("| test error (mean ± std, 2 or 3 seeds) |", "| task |"))
    assert header == ["task", "geometric", "plain"]
    assert [c[0] for c in body] == ["gravity", "tidal"]
    for cells in body:
        values = [np.array(errors[(cells[0], lab)]) for lab in header[1:]]
        expected = [f"{v.mean():.3g} ± {v.std(ddof=1):.2g}" for v in values]
        best = int(np.argmin([v.mean() for v in values]))
        expected[best] = f"**{expected[best]}**"
        assert cells[1:] == expected
    with pytest.raises(ValueError, match="give one stored folder"):
        script.render(f"{folder} {folder}")


def test_run_record_names_command_date_and_commit():
    run = json.loads((QUICK / "run.json").read_text())
    assert "escnn_tensor.compare --quick" in run["command"] or "dev.sh example" in run["command"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run["date"])
    assert re.fullmatch(r"[0-9a-f]{40}", run["commit"])
    known = subprocess.run(["git", "cat-file", "-e", run["commit"] + "^{commit}"], cwd=ROOT, capture_output=True)
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode == 0 and shallow.stdout.strip() == "false":
        assert known.returncode == 0, f"the stored run's commit {run['commit']} is not in this repository"
    assert f"commit {run['commit'][:7]}" in _quick_block()


def test_pivot_relabels_a_stored_run_and_shows_validation_errors(tmp_path, monkeypatch):
    """A run stored with labels OLD=NEW shows its rows under NEW in a pivot; 'pivot val' puts the mean validation
    error of the seeds before each test error; two runs with the same family side by side stay apart."""
    script = _script()
    rows = json.loads((QUICK / "results.json").read_text())
    for name, labels in (("a", None), ("b", {"geometric": "geometric, other"})):
        folder = tmp_path / "docs" / "results" / name
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(rows if name == "a" else
                                                        [r for r in rows if r["family"] == "geometric"]))
        run = {"command": f"run {name}", "date": "2026-12-06", "commit": "0" * 40, "wall_seconds": None,
               "machine": "m", "note": ""}
        if labels:
            run["labels"] = labels
        (folder / "run.json").write_text(json.dumps(run))
    monkeypatch.setattr(script, "ROOT", tmp_path)
    text = script.render("docs/results/a docs/results/b pivot val")
    header = next(line for line in text.splitlines() if line.startswith("| validation / test error"))
    assert header.split(" | ")[1:] == ["geometric", "steerable", "plain", "plain+aug", "geometric, other |"]
    gravity = next(line for line in text.splitlines() if line.startswith("| gravity |"))
    geo = next(r for r in rows if r["task"] == "gravity" and r["label"] == "geometric")
    cells = gravity.strip("| ").split(" | ")
    assert cells[1] == cells[5] == f"{geo['val_error']:.3g} / **{geo['test_error']:.3g}**"  # a tie: both bold
    assert "`run b` at commit 0000000" in text


def test_a_section_block_shows_the_stored_rollout_table():
    """'FOLDER rollout' shows the rollout section of the stored results.md, whose cells are the stored rows'
    rollout errors at steps 1, 5, 10 and 20 (3 significant digits)."""
    script = _script()
    text = script.render("docs/results/rollout rollout")
    rows = json.loads((ROOT / "docs" / "results" / "rollout" / "results.json").read_text())
    assert "Rollout: error after each autoregressive step" in text and "| task | model | family" in text
    for r in rows:
        line = next(l for l in text.splitlines() if l.startswith(f"| navier-stokes | resnet | {r['label']} |"))
        cells = line.strip("| ").split(" | ")[4:]
        want = [r["rollout_errors"][t - 1] for t in (1, 5, 10, 20)]
        assert [c == "diverged" for c in cells] == [not math.isfinite(v) for v in want]  # a non-finite step
        assert [float(c) for c in cells if c != "diverged"] == pytest.approx([v for v in want if math.isfinite(v)],
                                                                             rel=5e-3)
    with pytest.raises(ValueError, match="no section"):
        script.section_of("| task |\n", "Rollout:")
