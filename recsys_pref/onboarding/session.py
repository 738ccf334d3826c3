"""An onboarding session: a JSON-serialisable state, the next question, answers, recommendations.

`Onboarder` binds a frozen persona model (its `StateSpace`, the question pool and item
metadata); `OnboardingState` is everything one user's onboarding needs to resume (posterior
mean and covariance over the prior coordinates, the questions shown, the answers), small
and plain enough for a web or batch flow to persist as JSON between requests.

    state = onboarder.start()
    items = onboarder.next_question(state)          # external item ids; state records it
    onboarder.answer(state, items[0])               # or "none", "tie", "unknown"
    onboarder.recommend(state, k=10)                # polars frame with each item's persona

Answers: an item shown by the pending question (the one chosen), "none" (choice questions:
none of these), "tie" (pair questions: no preference) or "unknown" (don't know any of them:
no update). No item is shown twice in one interview while the pool has unshown items.

With an interview tree (onboarding.tree) the tree asks first: the state records the tree's
identity and the node of every question asked on it (`path`), and which questions asked
about kinds (`kinds`: their options are bases, not items), so a resumed session asks exactly
the same next question. Off the tree the posterior and `config.questions.strategy` take over.
With a tree, rankings and persona descriptions come from the tree's state: the exact fold-in
of the items chosen (a kind's exemplars for a kind) plus the last tree node's pooled history.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from recsys_pref.data.dataset import IdMap, UnknownIdError
from recsys_pref.core.ranking import top_k
from recsys_pref.explain.explainer import Explainer
from recsys_pref.onboarding.posterior import NONE, TIE, Observation, Posterior, StateSpace, laplace
from recsys_pref.onboarding.questions import QuestionConfig, question_pool, select_question
from recsys_pref.onboarding.tree import (
    KIND, NONE_ANSWER, UNKNOWN_ANSWER, InterviewTree, fold_in_histories, model_fingerprint,
)
from recsys_pref.models.persona import PersonaRecommender, PersonaState

ANSWER_WORDS = ("none", "tie", "unknown")
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 states (no tree, no model fingerprint) still load


class OnboardingError(ValueError):
    """An answer or request that does not fit the session (nothing pending, finished, not shown)."""


@dataclass(frozen=True)
class OnboardingConfig:
    """questions: how questions are chosen (see QuestionConfig); max_questions: questions per
    onboarding (answered or not); newton_steps: Gauss-Newton steps per Laplace update;
    predictive_samples: posterior samples averaged by the ranking (0, the default: score the
    posterior mean alone; see `Onboarder.ranking_scores`). Measured on ml-latest-small (50 test
    users, seed 0, adaptive choice questions, profile oracle): 32 samples gave NDCG@10 0.132 /
    0.215 after 0 / 10 questions against 0.179 / 0.226 for the mean, so the mean is the default."""

    questions: QuestionConfig = QuestionConfig()
    max_questions: int = 10
    newton_steps: int = 3
    predictive_samples: int = 0

    def __post_init__(self) -> None:
        if self.predictive_samples < 0:
            raise ValueError(f"predictive_samples must be >= 0, got {self.predictive_samples}")
        if self.max_questions < 1 or self.newton_steps < 1:
            raise ValueError(f"max_questions and newton_steps must be >= 1, got {self.max_questions}, {self.newton_steps}")


@dataclass
class OnboardingState:
    """One user's onboarding, in dense item indices.

    mean (r,) and covariance (r, r): the posterior over the prior coordinates z.
    questions: items shown per question, in order (bases for a kind question); answers: per
    answered question, the chosen item (base) or one of "none", "tie", "unknown". A question
    without an answer is pending. model: fingerprint of the model it belongs to; tree: identity
    of the interview tree asking (None: no tree); path: the tree node of each question asked on
    the tree (the first len(path) questions); kinds: positions of the kind questions.
    """

    question_type: str
    max_questions: int
    mean: list[float]
    covariance: list[list[float]]
    questions: list[list[int]] = field(default_factory=list)
    answers: list[int | str] = field(default_factory=list)
    seed: int = 0
    model: str | None = None
    tree: str | None = None
    path: list[int] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)

    @property
    def pending(self) -> list[int] | None:
        """Items of the question awaiting an answer, or None."""
        return self.questions[-1] if len(self.questions) > len(self.answers) else None

    @property
    def finished(self) -> bool:
        """True once max_questions have been answered."""
        return len(self.answers) >= self.max_questions

    @property
    def posterior(self) -> Posterior:
        """The Laplace posterior over the state's coordinates that this session holds."""
        return Posterior(np.array(self.mean), np.array(self.covariance))

    def to_json(self) -> str:
        """The session as compact JSON (read back by `OnboardingState.from_json`)."""
        return json.dumps({"version": STATE_VERSION} | asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "OnboardingState":
        """Parse `to_json`'s output; raises ValueError naming what is wrong. Every field is
        checked here, once: types, a finite symmetric positive-definite covariance of the
        mean's size, and answers that fit their questions (an item shown, or "none" / "tie" /
        "unknown" as the question type allows)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"not an onboarding state: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"not an onboarding state: expected a JSON object, got {type(data).__name__}")
        version = data.pop("version", None)
        if version not in READABLE_VERSIONS:
            raise ValueError(f"onboarding state version {version!r} is not one of {READABLE_VERSIONS}")
        names = [item.name for item in fields(cls)]
        unknown, missing = sorted(set(data) - set(names)), [name for name in names[:4] if name not in data]
        if unknown or missing:
            raise ValueError(f"not an onboarding state: unknown field(s) {unknown}, missing field(s) {missing}")
        state = cls(**data)
        state._check_fields()
        return state

    def _check_fields(self) -> None:
        """ValueError naming the first field of the wrong type or value (see from_json)."""
        if self.question_type not in ("choice", "pair"):
            raise ValueError(f"onboarding state question_type must be 'choice' or 'pair', got {self.question_type!r}")
        for name in ("model", "tree"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"onboarding state {name} must be a string or null, got {getattr(self, name)!r}")
        for name in ("path", "kinds"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(_is_index(entry) for entry in value):
                raise ValueError(f"onboarding state {name} must be a list of whole numbers >= 0, got {str(value)[:60]}")
        if len(self.path) > len(self.questions) or any(position >= len(self.questions) for position in self.kinds):
            raise ValueError("onboarding state path and kinds must refer to questions it holds")
        for name in ("max_questions", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or (name == "max_questions" and value < 1):
                raise ValueError(f"onboarding state {name} must be a whole number{' >= 1' if name == 'max_questions' else ''}, "
                                 f"got {value!r}")
        mean, covariance = _numbers(self.mean, "mean", 1), _numbers(self.covariance, "covariance", 2)
        rank = len(mean)
        if covariance.shape != (rank, rank):
            raise ValueError(f"onboarding state covariance must be ({rank}, {rank}) like the mean, got {covariance.shape}")
        if not np.allclose(covariance, covariance.T, atol=1e-8) or (rank and np.linalg.eigvalsh(covariance).min() <= 0):
            raise ValueError("onboarding state covariance must be symmetric positive-definite")
        if not isinstance(self.questions, list) or not all(
                isinstance(items, list) and len(items) >= 2 and all(_is_index(item) for item in items)
                for items in self.questions):
            raise ValueError("onboarding state questions must be lists of at least 2 item indices (whole numbers >= 0)")
        if self.question_type == "pair" and any(len(items) != 2 for items in self.questions):
            raise ValueError("onboarding state of pair questions has a question without exactly 2 items")
        if not isinstance(self.answers, list) or len(self.answers) > len(self.questions):
            raise ValueError("onboarding state answers must be a list, no longer than its questions")
        words = {"choice": ("none", "unknown"), "pair": ("tie", "unknown")}[self.question_type]
        for number, (items, answer) in enumerate(zip(self.questions, self.answers), start=1):
            if not (answer in words if isinstance(answer, str) else _is_index(answer) and answer in items):
                raise ValueError(f"onboarding state answer {number} is {answer!r}: not one of the items shown "
                                 f"{items} nor one of {', '.join(map(repr, words))}")


def _numbers(values: Any, name: str, ndim: int) -> np.ndarray:
    """`values` as a finite float array of `ndim` dimensions, or ValueError naming the field."""
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != ndim or not np.isfinite(array).all():
        shape = "a list" if ndim == 1 else "a list of lists"
        raise ValueError(f"onboarding state {name} must be {shape} of finite numbers, got {str(values)[:60]}")
    return array


def _is_index(value: Any) -> bool:
    """A whole number >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def observations(state: OnboardingState) -> list[Observation]:
    """The informative answers of `state` as likelihood terms ("unknown" gives none)."""
    result = []
    with_none = state.question_type == "choice"
    for position, (items, answer) in enumerate(zip(state.questions, state.answers)):
        if answer == "unknown" or position in state.kinds:
            continue
        outcome = {"none": NONE, "tie": TIE}.get(answer) if isinstance(answer, str) else items.index(answer)
        result.append(Observation(tuple(items), with_none, outcome))
    return result


def known_and_unknown(state: OnboardingState) -> tuple[set[int], set[int]]:
    """Items the answers show the user knows (chosen ones; both of a pair they judged) and items
    they do not (every item of a choice question answered "don't know")."""
    known: set[int] = set()
    unknown: set[int] = set()
    for position, (items, answer) in enumerate(zip(state.questions, state.answers)):
        if position in state.kinds:
            continue
        if isinstance(answer, int):
            known.add(answer)
            if state.question_type == "pair":
                known.update(items)
        elif answer == "tie":
            known.update(items)
        elif answer == "unknown" and state.question_type == "choice":
            unknown.update(items)
    return known, unknown - known


def shown_items(state: OnboardingState) -> set[int]:
    """Every item shown so far (kind questions show bases, not items): the next question leaves
    them out, so no item is shown twice in one interview."""
    return {item for position, items in enumerate(state.questions) if position not in state.kinds for item in items}


def answer_code(state: OnboardingState, position: int) -> int:
    """Question `position`'s answer as a tree answer code: the chosen option's position,
    NONE_ANSWER ("none", "tie") or UNKNOWN_ANSWER."""
    answer = state.answers[position]
    if isinstance(answer, str):
        return UNKNOWN_ANSWER if answer == "unknown" else NONE_ANSWER
    return state.questions[position].index(answer)


def build_onboarder(
    model: PersonaRecommender,
    train: sp.csr_matrix,
    item_ids: IdMap,
    config: OnboardingConfig = OnboardingConfig(),
    items: pl.DataFrame | None = None,
    rank: int | None = None,
    tree: InterviewTree | None = None,
) -> "Onboarder":
    """An Onboarder for `model`, fitted on the (n_users, n_items) positives `train`: the prior
    from the training users' states, the catalog (items seen in training), the pool from their
    popularity, n_known = the median training history length; `tree`: an interview tree grown
    for `model` (onboarding.tree) that asks first."""
    counts = np.diff(train.indptr)
    active = np.flatnonzero(counts > 0)
    if len(active) < 2:
        raise ValueError("onboarding needs a model trained on at least 2 users with positives")
    popularity = np.asarray(train.sum(axis=0)).ravel()
    n_known = float(np.median(counts[active]))
    raw_states = model.fold_in(train[active], bounded=False)  # StateSpace applies the model's bounds
    space = StateSpace(model, raw_states, rank=rank, n_known=n_known, catalog=popularity > 0)
    pool = question_pool(popularity, space.rewards.numpy(), space.catalog, config.questions)
    explainer = Explainer.for_items(model.scorer, items, train) if items is not None else None
    if tree is not None:
        tree.check_model(model)
    return Onboarder(space, pool, item_ids, config, items, n_known, explainer, tree, model, popularity)


class Onboarder:
    """Questions and posterior updates for new users of one frozen persona model.

    space: the model as a function of the user state; pool: candidate item indices, most
    popular first; item_ids: external ids of the model's items; items: metadata frame (title,
    genres) in item order, or None; n_known: items a typical user knows (answerability);
    explainer: names personas as everywhere else (explain.labels), None: "persona m"; tree and
    model: the interview tree that asks first and the model (its fingerprint is recorded in each
    state, and a tree's states are its fold-ins).
    """

    def __init__(
        self,
        space: StateSpace,
        pool: np.ndarray,
        item_ids: IdMap,
        config: OnboardingConfig = OnboardingConfig(),
        items: pl.DataFrame | None = None,
        n_known: float = 50.0,
        explainer: Explainer | None = None,
        tree: InterviewTree | None = None,
        model: PersonaRecommender | None = None,
        popularity: np.ndarray | None = None,
    ) -> None:
        if len(item_ids) != space.n_items:
            raise ValueError(f"item_ids has {len(item_ids)} items, the model {space.n_items}")
        if tree is not None and model is None:
            raise ValueError("an interview tree needs the model it was grown for")
        self.tree, self.model = tree, model
        self.tree_identity = tree.identity if tree is not None else None
        self.fingerprint = model_fingerprint(model) if model is not None else None
        self.space, self.pool, self.item_ids, self.config = space, np.asarray(pool, np.int64), item_ids, config
        self.items, self.n_known, self.explainer = items, n_known, explainer
        self.popularity = None if popularity is None else np.asarray(popularity, np.float64)
        genres = items["genres"].to_list() if items is not None and "genres" in items.columns else None
        self.item_genres: list[list[str]] | None = genres if genres and any(genres) else None

    # -- the session ------------------------------------------------------------------------
    def start(self, seed: int = 0) -> OnboardingState:
        """A fresh state at the population prior."""
        prior = Posterior.prior(self.space.rank)
        return OnboardingState(self.config.questions.question_type, self.config.max_questions,
                               prior.mean.tolist(), prior.covariance.tolist(), seed=seed,
                               model=self.fingerprint, tree=self.tree_identity)

    def next_question(self, state: OnboardingState) -> list[Any]:
        """External ids of the next question's items (the pending one if unanswered); records it."""
        return self.item_ids.to_external(np.array(self.next_question_indices(state))).tolist()

    def next_question_indices(self, state: OnboardingState) -> list[int]:
        """`next_question` in dense item indices."""
        self._check_state(state)
        if state.pending is not None:
            return state.pending
        if state.finished:
            raise OnboardingError(f"onboarding is finished: all {state.max_questions} questions are answered")
        node = self.tree_question(state)
        if node is not None:
            assert self.tree is not None
            if self.tree.nodes[node].kind == KIND:
                state.kinds.append(len(state.questions))
            state.path.append(node)
            state.questions.append(list(self.tree.nodes[node].options))
            return list(self.tree.nodes[node].options)
        known, unknown = known_and_unknown(state)
        rng = np.random.default_rng([state.seed, len(state.questions)])
        left_out = unknown | shown_items(state)
        if len(np.setdiff1d(self.pool, list(left_out))) < self.config.questions.shown:
            left_out = unknown  # the pool is used up: items may come back (never a question)
        question = select_question(
            self.space, state.posterior, self.pool, {frozenset(items) for items in state.questions},
            known, left_out, self.config.questions, self.n_known, rng,
        )
        state.questions.append(list(question))
        return list(question)

    def is_kind_question(self, state: OnboardingState) -> bool:
        """True when the pending question asks about kinds (its options are bases)."""
        return state.pending is not None and len(state.questions) - 1 in state.kinds

    def reached_node(self, state: OnboardingState) -> int | None:
        """The deepest tree node the answers so far lead to (None without a tree)."""
        if self.tree is None:
            return None
        node = 0
        for position, asked in enumerate(state.path):
            if position >= len(state.answers):
                break
            following = self.tree.child(asked, answer_code(state, position))
            if following is None:
                break
            node = following
        return node

    def tree_question(self, state: OnboardingState) -> int | None:
        """The tree node that asks the next question, or None when the session is off the tree."""
        if self.tree is None or len(state.path) < len(state.questions):
            return None
        node = self.reached_node(state)
        assert node is not None
        if self.tree.nodes[node].kind == "leaf" or node in state.path:
            return None
        return node

    def answer(self, state: OnboardingState, choice: Any) -> OnboardingState:
        """Record the answer to the pending question and update the posterior (returns `state`).

        choice: the external id of a shown item, or "none" (choice questions), "tie" (pair
        questions) or "unknown" (don't know)."""
        self._check_state(state)
        items = state.pending
        if items is None:
            detail = "onboarding is finished" if state.finished else "call next_question first"
            raise OnboardingError(f"no question is pending: {detail}")
        if self.is_kind_question(state):
            state.answers.append(self._kind_code(choice, items))
            return state
        state.answers.append(self._answer_code(choice, items, state.question_type))
        if self.tree is None:
            if state.answers[-1] != "unknown":
                self._update_posterior(state)
        elif self.tree_question(state) is None and observations(state):
            self._update_posterior(state)  # the next question is the fallback's: it needs the posterior
        return state

    def _update_posterior(self, state: OnboardingState) -> None:
        """The Laplace posterior of every answer so far, from the state's mean. With a tree the
        posterior serves only the fallback's criterion, so it is updated only after answers that
        leave the session off the tree (the first one takes in every answer given on the tree)."""
        posterior = laplace(self.space, observations(state), state.posterior.mean, self.config.newton_steps)
        state.mean, state.covariance = posterior.mean.tolist(), posterior.covariance.tolist()

    def answer_index(self, state: OnboardingState, choice: int | str) -> OnboardingState:
        """`answer` with a dense item index instead of an external id."""
        if isinstance(choice, str) or self.is_kind_question(state):
            return self.answer(state, choice)
        if not isinstance(choice, (int, np.integer)) or not 0 <= int(choice) < self.space.n_items:
            raise OnboardingError(f"answer index {choice!r} is not an item index of this model (0.."
                                  f"{self.space.n_items - 1})")
        return self.answer(state, self.item_ids.to_external(np.array([choice]))[0].item())

    def _kind_code(self, choice: Any, kinds: list[int]) -> int | str:
        """A kind question's answer: a shown base, "none" or "unknown"."""
        if isinstance(choice, str) and choice in ("none", "unknown"):
            return choice
        if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool) and int(choice) in kinds:
            return int(choice)
        raise OnboardingError(f"answer {choice!r} is not one of the kinds shown {kinds} nor 'none' or 'unknown'")

    def _answer_code(self, choice: Any, items: list[int], question_type: str) -> int | str:
        if isinstance(choice, str) and choice in ANSWER_WORDS:
            if (choice, question_type) in (("none", "pair"), ("tie", "choice")):
                allowed = "'tie'" if question_type == "pair" else "'none'"
                raise OnboardingError(f"{choice!r} is not an answer to a {question_type} question; use {allowed}")
            return choice
        try:
            index = int(self.item_ids.to_index(choice)[0])
        except UnknownIdError as error:
            raise OnboardingError(f"answer {choice!r} is not an item of this model nor one of {ANSWER_WORDS}") from error
        if index not in items:
            shown = self.item_ids.to_external(np.array(items)).tolist()
            raise OnboardingError(f"item {choice!r} was not shown in the pending question {shown}")
        return index

    def check_state(self, state: OnboardingState) -> None:
        """ValueError (OnboardingError for another model or tree) unless `state` belongs to this
        onboarder: its rank, catalog, question type, model, tree and tree path."""
        self._check_state(state)

    def _check_state(self, state: OnboardingState) -> None:
        if not isinstance(state, OnboardingState):
            raise TypeError(f"expected an OnboardingState, got {type(state).__name__}")
        if len(state.mean) != self.space.rank:
            raise ValueError(f"state has rank {len(state.mean)}, this onboarder {self.space.rank}")
        shown = [item for question in state.questions for item in question]
        if any(not 0 <= item < self.space.n_items for item in shown):
            raise ValueError(f"state shows items outside this model's catalog of {self.space.n_items}")
        if state.question_type != self.config.questions.question_type:
            raise ValueError(f"state asks {state.question_type} questions, this onboarder "
                             f"{self.config.questions.question_type} questions")
        if state.model is not None and state.model != self.fingerprint and self.fingerprint is not None:
            raise OnboardingError(f"state belongs to model {state.model}, this onboarder's model is {self.fingerprint}")
        if state.tree != self.tree_identity:
            raise OnboardingError(f"state was asked by interview tree {state.tree}, this onboarder uses "
                                  f"{self.tree_identity}: start a new session")
        self._check_path(state)

    def _check_path(self, state: OnboardingState) -> None:
        """OnboardingError unless the state's tree path is the one its answers lead to."""
        if self.tree is None:
            if state.path or state.kinds:
                raise OnboardingError("state has a tree path but this onboarder has no interview tree")
            return
        expected, node = [], 0
        for position in range(len(state.path)):
            expected.append(node)
            if position >= len(state.answers):
                break
            following = self.tree.child(node, answer_code(state, position))
            if following is None:
                break
            node = following
        kinds = [position for position, asked in enumerate(state.path) if self.tree.nodes[asked].kind == KIND]
        options = [list(self.tree.nodes[asked].options) for asked in state.path]
        if state.path != expected[: len(state.path)] or len(expected) < len(state.path) or kinds != state.kinds \
                or options != state.questions[: len(state.path)]:
            raise OnboardingError("state's tree path does not follow this interview tree from its answers")
    # -- results ----------------------------------------------------------------------------
    def tree_history(self, state: OnboardingState) -> dict[int, float]:
        """The tree's short history of a session: items chosen (weight 1; a kind's exemplars)
        plus the pooled history of the deepest node reached."""
        assert self.tree is not None
        node = self.reached_node(state)
        history = dict(self.tree.pooled(node if node is not None else 0))
        for position, answer in enumerate(state.answers):
            code = answer_code(state, position)
            if position < len(state.path):
                added = self.tree.answer_history(state.path[position], code)
            else:
                added = {int(answer): 1.0} if code >= 0 else {}
            for item, weight in added.items():
                history[item] = history.get(item, 0.0) + weight
        return history

    def persona_states(self, states: Sequence[OnboardingState]) -> PersonaState:
        """Each session's persona state: the tree's fold-in (with a tree) or the posterior mean."""
        if self.tree is None:
            parts = [self.space.persona_state(np.array(state.mean)) for state in states]
            return PersonaState(np.concatenate([part.coefficients for part in parts]),
                                np.concatenate([part.prior_logits for part in parts]))
        assert self.model is not None
        rows = [self.tree_history(state) for state in states]
        indptr = np.cumsum([0] + [len(row) for row in rows])
        indices = np.array([item for row in rows for item in row], np.int64)
        data = np.array([weight for row in rows for weight in row.values()], np.float32)
        return fold_in_histories(self.model, sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.space.n_items)))

    def scores_and_attention(self, states: Sequence[OnboardingState]) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, n_items) and attention (n, M, n_items) at each state (the posterior mean,
        or the tree's fold-in)."""
        if self.tree is not None:
            terms = self.space.scorer.terms(self.persona_states(states))
            scores = np.array(terms.scores, dtype=np.float64)
            scores[:, ~self.space.catalog] = -np.inf
            return scores, np.asarray(terms.attention)
        z = torch.as_tensor(np.array([state.mean for state in states]), dtype=torch.float64)
        with torch.no_grad():
            scores, attention = self.space.scores_at(z)
        banned = ~self.space.catalog
        scores = scores.numpy()
        scores[:, banned] = -np.inf
        return scores, attention.numpy()

    def ranking_scores(self, states: Sequence[OnboardingState]) -> np.ndarray:
        """(n, n_items) scores that rank the catalog: log of the posterior-averaged share of each
        item, log E_z[softmax_catalog(s(z))], over `predictive_samples` fixed draws z = m + L eps
        (S = L L^T); with no answer this is the training users' average taste, i.e. close to
        popularity, where the mean state alone is not. Items outside the catalog get -inf. With
        an interview tree: the tree's fold-ins (`_tree_ranking_scores`)."""
        samples = self.config.predictive_samples
        if self.tree is not None:
            return self._tree_ranking_scores(states)
        if samples == 0:
            return self.scores_and_attention(states)[0]
        noise = torch.randn(samples, self.space.rank, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        catalog = torch.from_numpy(self.space.catalog)
        result = np.empty((len(states), self.space.n_items))
        with torch.no_grad():
            for row, state in enumerate(states):
                root = torch.linalg.cholesky(torch.tensor(state.covariance, dtype=torch.float64))
                z = torch.tensor(state.mean, dtype=torch.float64) + noise @ root.T
                scores, _ = self.space.scores_at(z)  # (S, n_items)
                shares = torch.log_softmax(scores.masked_fill(~catalog, -torch.inf), dim=1)
                result[row] = (torch.logsumexp(shares, dim=0) - np.log(samples)).numpy()
        return result

    def _tree_ranking_scores(self, states: Sequence[OnboardingState]) -> np.ndarray:
        """(n, n_items) scores of the tree's fold-ins; a session with no answer yet ranks by
        log popularity instead (when the onboarder knows it): with nothing known about a person,
        the items most people like are the population's best guess, and the root's fold-in (its
        pooled history) only approximates that list (BENCHMARKS.md, issue 12, n = 0)."""
        scores = self.scores_and_attention(states)[0]
        if self.popularity is not None:
            unanswered = [row for row, state in enumerate(states) if not state.answers]
            with np.errstate(divide="ignore"):  # log 0 = -inf: items no one liked rank last
                scores[unanswered] = np.where(self.space.catalog, np.log(self.popularity), -np.inf)
        return scores

    def persona_labels(self, state: OnboardingState) -> list[str]:
        """A label per persona of the posterior mean state, by the one labelling function
        (explain.labels.describe_personas) the pipeline, `explain` and the demo use."""
        persona = self.persona_states([state])
        if self.explainer is None:
            return [f"persona {m}" for m in range(persona.coefficients.shape[1])]
        return [description.label for description in self.explainer.describe(persona)[0]]

    def persona_rewards(self, state: OnboardingState) -> np.ndarray:
        """rho_m(i) of the posterior mean state: (M, n_items)."""
        return self.space.scorer.terms(self.persona_states([state])).rho[0]

    def persona_mix(self, state: OnboardingState) -> list[tuple[str, float]]:
        """(label, share) per persona, share = its mean attention over the catalog, largest first."""
        _, attention = self.scores_and_attention([state])
        shares = attention[0][:, self.space.catalog].mean(axis=1)
        pairs = list(zip(self.persona_labels(state), shares.tolist()))
        return sorted(pairs, key=lambda pair: -pair[1])

    def recommend(self, state: OnboardingState, k: int = 10, exclude_answered: bool = True) -> pl.DataFrame:
        """Top-k at the posterior mean: rank, item_id, title, score, persona, persona_label,
        persona_weight (the persona with the largest attention for the item, and that attention).
        exclude_answered: leave out items the user said they know (they have seen them)."""
        self._check_state(state)
        _, attention = self.scores_and_attention([state])
        scores = self.ranking_scores([state])
        exclude = None
        if exclude_answered:
            known, _ = known_and_unknown(state)
            columns = np.array(sorted(known), dtype=np.int64)
            exclude = sp.csr_matrix((np.ones(len(columns)), (np.zeros(len(columns), int), columns)),
                                    shape=(1, self.space.n_items))
        ids, values = top_k(scores, k, exclude=exclude)
        ids = ids[0][ids[0] >= 0]
        persona_attention = attention[0][:, ids]  # (M, k)
        personas = persona_attention.argmax(axis=0)
        labels = self.persona_labels(state)
        return pl.DataFrame({
            "rank": np.arange(1, len(ids) + 1, dtype=np.int32),
            "item_id": self.item_ids.to_external(ids).tolist(),
            "title": self.titles(ids),
            "score": values[0][: len(ids)].astype(np.float32),
            "persona": personas.astype(np.int32),
            "persona_label": [labels[m] for m in personas],
            "persona_weight": persona_attention.max(axis=0).astype(np.float32),
        })

    def titles(self, items: np.ndarray) -> list[str]:
        """Display titles of dense item indices (the external id where there is no title)."""
        if self.items is not None and "title" in self.items.columns:
            return [str(title) for title in self.items["title"].gather(np.asarray(items, np.int64)).to_list()]
        return [str(item) for item in self.item_ids.to_external(np.asarray(items)).tolist()]
