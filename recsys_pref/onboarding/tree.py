"""An interview tree learned offline from the training users (DESIGN.md, "Onboarding by questions").

Each node asks one choice question ("which of these do you like most, or none?") of a few items,
or an attribute question ("which of these kinds do you like?") over the shared bases, whose
labels name them; the answer picks the child. The tree is grown greedily on the end metric, in
the spirit of Golbandi, Koren & Lempel (WSDM 2011) and Sun et al. (WSDM 2013):

- Training users answer through the profile oracle's answer model (`choice_answers`): of the
  shown items they know (have rated), the best-rated one if it is a positive, "none" when it is
  not, "unknown" when they know none. A person does not know an item they never rated: that is
  the measured probability of not knowing it (with binary data, "known" = seen at all).
- Each training user's positives are split: `holdout_share` of them are the growth metric's
  targets (never an answer), the rest answer questions and are excluded from the ranking, as
  the bench excludes a held-out user's fold-in.
- The state at a node is the exact inference (`PersonaRecommender.fold_in`) of a short history:
  the items the user chose on the path (weight 1 each; a kind's `kind_exemplars` for an
  attribute answer) plus the node's *pooled history*, the node's growth users' positives
  averaged (the `pooled_items` most shared ones, total weight `pooled_weight` liked items). The
  pooled part is what "none" and "don't know" answers teach: who answers that way.
- A node's question is built greedily, an item at a time, maximising the summed NDCG@10 (on
  the growth users' held-out targets) of the children's states; every candidate child's state
  and every growth user's NDCG under it are computed in one batch (`ndcg_matrix`). The item
  candidates are the `pool_size` items most *known* among the node's users (the measured chance
  that a person like them can answer), never an item already shown on the path. Attribute
  questions compete with item questions at every node; the better one is asked.
- Pruning: `validation_share` of the training users never shape the tree; a split is kept
  only if it does not lower their mean NDCG@10, and a child needs `min_users` growth users.
  Off the tree (a pruned or thin answer, or past `max_depth`) the caller's fallback takes over
  (the session's posterior and information criterion), with the last node's pooled history.

The tree is plain JSON (`to_json` / `save` / `load`) with its version and the fingerprint of the
model it was grown for; loading it for another model is an error.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys_pref.core.files import atomic_write_text
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models.persona import PersonaRecommender, PersonaState

TREE_VERSION = 1
TREE_FILE = "interview_tree.json"  # beside a pipeline artifact's files
NONE_ANSWER, UNKNOWN_ANSWER = -1, -2  # answer codes besides a shown option's position
ITEM, KIND = "item", "kind"
METRIC_DEPTH = 10  # NDCG@10


class TreeError(ValueError):
    """A tree file that cannot be used: malformed, another version, or grown for another model."""


@dataclass(frozen=True)
class TreeConfig:
    """choice_size: options per question; max_depth: questions asked on the tree at most;
    min_users: growth users a node needs; pool_size: item candidates per node (most known);
    holdout_share: each training user's positives held out as the growth metric's targets;
    validation_share: training users kept for pruning; pooled_items / pooled_weight: the node's
    pooled history (items kept, total weight in liked items); attributes: let attribute
    questions compete at every node (off by default: on ml-latest-small, seed 0, 40 test users,
    NDCG@10 after 10 answers was 0.220 with them against 0.248 without: the growth metric
    preferred kind questions that did worse on held-out users); kind_items: a base's items for the attribute answer
    model (its top items by reward); kind_exemplars: items an attribute answer adds to the
    history; max_users: training users sampled (bounds time and memory); seed."""

    choice_size: int = 4
    max_depth: int = 10
    min_users: int = 15
    pool_size: int = 120
    holdout_share: float = 0.2
    validation_share: float = 0.3
    pooled_items: int = 100
    pooled_weight: float = 3.0
    attributes: bool = False
    kind_items: int = 50
    kind_exemplars: int = 5
    max_users: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.choice_size <= 6:
            problems.append(f"choice_size must be 2 to 6, got {self.choice_size}")
        if self.max_depth < 1 or self.min_users < 2 or self.pool_size < self.choice_size:
            problems.append("need max_depth >= 1, min_users >= 2 and pool_size >= choice_size")
        if not (0 < self.holdout_share < 1 and 0 <= self.validation_share < 1):
            problems.append("holdout_share must be in (0, 1) and validation_share in [0, 1)")
        if self.pooled_items < 0 or self.pooled_weight < 0 or self.kind_items < 1 or self.kind_exemplars < 1:
            problems.append("pooled_items, pooled_weight >= 0; kind_items, kind_exemplars >= 1")
        if self.max_users < 2 * self.min_users:
            problems.append(f"max_users must be >= 2 * min_users, got {self.max_users}")
        if problems:
            raise ValueError("TreeConfig: " + "; ".join(problems))


# -- the answer model ------------------------------------------------------------------------
def choice_answers(preference: np.ndarray, threshold: float) -> np.ndarray:
    """The profile oracle's answer to one choice question, vectorised over people.

    preference (n, k): each person's rating of each shown item, 0 where they do not know it
    (ratings are > 0) -> (n,) the position of the best-rated known item if it is >= threshold
    (the first of equals), NONE_ANSWER if they know one but like none, UNKNOWN_ANSWER if they
    know none."""
    known = preference > 0
    masked = np.where(known, preference, -np.inf)
    best = masked.argmax(axis=1)
    value = masked[np.arange(len(masked)), best]
    return np.where(~known.any(axis=1), UNKNOWN_ANSWER, np.where(value >= threshold, best, NONE_ANSWER))


def kind_answers(liked_counts: np.ndarray) -> np.ndarray:
    """The answer to an attribute question: liked_counts (n, k) of each person's liked items
    among each shown kind's items -> (n,) the kind with the most (the first of equals), or
    NONE_ANSWER when they like none of any (everyone can judge a kind: never unknown)."""
    best = liked_counts.argmax(axis=1)
    return np.where(liked_counts.max(axis=1) > 0, best, NONE_ANSWER)


def answer_key(code: int) -> str:
    """A child's key in the tree: the option's position, "none" or "unknown"."""
    return {NONE_ANSWER: "none", UNKNOWN_ANSWER: "unknown"}.get(int(code), str(int(code)))


@dataclass(frozen=True)
class Interviewees:
    """Training users as interviewees: preference (n, n_items), every item they know with its
    rating (> 0); threshold: a liked item's least rating; targets (n, n_items): held-out
    positives (the growth metric); answering (n, n_items): the positives that answer and that
    the ranking excludes."""

    preference: sp.csr_matrix
    threshold: float
    targets: sp.csr_matrix
    answering: sp.csr_matrix

    @classmethod
    def from_training(cls, positives: sp.csr_matrix, known: sp.csr_matrix, threshold: float, holdout_share: float,
                      rng: np.random.Generator) -> "Interviewees":
        """From training positives (n, n_items) and every known rating (n, n_items) of the same
        users (> 0; binary data: seen items 1, positives 2 with threshold 2): `holdout_share` of
        each user's positives (at least one, and one stays) become targets, unknown to the user.
        Users with fewer than 2 positives are dropped."""
        positives = sp.csr_matrix(positives, dtype=np.float32)
        counts = np.diff(positives.indptr)
        rows = np.flatnonzero(counts >= 2)
        targets = sp.lil_matrix((len(rows), positives.shape[1]), dtype=np.float32)
        for row, user in enumerate(rows):
            items = positives.indices[positives.indptr[user] : positives.indptr[user + 1]]
            size = int(np.clip(round(holdout_share * len(items)), 1, len(items) - 1))
            targets[row, rng.choice(items, size=size, replace=False)] = 1.0
        targets = targets.tocsr()
        held = targets.astype(bool)
        answering = (positives[rows].astype(bool) > held).astype(np.float32).tocsr()
        preference = sp.csr_matrix(known, dtype=np.float32)[rows]
        preference = (preference - preference.multiply(held)).tocsr()
        preference.eliminate_zeros()
        return cls(preference, float(threshold), targets, answering)

    def __len__(self) -> int:
        return self.preference.shape[0]

    def liked(self) -> sp.csr_matrix:
        """(n, n_items) bool: the known items rated at least the threshold."""
        return (self.preference >= self.threshold).multiply(self.preference > 0).tocsr()


def dataset_interviewees(dataset: InteractionDataset, train: sp.csr_matrix, config: TreeConfig = TreeConfig()
                         ) -> Interviewees:
    """The training users (the non-empty rows of `train`, positives of `dataset`'s users) as
    interviewees: every rating they gave (data without a positive threshold: seen items, with
    positives preferred)."""
    active = np.flatnonzero(np.diff(train.indptr) > 0)
    if dataset.positive_threshold is None:
        preference, threshold = binary_preference(train[active], dataset.to_csr(dataset.interactions)[active])
    else:
        preference = dataset.to_csr(dataset.interactions, binary=False)[active]
        threshold = dataset.positive_threshold
    return Interviewees.from_training(train[active], preference, threshold, config.holdout_share,
                                      np.random.default_rng(config.seed))


def binary_preference(positives: sp.csr_matrix, seen: sp.csr_matrix) -> tuple[sp.csr_matrix, float]:
    """A preference matrix and threshold for data without ratings: seen items 1, positives 2."""
    preference = (sp.csr_matrix(seen).astype(bool).astype(np.float32) + sp.csr_matrix(positives).astype(bool)).tocsr()
    return preference.maximum(sp.csr_matrix(positives).astype(bool).astype(np.float32) * 2), 2.0


# -- states and the metric -------------------------------------------------------------------
def fold_in_histories(model: PersonaRecommender, histories: sp.csr_matrix) -> PersonaState:
    """States of weighted short histories (n, n_items); an empty one gets the population prior."""
    histories = sp.csr_matrix(histories, dtype=np.float32)
    histories.eliminate_zeros()
    empty = np.diff(histories.indptr) == 0
    prior = model.prior_state()
    coefficients = np.repeat(prior.coefficients, len(empty), axis=0).astype(np.float32)
    logits = np.repeat(prior.prior_logits, len(empty), axis=0).astype(np.float32)
    if (~empty).any():
        folded = model.fold_in(histories[~empty])
        coefficients[~empty], logits[~empty] = folded.coefficients, folded.prior_logits
    return PersonaState(coefficients, logits)


def ndcg_matrix(scores: np.ndarray, exclude: np.ndarray, targets: np.ndarray, k: int = METRIC_DEPTH,
                chunk: int = 16) -> np.ndarray:
    """NDCG@k of every user under every candidate ranking: scores (C, n_items) (-inf: never
    ranked), exclude and targets (n, n_items) bool -> (n, C).

    Each ranking's top T = k + (most excluded items of any user, at most 400) items are read
    once; a user's list is that order minus their excluded items (a user excluding more than
    T - k of them gets a shorter list)."""
    n_users, n_items = exclude.shape
    depth = min(n_items, k + min(int(exclude.sum(axis=1).max(initial=0)), 400))
    ideal = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(ideal)[np.clip(targets.sum(axis=1), 1, k) - 1]  # (n,)
    result = np.empty((n_users, len(scores)))
    for start in range(0, len(scores), chunk):
        block = scores[start : start + chunk]
        order = np.argpartition(-block, depth - 1, axis=1)[:, :depth]
        order = np.take_along_axis(order, np.argsort(-np.take_along_axis(block, order, axis=1), axis=1), axis=1)
        keep = ~exclude[:, order]  # (n, c, T)
        position = np.cumsum(keep, axis=2) - 1
        hit = targets[:, order] & keep & (position < k)
        gain = np.where(hit, 1.0 / np.log2(np.clip(position, 0, None) + 2.0), 0.0)
        result[:, start : start + len(block)] = gain.sum(axis=2) / idcg[:, None]
    return result


# -- the tree ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeNode:
    """kind: "item" or "kind" (attribute) question, "leaf" for none; options: the items or bases
    shown; children: answer key (`answer_key`) -> node id; pooled_items / pooled_weights: the
    node's pooled history; depth: questions before this node; users: growth users reaching it;
    ndcg: their mean NDCG@10 at this node (in-sample)."""

    kind: str
    options: tuple[int, ...]
    children: dict[str, int]
    pooled_items: tuple[int, ...]
    pooled_weights: tuple[float, ...]
    depth: int
    users: int
    ndcg: float


@dataclass
class InterviewTree:
    """The learned interview: nodes (0 is the root), the config it was grown with, the items of
    each kind (kind_items: the answer model; the first kind_exemplars: an answer's history)
    and the fingerprint of its model."""

    nodes: list[TreeNode]
    config: TreeConfig
    kind_items: list[list[int]]
    model_fingerprint: str
    n_items: int

    @property
    def identity(self) -> str:
        """A short hash of the whole tree: a session records it and is refused by another tree."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def child(self, node: int, code: int) -> int | None:
        """The node an answer (code: a position, NONE_ANSWER or UNKNOWN_ANSWER) leads to, or None
        (off the tree)."""
        return self.nodes[node].children.get(answer_key(code))

    def answer_history(self, node: int, code: int) -> dict[int, float]:
        """Items (-> weight) an answer to `node`'s question adds to the short history."""
        current = self.nodes[node]
        if code < 0:
            return {}
        if current.kind == KIND:
            exemplars = self.kind_items[current.options[code]][: self.config.kind_exemplars]
            return {int(item): 1.0 for item in exemplars}
        return {int(current.options[code]): 1.0}

    def pooled(self, node: int) -> dict[int, float]:
        """The node's pooled history, item -> weight."""
        current = self.nodes[node]
        return dict(zip(current.pooled_items, current.pooled_weights))

    def depths(self) -> np.ndarray:
        """Depth of every node."""
        return np.array([node.depth for node in self.nodes])

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> str:
        """The tree as JSON (everything `from_json` needs)."""
        return json.dumps({
            "version": TREE_VERSION, "model": self.model_fingerprint, "n_items": self.n_items,
            "config": asdict(self.config), "kind_items": self.kind_items,
            "nodes": [asdict(node) | {"options": list(node.options), "pooled_items": list(node.pooled_items),
                                      "pooled_weights": list(node.pooled_weights)} for node in self.nodes],
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, model: PersonaRecommender | None = None) -> "InterviewTree":
        """Parse `to_json`'s output; TreeError naming the problem (truncated, another version,
        another model when `model` is given, inconsistent nodes)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TreeError(f"not an interview tree: {error}") from error
        if not isinstance(data, dict) or data.get("version") != TREE_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise TreeError(f"interview tree version {found!r} is not {TREE_VERSION}")
        try:
            config = TreeConfig(**data["config"])
            nodes = [TreeNode(node["kind"], tuple(node["options"]), {str(k): int(v) for k, v in node["children"].items()},
                              tuple(node["pooled_items"]), tuple(float(w) for w in node["pooled_weights"]),
                              int(node["depth"]), int(node["users"]), float(node["ndcg"])) for node in data["nodes"]]
            tree = cls(nodes, config, [list(map(int, items)) for items in data["kind_items"]], str(data["model"]),
                       int(data["n_items"]))
        except (KeyError, TypeError, ValueError) as error:
            raise TreeError(f"malformed interview tree: {type(error).__name__}: {error}") from error
        tree._check()
        if model is not None:
            tree.check_model(model)
        return tree

    def _check(self) -> None:
        if not self.nodes:
            raise TreeError("malformed interview tree: no nodes")
        for number, node in enumerate(self.nodes):
            limit = len(self.kind_items) if node.kind == KIND else self.n_items
            if node.kind not in (ITEM, KIND, "leaf") or any(not 0 <= option < limit for option in node.options):
                raise TreeError(f"malformed interview tree: node {number} has kind {node.kind!r} and options "
                                f"{list(node.options)} (limit {limit})")
            if any(not number < child < len(self.nodes) for child in node.children.values()):
                raise TreeError(f"malformed interview tree: node {number} has a child outside {number + 1}.."
                                f"{len(self.nodes) - 1}")

    def check_model(self, model: PersonaRecommender) -> None:
        """TreeError unless the tree was grown for `model`."""
        found = model_fingerprint(model)
        if found != self.model_fingerprint:
            raise TreeError(f"interview tree was grown for model {self.model_fingerprint}, not this model ({found}); "
                            "grow it again for this model")

    def save(self, path: Path) -> Path:
        """Write the tree JSON atomically."""
        atomic_write_text(Path(path), self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: Path, model: PersonaRecommender | None = None) -> "InterviewTree":
        """Read a saved tree (see `from_json`)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise TreeError(f"cannot read interview tree {path}: {error}") from error
        return cls.from_json(text, model)


def model_fingerprint(model: PersonaRecommender) -> str:
    """A hash of the model's shared side and configuration (what a tree's states depend on)."""
    digest = hashlib.sha256()
    shared = model.shared
    for array in (shared.item_embeddings, shared.item_bias, shared.bases):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    digest.update(json.dumps(asdict(model.config), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


# -- growing ---------------------------------------------------------------------------------
@dataclass
class _Growth:
    """What growing reads: the model, interviewees and their dense views, the catalog and the
    kinds (per base, its item set as an (K, n_items) bool matrix)."""

    model: PersonaRecommender
    people: Interviewees
    config: TreeConfig
    catalog: np.ndarray  # (n_items,) bool
    kind_items: list[list[int]]
    kind_matrix: sp.csr_matrix  # (n_items, n_kinds) 1 where the item belongs to the kind
    liked: sp.csr_matrix  # (n, n_items)
    known_ratings: sp.csr_matrix  # (n, n_items) preference
    growth: np.ndarray  # (n,) bool: shapes the tree (others: validation)

    def dense(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exclude (the answering positives) and targets of `users` as dense bool (n, n_items)."""
        return (self.people.answering[users].toarray() > 0, self.people.targets[users].toarray() > 0)

    def histories(self, rows: Sequence[dict[int, float]]) -> sp.csr_matrix:
        """Short histories (item -> weight per row) as a CSR (len(rows), n_items)."""
        indptr = np.cumsum([0] + [len(row) for row in rows])
        indices = np.fromiter((item for row in rows for item in row), np.int64, count=int(indptr[-1]))
        data = np.fromiter((weight for row in rows for weight in row.values()), np.float32, count=int(indptr[-1]))
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.catalog.size))

    def scores(self, rows: Sequence[dict[int, float]]) -> np.ndarray:
        """Catalog scores (len(rows), n_items) of the states of short histories; -inf off the catalog."""
        scores = self.model.scorer.scores(fold_in_histories(self.model, self.histories(rows)))
        scores[:, ~self.catalog] = -np.inf
        return scores

    def pooled(self, users: np.ndarray) -> dict[int, float]:
        """The pooled history of growth `users`: their most shared answering positives, total
        weight pooled_weight."""
        if self.config.pooled_weight == 0 or self.config.pooled_items == 0 or len(users) == 0:
            return {}
        share = np.asarray(self.people.answering[users].sum(axis=0)).ravel() / len(users)
        top = np.argsort(-share, kind="stable")[: self.config.pooled_items]
        top = top[share[top] > 0]
        weights = self.config.pooled_weight * share[top] / share[top].sum()
        return {int(item): float(weight) for item, weight in zip(top, weights)}


def grow_tree(model: PersonaRecommender, people: Interviewees, catalog: np.ndarray, config: TreeConfig = TreeConfig(),
              progress: bool = True) -> InterviewTree:
    """Grow an interview tree for `model` from training `people` (see the module docstring);
    catalog (n_items,) bool: the items that may be asked about and ranked."""
    rng = np.random.default_rng(config.seed)
    if len(people) > config.max_users:
        keep = np.sort(rng.choice(len(people), config.max_users, replace=False))
        people = Interviewees(people.preference[keep], people.threshold, people.targets[keep], people.answering[keep])
    if len(people) < 2 * config.min_users:
        raise ValueError(f"growing an interview tree needs at least {2 * config.min_users} training users with 2 or "
                         f"more positives, got {len(people)}")
    growth_mask = rng.random(len(people)) >= config.validation_share
    kind_items = _kind_items(model, people, catalog, config.kind_items)
    kind_matrix = sp.csr_matrix((np.ones(sum(map(len, kind_items)), np.float32),
                                 (np.concatenate(kind_items), np.repeat(np.arange(len(kind_items)), list(map(len, kind_items))))),
                                shape=(catalog.size, len(kind_items)))
    state = _Growth(model, people, config, np.asarray(catalog, bool), kind_items, kind_matrix, people.liked(),
                    people.preference, growth_mask)
    nodes: list[dict[str, Any]] = []
    # users, likes, shown (items; a kind k as -1 - k), depth, parent, answer key
    frontier = [(np.arange(len(people)), {}, (), 0, None, "")]
    with tqdm(desc="growing the interview tree", unit=" nodes", disable=not progress) as bar:
        while frontier:
            users, likes, shown, depth, parent, key = frontier.pop()
            grow_users = users[growth_mask[users]]
            node_id = len(nodes)
            pooled = state.pooled(grow_users)
            nodes.append({"kind": "leaf", "options": (), "children": {}, "pooled": pooled, "depth": depth,
                          "users": len(grow_users), "ndcg": float("nan")})
            if parent is not None:
                nodes[parent]["children"][key] = node_id
            bar.update()
            if depth >= config.max_depth:
                continue
            split = _best_split(state, users, likes, shown, pooled)
            nodes[node_id]["ndcg"] = split.node_ndcg
            if split.kind == "leaf":
                continue
            nodes[node_id] |= {"kind": split.kind, "options": split.options}
            answers = _answers(state, users, split.kind, split.options)
            newly_shown = shown + (split.options if split.kind == ITEM else tuple(-1 - k for k in split.options))
            for code in np.unique(answers):
                members = users[answers == code]
                if growth_mask[members].sum() < config.min_users:
                    continue  # too thin: off the tree for this answer
                added = _answer_items(state, split.kind, split.options, int(code))
                frontier.append((members, likes | added, newly_shown, depth + 1, node_id, answer_key(code)))
    tree_nodes = [TreeNode(node["kind"], tuple(int(o) for o in node["options"]), node["children"],
                           tuple(node["pooled"]), tuple(node["pooled"].values()), node["depth"], node["users"],
                           node["ndcg"]) for node in nodes]
    return InterviewTree(tree_nodes, config, kind_items, model_fingerprint(model), catalog.size)


def _kind_items(model: PersonaRecommender, people: Interviewees, catalog: np.ndarray, size: int) -> list[list[int]]:
    """Per base, its `size` top items by reward among items at least 5 interviewees know (the
    items its label is read from), strongest first."""
    known = np.asarray((people.preference > 0).sum(axis=0)).ravel()
    eligible = catalog & (known >= min(5, max(known.max(initial=0), 1)))
    rewards = np.where(eligible[:, None], model.shared.rewards, -np.inf)  # (n_items, K)
    size = min(size, int(eligible.sum()))
    top = np.argsort(-rewards, axis=0, kind="stable")[:size].T  # (K, size)
    return [[int(item) for item in row] for row in top]


def _answers(state: _Growth, users: np.ndarray, kind: str, options: tuple[int, ...]) -> np.ndarray:
    """Each user's answer code to a question."""
    if kind == KIND:
        counts = (state.liked[users] @ state.kind_matrix[:, list(options)]).toarray()
        return kind_answers(counts)
    return choice_answers(state.known_ratings[users][:, list(options)].toarray(), state.people.threshold)


def _answer_items(state: _Growth, kind: str, options: tuple[int, ...], code: int) -> dict[int, float]:
    """Items an answer adds to the short history (see InterviewTree.answer_history)."""
    if code < 0:
        return {}
    if kind == KIND:
        return {item: 1.0 for item in state.kind_items[options[code]][: state.config.kind_exemplars]}
    return {options[code]: 1.0}


@dataclass(frozen=True)
class _Split:
    kind: str
    options: tuple[int, ...]
    node_ndcg: float


def _merge(*parts: dict[int, float]) -> dict[int, float]:
    merged: dict[int, float] = {}
    for part in parts:
        for item, weight in part.items():
            merged[item] = merged.get(item, 0.0) + weight
    return merged


def _best_split(state: _Growth, users: np.ndarray, likes: dict[int, float], shown: tuple[int, ...],
                pooled: dict[int, float]) -> _Split:
    """The node's question (greedy on the growth users' NDCG@10, then checked on the validation
    users), or a leaf."""
    config = state.config
    grow = users[state.growth[users]]
    known = np.asarray((state.known_ratings[grow] > 0).sum(axis=0)).ravel().astype(float)
    known[~state.catalog] = 0
    known[[item for item in shown if item >= 0]] = 0
    candidates = np.argsort(-known, kind="stable")[: config.pool_size]
    candidates = candidates[known[candidates] > 0]
    base = _merge(likes, pooled)
    item_rows = [_merge(base, {int(item): 1.0}) for item in candidates]
    asked_kinds = [-1 - option for option in shown if option < 0]
    kinds = np.setdiff1d(np.arange(len(state.kind_items)), asked_kinds) if config.attributes else np.arange(0)
    kind_rows = [_merge(base, _answer_items(state, KIND, (int(kind),), 0)) for kind in kinds]
    scores = state.scores([base] + item_rows + kind_rows)
    exclude, targets = state.dense(grow)
    ndcg = ndcg_matrix(scores, exclude, targets)  # (n_grow, 1 + items + kinds)
    node_ndcg = ndcg[:, 0]
    options: list[tuple[str, tuple[int, ...], float]] = []
    if len(candidates) >= config.choice_size:
        ratings = state.known_ratings[grow][:, candidates].toarray()
        liked = ratings >= state.people.threshold
        options.append((ITEM, *_greedy_options(ratings, liked & (ratings > 0), ndcg[:, 1 : 1 + len(candidates)],
                                               node_ndcg, candidates, config.choice_size)))
    if len(kinds) >= config.choice_size:
        counts = (state.liked[grow] @ state.kind_matrix[:, kinds]).toarray()
        options.append((KIND, *_greedy_options(counts, counts > 0, ndcg[:, 1 + len(candidates):], node_ndcg, kinds,
                                               config.choice_size)))
    if not options:
        return _Split("leaf", (), float(node_ndcg.mean()))
    kind, chosen, gain = max(options, key=lambda option: option[2])
    if gain <= 0 or not _validated(state, users, likes, pooled, kind, chosen):
        return _Split("leaf", (), float(node_ndcg.mean()))
    return _Split(kind, chosen, float(node_ndcg.mean()))


def _greedy_options(strength: np.ndarray, eligible: np.ndarray, child_ndcg: np.ndarray, node_ndcg: np.ndarray,
                    candidates: np.ndarray, size: int) -> tuple[tuple[int, ...], float]:
    """Build a question option by option: strength (n, C) how much each user likes each
    candidate (a rating, a liked count), eligible (n, C) whether choosing it is possible,
    child_ndcg (n, C) each user's NDCG if they chose it, node_ndcg (n,) if they chose nothing.
    A user answers the strongest option (the first of equals). Returns the options and the
    summed NDCG gain over the node."""
    n = strength.shape[0]
    best = np.full(n, -np.inf)  # strength of each user's current answer
    current = node_ndcg.copy()
    chosen: list[int] = []
    for _ in range(size):
        switch = eligible & (strength > best[:, None])  # (n, C)
        gain = (switch * (child_ndcg - current[:, None])).sum(axis=0)
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        moved = switch[:, pick]
        best[moved], current[moved] = strength[moved, pick], child_ndcg[moved, pick]
    return tuple(int(candidates[c]) for c in chosen), float((current - node_ndcg).sum())


def _validated(state: _Growth, users: np.ndarray, likes: dict[int, float], pooled: dict[int, float], kind: str,
               options: tuple[int, ...]) -> bool:
    """True when the split does not lower the validation users' mean NDCG@10 (their children's
    states: the answer's items plus the child's pooled history, or the node's when the child is
    too thin to be a node); True when there are no validation users."""
    validation = users[~state.growth[users]]
    if len(validation) == 0:
        return True
    answers = _answers(state, users, kind, options)
    rows = [_merge(likes, pooled)]
    columns = np.zeros(len(validation), np.int64)
    validation_answers = answers[~state.growth[users]]
    for code in np.unique(validation_answers):
        members = users[answers == code]
        grown = members[state.growth[members]]
        child_pool = state.pooled(grown) if len(grown) >= state.config.min_users else pooled
        rows.append(_merge(likes, _answer_items(state, kind, options, int(code)), child_pool))
        columns[validation_answers == code] = len(rows) - 1
    exclude, targets = state.dense(validation)
    ndcg = ndcg_matrix(state.scores(rows), exclude, targets)
    return bool(ndcg[np.arange(len(validation)), columns].mean() >= ndcg[:, 0].mean())
