"""Labels for directions of taste from item metadata: the tags with the highest lift.

Lift of tag t among a set S of items = share of S carrying t / share of the catalog carrying
t. Tags carried by fewer than `min_support` items of S (default: MIN_LABEL_SHARE = 25% of S,
at least 2) are ignored, so a few odd items of a rare tag (IMAX, say) cannot name a whole
persona: every tag of a label is carried by at least a quarter of the items it labels.
`label_precision` measures how well a label describes its items: the share of them carrying
at least one of its tags.

Item tags are the genres plus the user-applied tags; user tags need support and are filtered
(`item_tag_lists`): a tag carried by fewer than MIN_TAG_ITEMS items of the catalog is dropped,
and so is any tag of TAG_STOP_LIST (bookkeeping and verdicts, such as "in netflix queue",
"imdb top 250", "bad", which describe a user's list or opinion rather than the movie).

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
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_pref.models.persona.scorer import PersonaScorer
from recsys_pref.models.persona.state import PersonaState

NO_LABEL = "–"
IGNORED_TAGS = frozenset({"(no genres listed)"})
#: user tags that are bookkeeping or a verdict, not a description of the item (lower case)
TAG_STOP_LIST = frozenset({
    "in netflix queue", "netflix queue", "netflix", "to see", "seen", "seen more than once", "watched", "owned",
    "own", "dvd", "dvd-video", "bd-r", "bd-video", "clv", "tivo", "imdb top 250", "afi 100", "oscar (best picture)",
    "bad", "good", "boring", "overrated", "underrated", "predictable", "great movie", "classic", "cinematography",
    "soundtrack", "great soundtrack", "remake", "remade", "sequel", "based on a book", "fun", "unique",
})
MIN_TAG_ITEMS = 5  # user tags carried by fewer catalog items are too rare to name a taste
MIN_LABEL_SHARE = 0.25  # each tag of a label is carried by at least this share of the labelled items
TOP_ITEMS = 50  # items that define a base's or a persona's label
LABEL_TAGS = 2  # tags joined into a label ("Film-Noir & Mystery")
BASE_TAGS = 3  # tags, with their lifts, kept with a base's label (BaseLabel.tags)
DESCRIBE_BATCH = 256  # users whose personas are ranked at once (memory: batch x M x n_items floats)


@dataclass(frozen=True)
class TagIncidence:
    """Which item carries which tag; `top_lift_tags` applies the lift rule (module docstring)
    to many item sets at once. Build it once per catalog (`of`) and reuse it.

    names: the tags, sorted (the order equal lifts are broken by); matrix: (n_items, T) CSR, 1
    where the item carries the tag; catalog: (T,) items carrying each tag (every lift's
    denominator)."""

    names: list[str]
    matrix: sp.csr_matrix
    catalog: np.ndarray

    @classmethod
    def of(cls, item_tags: Sequence[Sequence[str]]) -> "TagIncidence":
        names = sorted({tag for tags in item_tags for tag in tags})
        column = {name: index for index, name in enumerate(names)}
        pairs = np.array([(item, column[tag]) for item, tags in enumerate(item_tags) for tag in set(tags)],
                         np.int64).reshape(-1, 2)
        matrix = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(item_tags), len(names)))
        return cls(names, matrix, np.asarray(matrix.sum(axis=0)).ravel())

    def top_lift_tags(
        self, item_sets: np.ndarray, n_tags: int, min_support: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """For each row of `item_sets` (R, N), item indices, the `n_tags` (tag, lift) pairs with
        the highest lift among its items, highest first (equal lifts by tag name), counted for
        all rows in one sparse product. A tag carried by fewer than `min_support` of a row's
        items is left out (default: MIN_LABEL_SHARE of N, at least 2; never more than N)."""
        item_sets = np.asarray(item_sets, dtype=np.int64)
        if item_sets.ndim != 2:
            raise ValueError(f"item_sets must be (sets, items per set), got shape {item_sets.shape}")
        n_sets, n_chosen = item_sets.shape
        tags: list[list[tuple[str, float]]] = [[] for _ in range(n_sets)]
        if n_chosen == 0:
            return tags
        if min_support is None:
            min_support = max(2, int(np.ceil(MIN_LABEL_SHARE * n_chosen)))
        selector = sp.csr_matrix((np.ones(item_sets.size), (np.repeat(np.arange(n_sets), n_chosen), item_sets.ravel())),
                                 shape=(n_sets, self.matrix.shape[0]))
        counts = (selector @ self.matrix).tocoo()  # (R, T): how many of each set's items carry each tag
        kept = counts.data >= min(min_support, n_chosen)
        rows, columns, count = counts.row[kept], counts.col[kept], counts.data[kept]
        lifts = (count / n_chosen) / (self.catalog[columns] / self.matrix.shape[0])
        order = np.lexsort((columns, -lifts, rows))  # per set: highest lift first, then the tag's name
        rows, columns, lifts = rows[order], columns[order], lifts[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")  # place within its set
        first = rank < n_tags
        for row, column, lift in zip(rows[first].tolist(), columns[first].tolist(), lifts[first].tolist()):
            tags[row].append((self.names[column], lift))
        return tags


def label_text(tags: Iterable[str]) -> str:
    """Tags joined as a label, "A & B" ("–" for none)."""
    return " & ".join(tags) or NO_LABEL


def _label(lifts: Sequence[tuple[str, float]]) -> str:
    """The label of an item set from its top-lift (tag, lift) pairs, best first."""
    return label_text(tag for tag, _ in lifts[:LABEL_TAGS])


def label_precision(item_tags: Sequence[Sequence[str]], items: np.ndarray, tags: Sequence[str]) -> float:
    """Share of `items` (indices into item_tags) that carry at least one of `tags`, the label's
    tags: 1.0 when the label describes every item, NaN when there are no items or no tags."""
    items = np.asarray(items, dtype=np.int64)
    wanted = {tag.lower() for tag in tags}
    if items.size == 0 or not wanted:
        return float("nan")
    return float(np.mean([bool(wanted & {tag.lower() for tag in item_tags[item]}) for item in items]))


def persona_label_precision(
    described: Sequence[Sequence["PersonaDescription"]], item_tags: Sequence[Sequence[str]], n_top: int = 10,
) -> float:
    """Mean `label_precision` over every labelled persona of `described` (describe_personas'
    output), on each persona's first `n_top` top items; NaN when no persona has a label."""
    values = [label_precision(item_tags, persona.top_items[:n_top], persona.tags)
              for personas in described for persona in personas if persona.tags]
    return float(np.mean(values)) if values else float("nan")


