"""The walk-through notebook notebooks/geometric_conv_in_escnn.ipynb runs from top to bottom without errors.

Its cells check their own claims with ``assert`` (Gauss's law, equivariance of the data generator, of GeometricConv
and of the trained network), so an executed notebook is also a test of those claims.
"""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "geometric_conv_in_escnn.ipynb"


def test_notebook_executes(tmp_path, monkeypatch):
    # the kernel runs in tmp_path; it finds the example's modules (examples/ is not in the package) through this
    monkeypatch.setenv("ESCNN_TENSOR_EXAMPLES", str(NOTEBOOK.parents[1] / "examples"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert len(executed) == n_code and all(c.execution_count for c in executed)
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in executed for o in c.outputs if o.output_type == "stream")
    assert "equivariance error of the trained network" in text
    images = [o for c in executed for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the data picture and the prediction picture
