"""The notebook under notebooks/ runs from top to bottom (so it cannot rot)."""
from __future__ import annotations

import pytest

from recsys_pref.data import paths


@pytest.mark.integration
def test_the_explanations_notebook_runs(notebook_outputs):
    lacking = paths.missing_files(paths.BUNDLED_DIR / "ml-latest-small", "ml-latest-small")
    if lacking:
        pytest.skip(f"the bundled ml-latest-small is missing ({', '.join(lacking)} under {paths.BUNDLED_DIR})")
    outputs = notebook_outputs("explanations.ipynb")
    assert any("image/png" in output.get("data", {}) for output in outputs), "the notebook shows no plot"
