"""Labels from metadata: tags with the highest lift among a set of items."""
import numpy as np

from recsys_pref.explain.labels import label, top_lift_tags

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


def test_default_support_is_a_tenth_of_the_items():
    tags = [["rare"]] * 2 + [["common"]] * 18 + [["other"]] * 80
    top = [tag for tag, _ in top_lift_tags(tags, np.arange(30))]
    assert "rare" not in top  # 2 of 30 items < 3 = 10% of 30, despite the highest lift
    assert top == ["common", "other"]
