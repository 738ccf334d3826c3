"""What `recommend` never returns: by default every item the user interacted with, whatever
the rating (issue 16: 23.6% of ml-latest-small's top-10 slots were movies the user had rated)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys_pref.data import from_frame
from recsys_pref.pipeline import PersonaPipeline

LOW_RATER = 999  # a user whose every rating is below the positive threshold


@pytest.fixture(scope="module")
def rated():
    """30 users x 25 items with ratings 1..5 (positives: >= 4), and LOW_RATER who rated 6 items, all 1 or 2."""
    rng = np.random.default_rng(4)
    rows = [(user, item, float(rng.integers(1, 6))) for user in range(30) for item in range(25) if rng.random() < 0.4]
    rows += [(user, user % 25, 5.0) for user in range(30)]  # everyone has a positive
    rows += [(LOW_RATER, item, float(1 + item % 2)) for item in range(6)]
    frame = pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64}, orient="row")
    return from_frame(frame.unique(["user_id", "item_id"], keep="first"), "rated", positive_threshold=4.0)


@pytest.fixture(scope="module")
def served(rated, tiny_persona):
    return PersonaPipeline.fit(rated, tiny_persona)


def _pairs(frame: pl.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_id"].to_list(), frame["item_id"].to_list()))


def test_by_default_no_item_the_user_rated_is_recommended_whatever_the_rating(rated, served):
    users = rated.user_ids.to_list()
    recommended = served.recommend(users, k=25)
    assert recommended.height > 0
    assert not _pairs(recommended) & _pairs(rated.interactions)


def test_filter_seen_positives_lets_low_rated_items_back_but_never_positives(rated, served):
    users = rated.user_ids.to_list()
    recommended = _pairs(served.recommend(users, k=25, filter_seen="positives"))
    low = _pairs(rated.interactions.filter(pl.col("rating") < 4))
    assert recommended & low  # with k = the catalog, every unfiltered item comes back
    assert not recommended & _pairs(rated.positives())


def test_filter_seen_none_returns_the_whole_catalog(rated, served):
    assert served.recommend([0], k=25, filter_seen="none").height == rated.n_items


def test_a_known_user_without_positives_is_served_from_the_population_prior(served):
    state = served.user_batch([LOW_RATER]).state
    np.testing.assert_allclose(state.coefficients, served.population_state.coefficients)
    recommended = served.recommend([LOW_RATER], k=25)
    assert not set(recommended["item_id"].to_list()) & set(range(6))
    assert recommended.height == 25 - 6


def test_history_rows_count_as_seen(served):
    recommended = served.recommend([5000], k=25, history=pl.DataFrame({"user_id": [5000] * 3, "item_id": [1, 2, 3]}))
    assert recommended.height == 22 and not {1, 2, 3} & set(recommended["item_id"].to_list())


def test_seen_items_survive_save_and_load(served, tmp_path):
    loaded = PersonaPipeline.load(served.save(tmp_path / "model"))
    assert (loaded.seen != served.seen).nnz == 0
    assert loaded.recommend([LOW_RATER], k=5).equals(served.recommend([LOW_RATER], k=5))


def test_k_above_the_catalog_is_capped_at_it(served):
    assert served.recommend([0], k=10**9, filter_seen="none").height == 25
