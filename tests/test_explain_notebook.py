"""The notebook under notebooks/ runs from top to bottom (so it cannot rot)."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

from recsys_pref.data import paths

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explanations.ipynb"


@pytest.mark.integration
def test_the_explanations_notebook_runs(monkeypatch):
    lacking = paths.missing_files(paths.BUNDLED_DIR / "ml-latest-small", "ml-latest-small")
    if lacking:
        pytest.skip(f"the bundled ml-latest-small is missing ({', '.join(lacking)} under {paths.BUNDLED_DIR})")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel then draws inline, as in Jupyter
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the notebook shows no plot"
