"""The result tables of README.md and docs/*.md are the output of scripts/readme_table.py from stored results files
(docs/results/NAME/: results.json, results.md, run.json), never typed by hand: every generated block is up to date,
and the README's quick table agrees with docs/results/quick/results.json cell by cell."""
import importlib.util
import json
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


def test_readme_quick_table_matches_the_stored_results_to_3_digits():
    rows = json.loads((QUICK / "results.json").read_text())
    by_key = {}
    for r in rows:
        key = (r["task"], r["model"], r["label"])
        assert key not in by_key, f"more than one seed for {key}: the quick table shows single runs"
        by_key[key] = r
    table = [line for line in _quick_block().splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert len(table) == len(rows) > 0
    columns = [("params", 0), ("test_error", 3), ("rotated_test_error", 3), ("equivariance_error", 2),
               ("seconds_per_epoch", 2)]
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        r = by_key[tuple(cells[:3])]
        for (name, digits), cell in zip(columns, cells[3:]):
            value = float(r[name])
            if digits == 0:
                assert _number(cell) == round(value), (line, name)
            else:  # the cell shows the stored value rounded to `digits` significant digits
                assert _number(cell) == float(f"{value:.{digits}g}"), (line, name, value)


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
