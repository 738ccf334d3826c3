"""Labels from metadata: tags with the highest lift among a set of items, which must describe
the items they label (label precision), from genres and supported user tags."""
import numpy as np
import polars as pl

from recsys_pref.explain.labels import (
    MIN_LABEL_SHARE,
    PersonaDescription,
    TagIncidence,
    catalog_tag_counts,
    item_tag_lists,
    label,
    label_precision,
    persona_label_precision,
    top_lift_tags,
)

TAGS = [["drama"], ["drama"], ["drama", "war"], ["war"], ["comedy"], ["comedy"], ["drama"], ["comedy"]]


def test_lift_is_share_among_items_over_share_in_catalog():
    tags = dict(top_lift_tags(TAGS, np.array([2, 3]), n_tags=3))
    assert tags == {"war": (2 / 2) / (2 / 8)}  # drama: one of the two items only, below support


def test_with_support_one_every_tag_counts():
    tags = dict(top_lift_tags(TAGS, np.array([2, 3]), n_tags=3, min_support=1))
    assert tags == {"war": 4.0, "drama": (1 / 2) / (4 / 8)}


def test_tags_below_min_support_are_ignored():
    assert [tag for tag, _ in top_lift_tags(TAGS, np.array([2, 4, 5]), min_support=2)] == ["comedy"]


def test_label_joins_the_strongest_tags():
    assert label(TAGS, np.array([4, 5, 7])) == "comedy"


def test_no_items_gives_no_tags():
    assert top_lift_tags(TAGS, np.array([], dtype=int)) == []
    assert label(TAGS, np.array([], dtype=int)) == "–"


def test_default_support_is_a_quarter_of_the_items():
    tags = [["rare"]] * 7 + [["common"]] * 13 + [["other"]] * 80
    top = [tag for tag, _ in top_lift_tags(tags, np.arange(30))]
    assert "rare" not in top  # 7 of 30 items < 8 = 25% of 30, despite the highest lift
    assert top == ["common", "other"]


def test_every_tag_of_a_default_label_is_carried_by_a_quarter_of_its_items():
    rng = np.random.default_rng(0)
    vocabulary = ["drama", "war", "imax", "comedy", "noir", "crime"]
    tags = [list(rng.choice(vocabulary, size=rng.integers(1, 3), replace=False)) for _ in range(300)]
    for start in range(0, 300, 50):
        items = np.arange(start, start + 50)
        for tag, _ in top_lift_tags(tags, items):
            assert np.mean([tag in tags[item] for item in items]) >= MIN_LABEL_SHARE


def test_label_precision_is_the_share_of_items_carrying_one_of_the_labels_tags():
    tags = [["Drama"], ["War"], ["Comedy"], ["drama", "war"]]
    assert label_precision(tags, np.array([0, 1, 2, 3]), ["drama", "war"]) == 0.75  # case-insensitive
    assert label_precision(tags, np.array([2]), ["drama"]) == 0.0
    assert np.isnan(label_precision(tags, np.array([0]), []))


def test_persona_label_precision_averages_over_labelled_personas_on_their_top_items():
    tags = [["drama"], ["drama"], ["comedy"], ["comedy"]]
    described = [[PersonaDescription(0, "drama", [0, 2], [], ["drama"]),  # 1 of 2
                  PersonaDescription(1, "comedy", [2, 3, 0], [], ["comedy"]),  # top 2: 2 of 2
                  PersonaDescription(2, "–", [0, 1], [], [])]]  # unlabelled: left out
    assert persona_label_precision(described, tags, n_top=2) == 0.75


def test_user_tags_need_support_in_the_catalog():
    items = pl.DataFrame({"genres": [["Drama"]] * 6, "tags": [["noir", "once"]] + [["noir"]] * 5})
    assert item_tag_lists(items, min_tag_items=5)[0] == ["Drama", "noir"]


def test_bookkeeping_and_verdict_tags_are_never_labels():
    items = pl.DataFrame({"genres": [["Drama"]] * 6, "tags": [["in netflix queue", "imdb top 250", "noir"]] * 6})
    assert item_tag_lists(items, min_tag_items=1)[0] == ["Drama", "noir"]


def test_tag_incidence_finds_the_same_top_lift_tags_as_one_set_at_a_time():
    rng = np.random.default_rng(0)
    vocabulary = [f"tag-{index}" for index in range(12)]
    item_tags = [list(rng.choice(vocabulary, size=rng.integers(0, 4), replace=False)) for _ in range(300)]
    sets = np.stack([rng.choice(300, size=20, replace=False) for _ in range(50)])  # (50, 20) distinct items each
    catalog = catalog_tag_counts(item_tags)
    expected = [[tag for tag, _ in top_lift_tags(item_tags, row, 2, catalog=catalog)] for row in sets]
    assert TagIncidence.of(item_tags).top_lift_tags(sets, 2) == expected
