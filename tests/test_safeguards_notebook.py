"""notebooks/safeguards.ipynb draws the stored echo-chamber results and runs a small simulation, top to bottom."""
from __future__ import annotations

import pytest


@pytest.mark.integration
def test_the_safeguards_notebook_plots_metrics_against_round(notebook_outputs):
    outputs = notebook_outputs("safeguards.ipynb")
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 2, "the notebook shows no stored run and live run plots"
    assert any("worse_beyond_ideal" in output.get("data", {}).get("text/html", "") +
               output.get("data", {}).get("text/plain", "") for output in outputs)
