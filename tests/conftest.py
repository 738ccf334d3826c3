"""Fixtures shared by the test files, and the switch that makes missing real data fail.

Real datasets come from RECSYS_PREF_DATA (../shared/datasets in the README's command); a test
that needs one skips with a reason naming RECSYS_PREF_DATA when it is absent. With
RECSYS_PREF_REQUIRE_DATA=1 (set by .ci/run) such a skip is reported as a failure instead, so
CI cannot go green without having read the real data.

The fast loop leaves out the slow end-to-end tests: `python -m pytest -q -m "not integration"`.
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable

from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp

if TYPE_CHECKING:  # imported inside the fixtures, so that the hook alone loads fast
    from recsys_pref.data import InteractionDataset
    from recsys_pref.models import Recommender
    from recsys_pref.models.persona import PersonaConfig
    from recsys_pref.pipeline import PersonaPipeline

DATA_ENV = "RECSYS_PREF_DATA"  # recsys_pref.data.paths.DATA_ENV (test_require_data.py checks)
REQUIRE_DATA_ENV = "RECSYS_PREF_REQUIRE_DATA"

#: Small settings per registered model for catalogs of tens of items (the defaults are sized
#: for MovieLens). Every name in MODELS needs an entry: test_model_contract.py checks it.
FAST_PARAMS: dict[str, dict] = {
    "popularity": {},
    "itemknn": {"K": 20},
    "ease": {"l2": 5.0},
    "als": {"factors": 8, "regularization": 3.0, "alpha": 3.0, "iterations": 10},
    "bpr": {"factors": 8, "learning_rate": 0.05, "iterations": 60},
    **{name: {"n_bases": 4, "embedding_dim": 4, "hidden_dim": 16, "max_epochs": 3, "batch_size": 16,
              "progress": False}
       for name in ("persona", "pref-linear", "amp-cf")},
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under RECSYS_PREF_REQUIRE_DATA=1, a skip whose reason names RECSYS_PREF_DATA fails."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(REQUIRE_DATA_ENV) != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if DATA_ENV in reason:
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_DATA_ENV}=1 makes a skip for missing real data a failure: {reason}"


@pytest.fixture(scope="session")
def fast_params() -> dict[str, dict]:
    """Small hyperparameters by registered model name (FAST_PARAMS)."""
    return FAST_PARAMS


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch single-threaded for a test module (use with pytest.mark.usefixtures): onboarding's
    tensors are tiny, and on a busy 2-core machine extra torch threads only spin."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fast_model() -> Callable[[str], Recommender]:
    """fast_model(name): an unfitted registered model with FAST_PARAMS[name]."""
    from recsys_pref.models import make_model

    def build(name: str) -> Recommender:
        return make_model(name, **FAST_PARAMS[name])

    return build


@pytest.fixture(scope="session")
def tiny_persona() -> PersonaConfig:
    """A persona configuration small enough to fit on a synthetic dataset in about a second."""
    from recsys_pref.models.persona import PersonaConfig

    return PersonaConfig(n_personas=2, n_bases=4, embedding_dim=8, hidden_dim=16, max_epochs=3, patience=2,
                         batch_size=32, progress=False)


@pytest.fixture(scope="session")
def dataset() -> InteractionDataset:
    """80 users x 40 items with 2 planted personas: the small dataset the pipeline tests share
    (a test file that needs another defines its own `dataset`)."""
    from recsys_pref.data import make_synthetic

    return make_synthetic(n_users=80, n_items=40, n_personas=2, density=0.2, seed=3)


@pytest.fixture(scope="session")
def pipeline(dataset: InteractionDataset, tiny_persona: PersonaConfig) -> PersonaPipeline:
    """The tiny persona model fitted on `dataset`, as a serving pipeline."""
    from recsys_pref.pipeline import PersonaPipeline

    return PersonaPipeline.fit(dataset, tiny_persona)


@pytest.fixture(scope="session")
def random_items() -> sp.csr_matrix:
    """(60 users, 40 items) random binary positives, about 20% dense; nobody has an empty row."""
    rng = np.random.default_rng(0)
    dense = (rng.random((60, 40)) < 0.2).astype(np.float32)
    dense[np.arange(60), rng.integers(0, 40, 60)] = 1.0
    return sp.csr_matrix(dense)


@pytest.fixture()
def notebook_outputs(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list]:
    """notebook_outputs(name): execute notebooks/NAME top to bottom (inline plots, as in
    Jupyter) and return its code cells' outputs; an error output fails the test."""
    def run(name: str) -> list:
        import nbclient
        import nbformat

        path = Path(__file__).resolve().parents[1] / "notebooks" / name
        monkeypatch.delenv("MPLBACKEND", raising=False)
        notebook = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
        assert not [output for output in outputs if output.output_type == "error"]
        return outputs

    return run
