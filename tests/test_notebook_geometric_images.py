"""The notebook notebooks/geometric_images.ipynb runs from top to bottom without errors.

Its cells check their own claims with ``assert`` (symmetries of the swirl under rotation and reflection, parity of a
pseudovector, equivariance of the convolution for all 8 elements, divergence and curl of the swirl, the exact round
trip MultiImage -> GeometricTensor -> MultiImage and agreement of the two group actions), so executing it is also a
test of those claims and of the API it uses.
"""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "geometric_images.ipynb"


def test_geometric_images_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:  # run from a clean state, not from the outputs stored in the file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    assert "convolution commutes with all 8 group elements" in text
    assert "round trip exact; times_group_element == GeometricTensor.transform for all 8 elements" in text
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 8  # one figure per section: creating, combining, rotating, filters, contracting, ...
