"""Simulated answerers for onboarding questions, used by the bench and the demo.

`ProfileOracle` answers from a held-out user's own ratings only (never their targets): the
honest simulation of a person. `ModelOracle` answers from a fitted model's scores of the user
(it has seen their targets, so results with it are an upper bound).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.data.splits import Split
from recsys_pref.onboarding.tree import NONE_ANSWER, kind_answers


def kind_reply(liked: set[int], kinds: list[int], kind_items: list[list[int]]) -> int | str:
    """The answer to "which of these kinds do you like?" (tree.kind_answers): the shown kind
    (base) with the most of the person's liked items among its items, or "none"."""
    counts = np.array([[sum(item in liked for item in kind_items[kind]) for kind in kinds]])
    code = int(kind_answers(counts)[0])
    return "none" if code == NONE_ANSWER else kinds[code]


@dataclass(frozen=True)
class ProfileOracle:
    """Answers from a user's known ratings (item index -> rating) only (see module docstring)."""

    ratings: dict[int, float]
    threshold: float

    def __call__(self, items: list[int], question_type: str) -> int | str:
        known = [item for item in items if item in self.ratings]
        if not known:
            return "unknown"
        best = max(known, key=lambda item: self.ratings[item])
        if question_type == "choice":
            return best if self.ratings[best] >= self.threshold else "none"
        if len(known) == 2:
            first, second = (self.ratings[item] for item in items)
            return "tie" if first == second else best
        return best if self.ratings[best] >= self.threshold else "unknown"

    def kind(self, kinds: list[int], kind_items: list[list[int]]) -> int | str:
        """A kind question's answer from the liked ratings (see `kind_reply`)."""
        return kind_reply({item for item, rating in self.ratings.items() if rating >= self.threshold}, kinds, kind_items)


@dataclass(frozen=True)
class ModelOracle:
    """Answers from a fitted model's scores (n_items,) of the user, with its none level."""

    scores: np.ndarray
    none_level: float

    def __call__(self, items: list[int], question_type: str) -> int | str:
        best = max(items, key=lambda item: self.scores[item])
        if question_type == "choice" and self.scores[best] < self.none_level:
            return "none"
        return best

    def kind(self, kinds: list[int], kind_items: list[list[int]]) -> int | str:
        """A kind question's answer, the items at or above the none level counting as liked."""
        return kind_reply(set(np.flatnonzero(self.scores >= self.none_level).tolist()), kinds, kind_items)


def known_ratings(dataset: InteractionDataset, split: Split, users: np.ndarray) -> list[dict[int, float]]:
    """Per sampled test user (positions into split.test), every rating outside their targets."""
    ratings = dataset.to_csr(dataset.interactions, binary=False)
    result = []
    for position in users:
        row = ratings[split.test.users[position]]
        targets = set(split.test.targets[position].indices.tolist())
        result.append({int(item): float(value) for item, value in zip(row.indices, row.data)
                       if int(item) not in targets and split.catalog[item]})
    return result
