"""Labels for directions of taste from item metadata: the tags with the highest lift.

Lift of tag t among a set S of items = share of S carrying t / share of the catalog carrying
t. Tags carried by fewer than `min_support` items of S (default: 10% of S, at least 2) are
ignored, so a few odd items of a rare tag (IMAX, say) cannot name a whole persona.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def top_lift_tags(
    item_tags: Sequence[Sequence[str]], items: np.ndarray, n_tags: int = 3, min_support: int | None = None
) -> list[tuple[str, float]]:
    """The `n_tags` (tag, lift) pairs with the highest lift among `items` (indices into item_tags)."""
    items = np.asarray(items, dtype=np.int64)
    if items.size == 0:
        return []
    catalog = Counter(tag for tags in item_tags for tag in set(tags))
    chosen = Counter(tag for item in items for tag in set(item_tags[item]))
    n_catalog, n_chosen = len(item_tags), len(items)
    if min_support is None:
        min_support = max(2, int(np.ceil(0.1 * n_chosen)))
    lifts = [
        (tag, (count / n_chosen) / (catalog[tag] / n_catalog))
        for tag, count in chosen.items()
        if count >= min(min_support, n_chosen)
    ]
    return sorted(lifts, key=lambda pair: (-pair[1], pair[0]))[:n_tags]


def label(item_tags: Sequence[Sequence[str]], items: np.ndarray, n_tags: int = 2) -> str:
    """A short label such as "Film-Noir & Mystery" ("–" when no tag has support)."""
    tags = top_lift_tags(item_tags, items, n_tags)
    return " & ".join(tag for tag, _ in tags) if tags else "–"
