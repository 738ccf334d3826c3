"""A feedback-loop simulator: simulated users with known tastes consume from the slates they
are shown, and the model folds their grown histories in again, for T rounds.

Each round t = 0..T: every user gets a slate of k items (the model's, built with the given
safeguards, or the ideal recommender's top-k by true utility); the slate is audited; then
(for t < T) each user consumes by a multinomial logit over the slate's true utilities divided
by `choice_temperature`, with a no-choice option whose utility is the user's
`no_choice_quantile` of utilities over the catalog: up to `choices_per_round` sequential draws
without replacement (Gumbel-top-k), stopping at no-choice. Consumed items join the history;
the model folds the new histories in (and refits every `retrain_every` rounds when a trainer
is given). With `drift` > 0, tastes move toward what was consumed:

    U_u <- U_u + drift * std(U_u at t = 0) * z(mean_j cos(e_j, e_i))   over consumed j

(z = standardised over the catalog; e = the truth's item embeddings), so consumption makes a
user like more of the same, as in Chaney et al. (RecSys 2018).

Metrics per round (safeguards.audit and evaluation.beyond_accuracy; k = the slate size):
ndcg@10 against true utilities (gain exp(U / choice_temperature), normalised by the ideal
slate's DCG), true_utility (mean U over slate items), homogenization (mean Jaccard between
users' slates), homogenization_vs_ideal (Chaney's), calibration_kl (genres, history vs slate),
persona_entropy, coverage, gini, taste_drift (mean 1 - Pearson correlation of each user's
current and initial utilities).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp
from tqdm.auto import tqdm

from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.core.ranking import top_k
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.evaluation.audit import slate_audit
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.safeguards.slate import SlateBuilder

PLANTED_TEMPERATURE = 0.1  # make_synthetic's default choice temperature (the truth's softmax)
NDCG_K = 10


@dataclass(frozen=True)
class SimulationConfig:
    """rounds: T, feedback rounds (rows for t = 0..T). k: slate size.
    choices_per_round: items a user may consume per round. choice_temperature: divides true
    utilities in the choice model (1 = the truth's own logits). no_choice_quantile: the
    no-choice option's utility, as a quantile of the user's utilities over the catalog.
    drift: taste drift toward consumed items per round (0 = fixed tastes).
    retrain_every: refit the model every this many rounds on training + simulated histories
    (0 = fold-in only). seed: the choice draws."""

    rounds: int = 10
    k: int = 10
    choices_per_round: int = 2
    choice_temperature: float = 1.0
    no_choice_quantile: float = 0.99
    drift: float = 0.0
    retrain_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("rounds", "k", "choices_per_round"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.choice_temperature > 0:
            problems.append(f"choice_temperature must be > 0, got {self.choice_temperature}")
        if not 0 <= self.no_choice_quantile <= 1:
            problems.append(f"no_choice_quantile must lie in [0, 1], got {self.no_choice_quantile}")
        if self.drift < 0 or self.retrain_every < 0:
            problems.append(f"drift and retrain_every must be >= 0, got {self.drift} and {self.retrain_every}")
        if problems:
            raise ValueError("SimulationConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class TrueTastes:
    """utilities (n, n_items) float64: each simulated user's true utility of every item (logits
    of their choice distribution); item_embeddings (n_items, d): the truth's item vectors,
    whose cosine similarity drives taste drift."""

    utilities: np.ndarray
    item_embeddings: np.ndarray

    def __post_init__(self) -> None:
        if self.utilities.ndim != 2 or self.item_embeddings.shape[0] != self.utilities.shape[1]:
            raise ValueError(f"utilities (n, n_items) and item_embeddings (n_items, d) do not fit: "
                             f"{self.utilities.shape} and {self.item_embeddings.shape}")
        if not np.isfinite(self.utilities).all():
            raise ValueError("true utilities contain NaN or infinite values")

    @classmethod
    def planted(cls, dataset: InteractionDataset, users: np.ndarray,
                temperature: float = PLANTED_TEMPERATURE) -> "TrueTastes":
        """The planted tastes of a `synthetic` dataset: U_u(i) = log sum_k mix_uk softmax_i(<p_k, e_i> / T)."""
        truth = dataset.ground_truth
        if truth is None or not hasattr(truth, "user_mix"):
            raise ValueError(f"dataset {dataset.name!r} has no planted tastes (only `synthetic` has)")
        logits = truth.persona_vectors @ truth.item_embeddings.T / temperature  # (P, n_items)
        log_choice = logits - logsumexp(logits, axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            log_mix = np.log(truth.user_mix[users])  # (n, P), -inf for absent personas
        utilities = logsumexp(log_mix[:, :, None] + log_choice[None, :, :], axis=1)
        return cls(utilities, np.asarray(truth.item_embeddings, np.float64))

    @classmethod
    def fitted(cls, model: PersonaRecommender, histories: sp.spmatrix) -> "TrueTastes":
        """Tastes as a persona model fitted on all the users' data sees them: its scores of
        their full `histories` (n, n_items)."""
        return cls(model.score(histories).astype(np.float64), model.shared.item_embeddings.astype(np.float64))


@dataclass
class Simulation:
    """What a run needs besides its configuration. builder: the recommender (None = the ideal
    recommender, top-k by true utility); tastes: the simulated users' TrueTastes; histories
    (n, n_items): their starting histories; banned: (n_items,) bool, never recommended;
    item_genres (n_items, G) for calibration KL (None: omitted); retrain: refits a model on
    the simulated users' current histories (for retrain_every)."""

    builder: SlateBuilder | None
    tastes: TrueTastes
    histories: sp.csr_matrix
    banned: np.ndarray | None = None
    item_genres: np.ndarray | None = None
    retrain: Callable[[sp.csr_matrix], PersonaRecommender] | None = None

    def run(self, safeguards: SafeguardsConfig, config: SimulationConfig, progress: bool = False) -> list[dict[str, float]]:
        """One row of metrics per round t = 0..T (see the module docstring); deterministic per seed."""
        if self.histories.shape != self.tastes.utilities.shape:
            raise ValueError(f"histories {self.histories.shape} and utilities {self.tastes.utilities.shape} differ")
        rng = np.random.default_rng(config.seed)
        utilities = self.tastes.utilities.copy()
        initial = self.tastes.utilities
        histories = sp.csr_matrix(self.histories, dtype=np.float32, copy=True)
        builder = self.builder
        rows = []
        for round_index in tqdm(range(config.rounds + 1), desc="rounds", disable=not progress, leave=False):
            ideal, _ = top_k(utilities, config.k, exclude=histories, banned_items=self.banned)
            if builder is None:
                slate, attention = ideal, None
            else:
                state = builder.model.fold_in(histories)
                built = builder.build(state, histories, config.k, safeguards, banned_items=self.banned)
                slate = built.items
                attention = builder.scorer.terms(built.state, np.maximum(slate, 0)).attention
            rows.append({"round": round_index} | self._metrics(slate, ideal, attention, utilities, initial, histories,
                                                               config))
            if round_index == config.rounds:
                break
            consumed = consume(slate, utilities, rng, config)
            histories = (histories + consumed).minimum(1.0).tocsr()
            if config.drift > 0:
                utilities = drift_tastes(utilities, initial, consumed, self.tastes.item_embeddings, config.drift)
            if builder is not None and self.retrain is not None and config.retrain_every and \
                    (round_index + 1) % config.retrain_every == 0:
                builder = builder.with_model(self.retrain(histories))
        return rows

    def _metrics(self, slate: np.ndarray, ideal: np.ndarray, attention: np.ndarray | None, utilities: np.ndarray,
                 initial: np.ndarray, histories: sp.csr_matrix, config: SimulationConfig) -> dict[str, float]:
        popularity = np.asarray(self.histories.sum(axis=0)).ravel()
        audit = slate_audit(slate, histories, popularity, config.k, item_categories=self.item_genres,
                            slate_attention=attention, ideal=ideal)
        k = config.k
        valid = slate >= 0
        slate_utility = np.take_along_axis(utilities, np.maximum(slate, 0), axis=1)
        return {
            f"ndcg@{NDCG_K}": true_ndcg(slate, ideal, utilities / config.choice_temperature, NDCG_K),
            "true_utility": float(slate_utility[valid].mean()),
            "homogenization": audit[f"homogenization@{k}"],
            "homogenization_vs_ideal": audit[f"homogenization_vs_ideal@{k}"],
            "calibration_kl": audit.get(f"calibration_kl@{k}", float("nan")),
            "persona_entropy": audit.get(f"persona_entropy@{k}", float("nan")),
            "coverage": audit[f"coverage@{k}"],
            "gini": audit[f"gini@{k}"],
            "taste_drift": taste_drift(utilities, initial),
        }


