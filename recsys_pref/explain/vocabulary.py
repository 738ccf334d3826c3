"""The words a summary may use, and the state each word stands for.

A summary is only a carrier of a person if its words decode to coefficients. The vocabulary
of one fitted model holds three kinds of words, all learned once, like the shared side:

- persona labels (`labels`, `entries` (V, K)): the label describe_personas gives a persona,
  and the persona it stands for: the mean (weighted by persona weight) of the coefficients of
  every training persona carrying that label. Only labels that name themselves are kept: the
  entry, described by the one labelling function, gets its own label back. This is what
  makes the summary round trip exact.
- lean labels (`leans`, `lean_directions` (L, K), unit rows): the labels of the shared bases'
  poles (explain.labels.base_labels); a label shared by several poles names their sum
  (+e_k for a positive pole, -e_k for a negative one). "X leans toward A" adds `lean_step`
  times A's direction to persona X.
- titles (`titles`, `item_rewards` (n_items, K)): every item's title and reward vector r(i),
  for "because you liked" sentences (the first item of a repeated title is the one meant).
- tags (`tags`, `tag_directions` (T, K)): each tag carried by enough eligible items, as the
  direction in coefficient space whose reward best separates its items from the others (a
  ridge regression of the tag's indicator on the base rewards), scaled so that its items'
  mean reward is 1 above the others'. Edits ("more Horror") move personas along them.

Labels and tags are matched case-insensitively; persona labels are listed most common first.
Labels holding a character of the grammar (`,;().%"`) are left out of the vocabulary.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

import numpy as np

from recsys_pref.explain.labels import NO_LABEL
from recsys_pref.models.persona.state import PersonaState

if TYPE_CHECKING:
    from recsys_pref.explain.explainer import Explainer

UNWRITABLE = re.compile(r'[,;().%"]')  # labels with these would not parse back: left out
MIN_TAG_ITEMS = 5  # a tag carried by fewer eligible items gets no direction
TAG_RIDGE = 1e-3  # ridge of the tag regression, relative to the mean diagonal of the reward Gram


@dataclass(frozen=True)
class SummaryVocabulary:
    """See the module docstring. Arrays are float32; K is the model's number of bases."""

    labels: tuple[str, ...]
    entries: np.ndarray  # (V, K)
    leans: tuple[str, ...]
    lean_directions: np.ndarray  # (L, K), unit rows
    lean_step: float
    tags: tuple[str, ...]
    tag_directions: np.ndarray  # (T, K)
    titles: tuple[str, ...]
    item_rewards: np.ndarray  # (n_items, K)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.entries) or len(self.leans) != len(self.lean_directions) \
                or len(self.tags) != len(self.tag_directions):
            raise ValueError("every label, lean and tag needs exactly one row of coefficients")
        if len(self.titles) != len(self.item_rewards):
            raise ValueError(f"{len(self.titles)} titles for {len(self.item_rewards)} items")
        if not self.labels:
            raise ValueError("a summary vocabulary needs at least one persona label")

    @property
    def n_bases(self) -> int:
        """K, the coefficients per persona."""
        return int(self.entries.shape[1])

    def label_index(self, name: str) -> int | None:
        """Index of persona label `name` (case-insensitive), None if it is not one."""
        return _find(self.labels, name)

    def lean_index(self, name: str) -> int | None:
        """Index of lean label `name` (case-insensitive), None if it is not one."""
        return _find(self.leans, name)

    def title_index(self, title: str) -> int | None:
        """The item titled `title` (exact, surrounding spaces ignored), None if none is."""
        return self._title_items.get(title.strip())

    def entry_for(self, name: str) -> int | None:
        """The persona label `name` is (exactly), else the most common one having `name` as a tag."""
        exact = self.label_index(name)
        if exact is not None:
            return exact
        wanted = name.strip().lower()
        return next((index for index, label in enumerate(self.labels)
                     if wanted in (part.strip().lower() for part in label.split("&"))), None)

    def reward_spread(self, coefficients: np.ndarray) -> np.ndarray:
        """(P,) standard deviation over the catalog of each persona's reward <c_p, r(i)>."""
        return (np.asarray(coefficients) @ self.item_rewards.T).std(axis=1)

    @cached_property
    def _title_items(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for item, title in enumerate(self.titles):
            found.setdefault(title.strip(), item)
        return found

    def tag_direction(self, name: str) -> np.ndarray | None:
        """(K,) the direction of tag `name`, or of a label "A & B" (the mean of its tags'),
        None when no part is a known tag."""
        found = [_find(self.tags, part) for part in name.split("&")]
        rows = [self.tag_directions[index] for index in found if index is not None]
        return np.mean(rows, axis=0) if rows else None

    @classmethod
    def from_states(cls, explainer: Explainer, states: PersonaState, titles: Sequence[str] | None = None,
                    min_weight: float = 1.0) -> "SummaryVocabulary":
        """The vocabulary learned from training users' `states` (see the module docstring);
        `titles`: one per item (default none); a label needs a summed persona weight of at
        least `min_weight` (about one user)."""
        described = explainer.describe(states)
        weights = _softmax(states.prior_logits)  # (n, M)
        sums: dict[str, np.ndarray] = {}
        mass: dict[str, float] = {}
        for user, personas in enumerate(described):
            for persona in personas:
                if persona.label == NO_LABEL or UNWRITABLE.search(persona.label):
                    continue
                weight = float(weights[user, persona.persona])
                sums[persona.label] = sums.get(persona.label, 0.0) + weight * states.coefficients[user, persona.persona]
                mass[persona.label] = mass.get(persona.label, 0.0) + weight
        candidates = sorted((label for label, total in mass.items() if total >= min_weight),
                            key=lambda label: (-mass[label], label))
        if not candidates:
            raise ValueError("no persona label has enough weight among the states to enter a vocabulary")
        entries = np.stack([sums[label] / mass[label] for label in candidates]).astype(np.float32)  # (V, K)
        own = explainer.describe(PersonaState(entries[:, None, :], np.zeros((len(entries), 1))))
        keep = [index for index, label in enumerate(candidates) if own[index][0].label == label]
        leans, directions = _lean_directions(explainer, states.coefficients.shape[2])
        tags, tag_directions = _tag_directions(explainer)
        residuals = [states.coefficients[user, persona.persona] - sums[persona.label] / mass[persona.label]
                     for user, personas in enumerate(described) for persona in personas if persona.label in sums]
        step = float(np.median(np.abs(np.stack(residuals) @ directions.T).max(axis=1))) if residuals else 0.0
        rewards = explainer.scorer.shared.rewards
        titles = tuple(titles) if titles is not None else ("",) * len(rewards)
        return cls(tuple(candidates[index] for index in keep), entries[keep], leans, directions, step,
                   tags, tag_directions, titles, rewards)


def _find(names: tuple[str, ...], name: str) -> int | None:
    wanted = name.strip().lower()
    return next((index for index, known in enumerate(names) if known.lower() == wanted), None)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _lean_directions(explainer: Explainer, n_bases: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Each base-pole label and the unit sum of its poles' signed unit vectors: (L, K)."""
    sums: dict[str, np.ndarray] = {}
    for base in explainer.bases:
        for name, sign in ((base.label, 1.0), (base.negative_label, -1.0)):
            if name != NO_LABEL and not UNWRITABLE.search(name):
                sums.setdefault(name, np.zeros(n_bases))[base.base] += sign
    names = tuple(sorted(name for name, vector in sums.items() if np.linalg.norm(vector) > 0))
    if not names:
        return (), np.zeros((0, n_bases), np.float32)
    directions = np.stack([sums[name] / np.linalg.norm(sums[name]) for name in names])
    return names, directions.astype(np.float32)


def _tag_directions(explainer: Explainer) -> tuple[tuple[str, ...], np.ndarray]:
    """Each tag with >= MIN_TAG_ITEMS eligible items and its direction (T, K) (module docstring)."""
    eligible = np.flatnonzero(explainer.eligible)
    rewards = explainer.scorer.shared.rewards[eligible].astype(np.float64)  # (E, K)
    centred = rewards - rewards.mean(axis=0)
    gram = centred.T @ centred
    gram += TAG_RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    counts: dict[str, list[int]] = {}
    for row, item in enumerate(eligible):
        for tag in explainer.item_tags[item]:
            counts.setdefault(tag, []).append(row)
    names = tuple(sorted(tag for tag, rows in counts.items()
                         if MIN_TAG_ITEMS <= len(rows) < len(eligible) and not UNWRITABLE.search(tag)))
    directions = []
    for tag in names:
        indicator = np.zeros(len(eligible))
        indicator[counts[tag]] = 1.0
        direction = np.linalg.solve(gram, centred.T @ (indicator - indicator.mean()))  # (K,)
        reward = rewards @ direction
        gap = reward[indicator > 0].mean() - reward[indicator == 0].mean()
        directions.append(direction / gap if gap > 0 else np.zeros_like(direction))
    matrix = np.stack(directions) if directions else np.zeros((0, rewards.shape[1]))
    return names, matrix.astype(np.float32)