def item_tag_lists(items: pl.DataFrame, min_tag_items: int = MIN_TAG_ITEMS) -> list[list[str]]:
    """Per item (rows of a dataset's `items` frame), its genres then its user tags carried by at
    least `min_tag_items` items and not in TAG_STOP_LIST, without duplicates (compared
    case-insensitively, so the tag "sci-fi" does not repeat the genre "Sci-Fi")."""
    genres = items["genres"].to_list() if "genres" in items.columns else [None] * items.height
    tags = items["tags"].to_list() if "tags" in items.columns else [None] * items.height
    support = Counter(tag.lower() for item in tags for tag in set(item or []))
    kept = {tag for tag, count in support.items() if count >= min_tag_items and tag not in TAG_STOP_LIST}
    return [_unique_tags([*(genre or []), *(tag for tag in (tag_list or []) if tag.lower() in kept)])
            for genre, tag_list in zip(genres, tags)]


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
    n_top: int = TOP_ITEMS, n_exemplars: int = 5, tags: TagIncidence | None = None,
) -> list[BaseLabel]:
    """A label for each of the K bases (see the module docstring); `tags`:
    TagIncidence.of(item_tags), built here when not given; the tags of both poles of every
    base are counted in one product."""
    if len(item_tags) != len(eligible):
        raise ValueError(f"{len(item_tags)} items have tags but the eligibility mask covers {len(eligible)}")
    rewards = scorer.shared.rewards.T  # (K, n_items)
    n_bases = rewards.shape[0]
    top, bottom = _top(rewards, eligible, n_top), _top(-rewards, eligible, n_top)  # (K, n_top) each
    tags = TagIncidence.of(item_tags) if tags is None else tags
    lifts = tags.top_lift_tags(np.concatenate([top, bottom]), BASE_TAGS)  # 2K lists: the top poles, then the bottom
    return [
        BaseLabel(k, _label(lifts[k]), lifts[k], top[k, :n_exemplars].tolist(), _label(lifts[n_bases + k]))
        for k in range(n_bases)
    ]


