"""notebooks/carriers.ipynb draws the carriers' Pareto plot from the stored results, top to bottom."""
from __future__ import annotations

import pytest


@pytest.mark.integration
def test_the_carriers_notebook_draws_the_pareto_plot(notebook_outputs):
    outputs = notebook_outputs("carriers.ipynb")
    assert any("image/png" in output.get("data", {}) for output in outputs), "the notebook shows no plot"
    assert any("ml-100k" in output.get("text", "") and "reached" in output.get("text", "") for output in outputs)
