"""Labels for directions of taste from item metadata: the tags with the highest lift.

Lift of tag t among a set S of items = share of S carrying t / share of the catalog carrying
t. Tags carried by fewer than `min_support` items of S (default: 10% of S, at least 2) are
ignored, so a few odd items of a rare tag (IMAX, say) cannot name a whole persona.

Two things get labels (DESIGN.md, "Explanations and summaries"):
- each shared base k, from its top items by r_k(i) (and its negative pole from its bottom
  items, since users' coefficients are signed), with a few exemplar items;
- each persona m of a user, from its own top items by rho_um(i) + b_i (the user's ranking if
  that persona alone held the attention), together with its strongest bases.
Only `eligible` items take part: items enough training users liked for their embedding to
mean something (an item seen once has an embedding that is mostly initialisation noise).
On `synthetic` the item tags are the planted "taste-k", so labels name planted tastes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from recsys_pref.models.persona.scorer import PersonaScorer
from recsys_pref.models.persona.state import PersonaState

NO_LABEL = "–"
IGNORED_TAGS = frozenset({"(no genres listed)"})
TOP_ITEMS = 50  # items that define a base's or a persona's label
DESCRIBE_BATCH = 256  # users whose personas are ranked at once (memory: batch x M x n_items floats)


def catalog_tag_counts(item_tags: Sequence[Sequence[str]]) -> Counter[str]:
    """How many items of the catalog carry each tag (the denominator of every lift)."""
    return Counter(tag for tags in item_tags for tag in set(tags))


def top_lift_tags(
    item_tags: Sequence[Sequence[str]], items: np.ndarray, n_tags: int = 3, min_support: int | None = None,
    catalog: Counter[str] | None = None,
) -> list[tuple[str, float]]:
    """The `n_tags` (tag, lift) pairs with the highest lift among `items` (indices into
    item_tags); `catalog`: catalog_tag_counts(item_tags), computed here when not given."""
    items = np.asarray(items, dtype=np.int64)
    if items.size == 0:
        return []
    catalog = catalog_tag_counts(item_tags) if catalog is None else catalog
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


def label(item_tags: Sequence[Sequence[str]], items: np.ndarray, n_tags: int = 2,
          catalog: Counter[str] | None = None) -> str:
    """A short label such as "Film-Noir & Mystery" ("–" when no tag has support)."""
    tags = top_lift_tags(item_tags, items, n_tags, catalog=catalog)
    return " & ".join(tag for tag, _ in tags) if tags else NO_LABEL


def item_tag_lists(items: pl.DataFrame) -> list[list[str]]:
    """Per item (rows of a dataset's `items` frame), its genres then its tags, without duplicates
    (compared case-insensitively, so the tag "sci-fi" does not repeat the genre "Sci-Fi")."""
    columns = [name for name in ("genres", "tags") if name in items.columns]
    if not columns:
        return [[] for _ in range(items.height)]
    lists = zip(*(items[name].to_list() for name in columns))
    return [_unique_tags(tag for part in parts for tag in (part or [])) for parts in lists]


def _unique_tags(tags: Iterable[str]) -> list[str]:
    """The first spelling of each tag (case-insensitive), in order, without IGNORED_TAGS."""
    first: dict[str, str] = {}
    for tag in tags:
        if tag not in IGNORED_TAGS:
            first.setdefault(tag.lower(), tag)
    return list(first.values())


def eligible_items(item_users: np.ndarray, min_users: int = 5) -> np.ndarray:
    """(n_items,) bool: items liked by at least `min_users` training users (at least the 10% most
    liked items when fewer than 50 items pass, so a small catalog still has labels)."""
    item_users = np.asarray(item_users)
    if item_users.ndim != 1 or item_users.size == 0:
        raise ValueError(f"item_users must be a non-empty 1-D count per item, got shape {item_users.shape}")
    mask = item_users >= min_users
    if mask.sum() < min(TOP_ITEMS, item_users.size):
        mask = item_users >= np.quantile(item_users, 0.9)
    return mask & (item_users > 0)


def _top(values: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest `values` (last axis) among eligible items, best first: (..., n)."""
    masked = np.where(eligible, values, -np.inf)
    n = min(n, int(eligible.sum()))
    part = np.argpartition(-masked, n - 1, axis=-1)[..., :n]
    order = np.argsort(-np.take_along_axis(masked, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


@dataclass(frozen=True)
class BaseLabel:
    """One shared base k: `label` from its top items by r_k(i) (with each tag's lift in `tags`),
    `exemplars` (item indices, strongest first), and `negative_label` from its bottom items."""

    base: int
    label: str
    tags: list[tuple[str, float]]
    exemplars: list[int]
    negative_label: str


def base_labels(
    scorer: PersonaScorer, item_tags: Sequence[Sequence[str]], eligible: np.ndarray,
    n_top: int = TOP_ITEMS, n_exemplars: int = 5,
) -> list[BaseLabel]:
    """A label for each of the K bases (see the module docstring)."""
    if len(item_tags) != len(eligible):
        raise ValueError(f"{len(item_tags)} items have tags but the eligibility mask covers {len(eligible)}")
    rewards = scorer.shared.rewards.T  # (K, n_items)
    top, bottom = _top(rewards, eligible, n_top), _top(-rewards, eligible, n_top)
    catalog = catalog_tag_counts(item_tags)
    return [
        BaseLabel(k, label(item_tags, top[k], catalog=catalog), top_lift_tags(item_tags, top[k], catalog=catalog),
                  top[k, :n_exemplars].tolist(), label(item_tags, bottom[k], catalog=catalog))
        for k in range(rewards.shape[0])
    ]


def base_strengths(scorer: PersonaScorer, state: PersonaState, eligible: np.ndarray) -> np.ndarray:
    """(n, M, K) signed strength of base k in persona m: c_umk times the spread (standard
    deviation over eligible items) of r_k, i.e. how much base k moves that persona's reward."""
    spread = scorer.shared.rewards[eligible].std(axis=0)  # (K,)
    return state.coefficients * spread


@dataclass(frozen=True)
class PersonaDescription:
    """Persona m of one user: `label` from its top items (`top_items`, indices, best first) and
    `bases`: its strongest bases as (base, signed strength, the label of the pole it leans to)."""

    persona: int
    label: str
    top_items: list[int]
    bases: list[tuple[int, float, str]]


def describe_personas(
    scorer: PersonaScorer, state: PersonaState, item_tags: Sequence[Sequence[str]], eligible: np.ndarray,
    bases: Sequence[BaseLabel] | None = None, n_top: int = TOP_ITEMS, n_bases: int = 3,
) -> list[list[PersonaDescription]]:
    """Per user in `state`, a description of each persona (see the module docstring);
    `bases` (from base_labels) adds the strongest bases' labels. This is the one labelling of
    personas: the pipeline, `explain`, onboarding and the demo all name personas through it."""
    strengths = base_strengths(scorer, state, eligible)  # (n, M, K)
    catalog = catalog_tag_counts(item_tags)
    described = []
    for user in range(len(state)):
        if user % DESCRIBE_BATCH == 0:  # each persona's own ranking rho_um(i) + b_i, a block of users at a time
            block = slice(user, user + DESCRIBE_BATCH)
            tops = _top(scorer.persona_scores(PersonaState(state.coefficients[block], state.prior_logits[block])),
                        eligible, n_top)  # (B, M, n_top)
        top = tops[user % DESCRIBE_BATCH]
        personas = []
        for m in range(state.coefficients.shape[1]):
            strongest = np.argsort(-np.abs(strengths[user, m]), kind="stable")[:n_bases]
            pole = [
                NO_LABEL if bases is None else (bases[k].label if strengths[user, m, k] >= 0 else bases[k].negative_label)
                for k in strongest
            ]
            personas.append(PersonaDescription(
                m, label(item_tags, top[m], catalog=catalog), top[m].tolist(),
                [(int(k), float(strengths[user, m, k]), name) for k, name in zip(strongest, pole)],
            ))
        described.append(personas)
    return described
