"""Labels from metadata: tags with the highest lift among a set of items, which must describe
the items they label (label precision), from genres and supported user tags."""
import numpy as np
import polars as pl
import pytest

from recsys_pref.explain.labels import (
    MIN_LABEL_SHARE,
    PersonaDescription,
    TagIncidence,
    item_tag_lists,
    label_precision,
    label_text,
    persona_label_precision,
)

TAGS = [["drama"], ["drama"], ["drama", "war"], ["war"], ["comedy"], ["comedy"], ["drama"], ["comedy"]]


def top_lift_tags(item_tags, items, n_tags=3, min_support=None):
    """The (tag, lift) pairs of one item set."""
    return TagIncidence.of(item_tags).top_lift_tags([items], n_tags, min_support)[0]


def test_lift_is_share_among_items_over_share_in_catalog():
    tags = dict(top_lift_tags(TAGS, np.array([2, 3]), n_tags=3))
    assert tags == {"war": (2 / 2) / (2 / 8)}  # drama: one of the two items only, below support


def test_with_support_one_every_tag_counts():
    tags = dict(top_lift_tags(TAGS, np.array([2, 3]), n_tags=3, min_support=1))
    assert tags == {"war": 4.0, "drama": (1 / 2) / (4 / 8)}


def test_tags_below_min_support_are_ignored():
    assert [tag for tag, _ in top_lift_tags(TAGS, np.array([2, 4, 5]), min_support=2)] == ["comedy"]


def test_equal_lifts_are_ordered_by_tag_name():
    tags = [["b"], ["a"], ["a", "b"], ["c"]]
    assert [tag for tag, _ in top_lift_tags(tags, np.array([2, 0, 1]))] == ["a", "b"]  # both (2/3) / (2/4)


def test_label_joins_the_tags_or_says_there_is_none():
    assert label_text(["Film-Noir", "Mystery"]) == "Film-Noir & Mystery"
    assert label_text([]) == "–"


def test_no_items_gives_no_tags():
    assert top_lift_tags(TAGS, np.array([], dtype=int)) == []


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


def test_each_set_of_a_batch_gets_its_own_top_lift_tags():
    sets = np.array([[2, 3], [4, 5], [0, 1]])
    assert TagIncidence.of(TAGS).top_lift_tags(sets, 3) == [
        [("war", (2 / 2) / (2 / 8))], [("comedy", (2 / 2) / (3 / 8))], [("drama", (2 / 2) / (4 / 8))]]


def test_item_sets_must_be_a_matrix():
    with pytest.raises(ValueError, match="sets, items per set"):
        TagIncidence.of(TAGS).top_lift_tags(np.array([2, 3]), 3)
