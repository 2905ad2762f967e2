"""The notebook notebooks/head_to_head.ipynb runs from top to bottom and shows what it says it shows.

It runs a tiny comparison (tasks gravity and tidal, the three families + plain with augmentation); here we check the
results table it prints (a row per task and family, finite errors, equivariance errors of the right size per family)
and that the error figure and the prediction figures are displayed. Its own cells also assert the equivariance
errors and parameter budgets from results.json. The data cache goes to a temporary directory.
"""
import math
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "head_to_head.ipynb"
TASKS = ("gravity", "tidal")
LABELS = ("geometric", "steerable", "plain", "plain+aug")


def _number(cell: str) -> float:
    """The mean of a table cell ``'0.0604'`` or ``'0.0604 ± 0.001'``."""
    return float(cell.split("±")[0].strip())


def test_notebook_executes_and_shows_the_comparison(tmp_path, monkeypatch):
    monkeypatch.setenv("ESCNN_TENSOR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert len(executed) == n_code and all(c.execution_count for c in executed)
    assert not [o for c in executed for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for c in executed for o in c.outputs if o.output_type == "stream")

    # the table: one row per task and family, with finite errors
    header = "| task | model | family | params | test error | rotated test error | equivariance error | s / epoch |"
    assert header in text
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| (\S+) \| resnet \| (\S+) \|(.*)\|$", line)
        if m and m.group(1) in TASKS:
            key = (m.group(1), m.group(2))
            assert key not in rows, f"row {key} twice"
            rows[key] = [c.strip() for c in m.group(3).split("|")]
    assert sorted(rows) == sorted((t, f) for t in TASKS for f in LABELS)
    for (task, label), cells in rows.items():
        params = int(cells[0].replace(",", ""))
        test, rotated, equivariance, seconds = (_number(c) for c in cells[1:5])
        assert 2700 <= params <= 3300, (task, label, params)
        assert all(math.isfinite(v) for v in (test, rotated, equivariance, seconds)), (task, label, cells)
        assert 0 < test <= rotated * (1 + 1e-3) and seconds > 0, (task, label, cells)
        if label == "geometric":
            assert equivariance < 1e-10
        elif label == "steerable":
            assert equivariance < 1e-5
        else:
            assert equivariance > 1e-3

    # the figures: errors per family and the predictions of the 2-tensor task, written and displayed
    assert "errors.png" in text and "samples_gravity.png" in text and "samples_tidal.png" in text
    images = [o for c in executed for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2