def base_strengths(scorer: PersonaScorer, state: PersonaState, eligible: np.ndarray) -> np.ndarray:
    """(n, M, K) signed strength of base k in persona m: c_umk times the spread (standard
    deviation over eligible items) of r_k, i.e. how much base k moves that persona's reward."""
    spread = scorer.shared.rewards[eligible].std(axis=0)  # (K,)
    return state.coefficients * spread


@dataclass(frozen=True)
class PersonaDescription:
    """Persona m of one user: `label` from its top items (`top_items`, indices, best first), the
    label's `tags`, and `bases`: its strongest bases as (base, signed strength, the label of the
    pole it leans to)."""

    persona: int
    label: str
    top_items: list[int]
    bases: list[tuple[int, float, str]]
    tags: list[str] = field(default_factory=list)


def describe_personas(
    scorer: PersonaScorer, state: PersonaState, item_tags: Sequence[Sequence[str]], eligible: np.ndarray,
    bases: Sequence[BaseLabel] | None = None, n_top: int = TOP_ITEMS, n_bases: int = 3,
    tags: TagIncidence | None = None, top_items: np.ndarray | None = None,
) -> list[list[PersonaDescription]]:
    """Per user in `state`, a description of each persona (see the module docstring);
    `bases` (from base_labels) adds the strongest bases' labels; `tags`:
    TagIncidence.of(item_tags), built here when not given (serving builds it once), counts the
    tags of every persona's top items in one product;
    `top_items` (n, M, n_top): each persona's top eligible items by rho_um(i) + b_i, best
    first, when the caller ranked them without scoring the whole catalog (the pipeline:
    retrieval.norm_order.PersonaTopItems, the same items); None ranks them here. This is the one
    labelling of personas: the pipeline, `explain`, onboarding and the demo all name personas
    through it."""
    n_users, n_personas = state.prior_logits.shape
    strengths = base_strengths(scorer, state, eligible)  # (n, M, K)
    if top_items is None:  # each persona's own ranking rho_um(i) + b_i, a block of users at a time
        top_items = np.concatenate([
            _top(scorer.persona_scores(PersonaState(state.coefficients[block], state.prior_logits[block])), eligible,
                 n_top)
            for block in (slice(start, start + DESCRIBE_BATCH) for start in range(0, n_users, DESCRIBE_BATCH))
        ]) if n_users else np.zeros((0, n_personas, 0), np.int64)
    tags = TagIncidence.of(item_tags) if tags is None else tags
    persona_tags = [[tag for tag, _ in lifts]  # (n * M) lists
                    for lifts in tags.top_lift_tags(top_items.reshape(n_users * n_personas, -1), LABEL_TAGS)]
    strongest = np.argsort(-np.abs(strengths), axis=2, kind="stable")[:, :, :n_bases]  # (n, M, n_bases)
    described = []
    for user in range(n_users):
        personas = []
        for m in range(n_personas):
            pole = [
                NO_LABEL if bases is None else (bases[k].label if strengths[user, m, k] >= 0 else bases[k].negative_label)
                for k in strongest[user, m]
            ]
            chosen = persona_tags[user * n_personas + m]
            personas.append(PersonaDescription(
                m, label_text(chosen), top_items[user, m].tolist(),
                [(int(k), float(strengths[user, m, k]), name) for k, name in zip(strongest[user, m], pole)], chosen,
            ))
        described.append(personas)
    return described
