"""bench carriers: each carrier is what it says, counted in the bytes it takes."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_pref.bench.carriers import (
    CarriersBenchConfig, float16_state, id_bytes, int8_state, keep_top, moonshot, one_persona_state, pareto_front,
    run_carriers, similarity_priority, sparse_state, write_pareto_plot,
)
from recsys_pref.data import make_synthetic
from recsys_pref.models.persona import PersonaState


def _state(seed: int = 0, n: int = 5, m: int = 2, k: int = 6) -> PersonaState:
    rng = np.random.default_rng(seed)
    return PersonaState(rng.normal(size=(n, m, k)), rng.normal(size=(n, m)))


def test_sparse_state_keeps_the_n_largest_coefficients_of_each_user():
    state = _state()
    sparse = sparse_state(state, 3)
    assert ((sparse.coefficients != 0).reshape(5, -1).sum(axis=1) == 3).all()
    flat, kept = np.abs(state.coefficients.reshape(5, -1)), np.abs(sparse.coefficients.reshape(5, -1))
    assert (kept.max(axis=1) == pytest.approx(flat.max(axis=1), rel=1e-3))
    assert (np.sort(flat, axis=1)[:, -3] <= kept[kept > 0].reshape(5, 3).min(axis=1) * (1 + 1e-3)).all()


def test_int8_and_float16_states_stay_within_their_rounding():
    state = _state()
    scale = np.abs(state.coefficients.reshape(5, -1)).max(axis=1)[:, None, None] / 127
    assert (np.abs(int8_state(state).coefficients - state.coefficients) <= scale / 2 + 1e-6).all()
    np.testing.assert_allclose(float16_state(state).coefficients, state.coefficients, rtol=1e-3)


def test_one_persona_is_the_heaviest():
    state = _state()
    single = one_persona_state(state)
    main = state.prior_logits.argmax(axis=1)
    np.testing.assert_array_equal(single.coefficients[:, 0], state.coefficients[np.arange(5), main])


def test_keep_top_keeps_the_latest_items_and_leaves_the_history_alone():
    history = sp.csr_matrix(np.array([[1, 1, 1, 0, 1], [0, 1, 0, 0, 0]], np.float32))
    stamps = sp.csr_matrix(np.array([[5, 9, 1, 0, 7], [0, 3, 0, 0, 0]], np.float64))
    kept = keep_top(history, stamps, 2)
    assert kept[0].indices.tolist() == [1, 4] and kept[1].indices.tolist() == [1]
    assert history.nnz == 5


def test_similarity_prefers_items_pointing_like_the_history():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    history = sp.csr_matrix(np.array([[1, 1, 1]], np.float32))
    assert keep_top(history, similarity_priority(history, embeddings), 2)[0].indices.tolist() == [0, 1]


def test_an_item_id_takes_the_bytes_its_catalog_needs():
    assert (id_bytes(200), id_bytes(256), id_bytes(257), id_bytes(9724), id_bytes(70000)) == (1, 1, 2, 2, 3)


def test_the_pareto_front_holds_only_undominated_points():
    points = [(10, 0.2), (20, 0.1), (30, 0.3), (5, 0.05), (30, 0.25)]
    assert pareto_front(points) == [3, 0, 2]


def test_moonshot_takes_the_best_small_carrier_and_says_whether_it_reaches_90_percent():
    rows = [{"carrier": "a", "family": "semantic/text", "bytes": 20.0, "share_of_full": 0.8},
            {"carrier": "b", "family": "episodic/recency", "bytes": 30.0, "share_of_full": 0.85},
            {"carrier": "c", "family": "semantic/parametric", "bytes": 40.0, "share_of_full": 0.99}]
    assert moonshot(rows) == {"carrier": "b", "bytes": 30.0, "share_of_full": 0.85, "reached": False, "max_bytes": 32}


@pytest.mark.integration
def test_the_quick_bench_measures_every_carrier(tmp_path):
    data = make_synthetic(n_users=200, n_items=80, n_personas=3, density=0.15, seed=2)
    result = run_carriers(data, CarriersBenchConfig.quick(), progress=False)
    names = {row["carrier"] for row in result.rows}
    assert {"state float32", "state int8 + scale", "top 4 coefficients", "summary: clause", "summary: three",
            "summary: sentence + titles", "similar 10", "EASE on the history"} <= names
    full = next(row for row in result.rows if row["carrier"] == "state float32")
    assert full["bytes"] == 2 * 65 * 4 and full["share_of_full"] == 1
    assert all(0 <= row["ndcg@10"] <= 1 for row in result.rows)
    assert write_pareto_plot([result.to_json()], tmp_path / "pareto.png").stat().st_size > 0
