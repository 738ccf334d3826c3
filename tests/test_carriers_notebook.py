"""notebooks/carriers.ipynb draws the carriers' Pareto plot from the stored results, top to bottom."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "carriers.ipynb"


@pytest.mark.integration
def test_the_carriers_notebook_draws_the_pareto_plot(monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel then draws inline, as in Jupyter
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the notebook shows no plot"
    assert any("ml-100k" in output.get("text", "") and "reached" in output.get("text", "") for output in outputs)