def consume(slate: np.ndarray, utilities: np.ndarray, rng: np.random.Generator,
            config: SimulationConfig) -> sp.csr_matrix:
    """(n, n_items) binary: the items each user takes from their slate (n, k), by the choice
    model of the module docstring (Gumbel-top-k over slate items and the no-choice option)."""
    n, k = slate.shape
    valid = slate >= 0
    item_utility = np.where(valid, np.take_along_axis(utilities, np.maximum(slate, 0), axis=1), -np.inf)
    no_choice = np.quantile(utilities, config.no_choice_quantile, axis=1)  # (n,)
    options = np.concatenate([item_utility, no_choice[:, None]], axis=1) / config.choice_temperature
    perturbed = options + rng.gumbel(size=options.shape)
    order = np.argsort(-perturbed, axis=1, kind="stable")  # (n, k + 1), a draw without replacement
    stop = np.argmax(order == k, axis=1)  # position of the no-choice option
    taken = (np.arange(k + 1)[None, :] < np.minimum(stop, config.choices_per_round)[:, None])
    rows, positions = np.nonzero(taken)
    items = slate[rows, order[rows, positions]]
    keep = items >= 0
    return sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], items[keep])), shape=utilities.shape)


def drift_tastes(utilities: np.ndarray, initial: np.ndarray, consumed: sp.csr_matrix, item_embeddings: np.ndarray,
                 rate: float) -> np.ndarray:
    """Utilities moved toward the consumed items' neighbours (module docstring); users who
    consumed nothing keep theirs."""
    unit = item_embeddings / np.maximum(np.linalg.norm(item_embeddings, axis=1, keepdims=True), 1e-12)
    counts = np.asarray(consumed.sum(axis=1)).ravel()
    similarity = np.asarray(consumed @ unit) @ unit.T / np.maximum(counts, 1.0)[:, None]  # (n, n_items)
    spread = similarity.std(axis=1, keepdims=True)
    z = (similarity - similarity.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    step = rate * initial.std(axis=1, keepdims=True) * z
    return utilities + np.where(counts[:, None] > 0, step, 0.0)


def true_ndcg(slate: np.ndarray, ideal: np.ndarray, utilities: np.ndarray, k: int) -> float:
    """Mean over users of DCG(slate) / DCG(ideal slate) with graded gains exp(U - max U) per
    user: slate, ideal (n, >= k) item ids, -1 padded; utilities (n, n_items)."""
    gains = np.exp(utilities - utilities.max(axis=1, keepdims=True))
    discount = 1.0 / np.log2(np.arange(2, k + 2))

    def dcg(items: np.ndarray) -> np.ndarray:
        top = items[:, :k]
        return (np.where(top >= 0, np.take_along_axis(gains, np.maximum(top, 0), axis=1), 0.0)
                * discount[: top.shape[1]]).sum(axis=1)

    best = dcg(ideal)
    return float(np.mean(np.where(best > 0, dcg(slate) / np.where(best > 0, best, 1.0), 0.0)))


def taste_drift(utilities: np.ndarray, initial: np.ndarray) -> float:
    """Mean over users of 1 - Pearson correlation between current and initial utilities."""
    current = utilities - utilities.mean(axis=1, keepdims=True)
    start = initial - initial.mean(axis=1, keepdims=True)
    denominator = np.linalg.norm(current, axis=1) * np.linalg.norm(start, axis=1)
    correlation = np.where(denominator > 0, (current * start).sum(axis=1) / np.where(denominator > 0, denominator, 1.0),
                           1.0)
    return float(np.mean(1.0 - correlation))
