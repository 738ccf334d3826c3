"""A feedback-loop simulator: simulated users with known tastes consume from the slates they
are shown, and the model folds their grown histories in again (and refits its shared side every
R rounds), for T rounds; in bounded memory, chunk by chunk of users, so that it runs for a
million users.

Each round t = 0..T: every user gets a slate of k items (the model's, built with the given
safeguards by safeguards.slate's SlateBuilder, or the ideal recommender's top-k by true
utility); the round's metrics are recorded; then (for t < T) each user consumes by a
multinomial logit over the slate's true utilities divided by `choice_temperature`, with a
no-choice option whose utility is the user's `no_choice_quantile` of utilities over the catalog:
up to `choices_per_round` sequential draws without replacement (Gumbel-top-k), stopping at
no-choice. Consumed items join the history; the model folds the new histories in, and is refitted
every `retrain_every` rounds when a trainer is given (Chaney et al.'s loop: the shared side
learns from the consumption of its own recommendations). With `drift` > 0 tastes move toward
what was consumed, as in Chaney et al. (RecSys 2018):

    U_u <- U_u + drift * std(U_u at t = 0) * z(mean_j cos(e_j, e_i))   over consumed j,

z standardised over the catalog, e = the truth's item embeddings. With m = the mean unit vector
of the consumed items and Sigma the covariance of the unit item vectors, z = (e~ - mean e~) m /
sqrt(m' Sigma m), linear in w = m / sqrt(m' Sigma m); so each user's drift is kept as the sum of
their w (a d-vector) and utilities are rebuilt per chunk: memory O(n d), not O(n n_items).

Metrics per round (evaluation.echo_chambers, evaluation.beyond_accuracy; k = the slate size):
- ndcg@10 against true utilities (gain exp(U / choice_temperature), normalised by the ideal
  slate's DCG); true_utility: mean U over slate items;
- calibration_kl: genres, history vs slate (Steck); persona_entropy of the slate's attention mix;
- homogenization: mean Jaccard of the items consumed so far (rounds < t) by pairs of users with
  the most similar true tastes (Chaney's pairing; it can grow, unlike a Jaccard between slates);
  chaney_homogenization: the same minus the ideal recommender's (`Simulation.run(reference=)`);
  population_homogenization and chaney_population_homogenization: the same over random pairs;
- narrowing (genres of the whole history) and persona_narrowing (the attention mix over the
  history's items): H(start) - H(now), nats, mean over users;
- polarization: Jensen-Shannon divergence between the consumption (rounds < t) of user groups
  (grouped by the dominant genre of their starting history); effective_clusters: Hill number of
  the users' dominant genres of consumption (rounds < t);
- gini and coverage of the slates' exposure over the catalog; taste_drift: mean 1 - Pearson
  correlation of each user's current and initial utilities.
Means over users are summed chunk by chunk (calibration KL and persona entropy are chunk means
weighted by chunk size: exact when every user has a categorised item, as in the bench).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp
from tqdm.auto import tqdm

from recsys_pref.core.ranking import top_k
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.evaluation.audit import persona_entropy
from recsys_pref.evaluation.beyond_accuracy import calibration_kl, gini
from recsys_pref.evaluation.echo_chambers import (
    consumption_mix, dominant_counts, effective_clusters, group_consumption, mix_entropy, nearest_taste_pairs,
    pair_jaccard, polarization, random_pairs,
)
from recsys_pref.models.persona import PersonaRecommender
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.safeguards.slate import SlateBuilder

PLANTED_TEMPERATURE = 0.1  # make_synthetic's default choice temperature (the truth's softmax)
NDCG_K = 10
METRICS = ("ndcg@10", "true_utility", "calibration_kl", "persona_entropy", "homogenization",
           "chaney_homogenization", "population_homogenization", "chaney_population_homogenization", "narrowing", "persona_narrowing", "polarization", "effective_clusters",
           "gini", "coverage", "taste_drift")


@dataclass(frozen=True)
class SimulationConfig:
    """rounds: T, feedback rounds (rows for t = 0..T). k: slate size.
    choices_per_round: items a user may consume per round. choice_temperature: divides true
    utilities in the choice model (1 = the truth's own logits). no_choice_quantile: the
    no-choice option's utility, as a quantile of the user's utilities over the catalog.
    drift: taste drift toward consumed items per round (0 = fixed tastes).
    retrain_every: refit the model every this many rounds on training + simulated histories
    (0 = fold-in only). seed: the choice draws. chunk_users: users simulated at once (bounds
    memory). pair_users: users paired for homogenization (a seeded sample above it)."""

    rounds: int = 10
    k: int = 10
    choices_per_round: int = 2
    choice_temperature: float = 1.0
    no_choice_quantile: float = 0.99
    drift: float = 0.0
    retrain_every: int = 0
    seed: int = 0
    chunk_users: int = 20_000
    pair_users: int = 2000

    def __post_init__(self) -> None:
        problems = []
        for name in ("rounds", "k", "choices_per_round", "chunk_users"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pair_users < 2:
            problems.append(f"pair_users must be >= 2, got {self.pair_users}")
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
    """Each simulated user's true utility of every item (logits of their choice distribution),
    either dense (`utilities` (n, n_items)) or planted (`user_mix` (n, P) over P personas with
    `choice` (P, n_items) each persona's choice probabilities: U = log sum_p mix_p choice_p, one
    (c, P) x (P, n_items) product per chunk). item_embeddings (n_items, d): the truth's item vectors,
    whose cosine similarity drives taste drift."""

    item_embeddings: np.ndarray
    utilities: np.ndarray | None = None
    user_mix: np.ndarray | None = None
    choice: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.utilities is None) == (self.user_mix is None):
            raise ValueError("TrueTastes takes either utilities or user_mix with log_choice")
        if self.user_mix is not None and (self.choice is None or self.user_mix.shape[1] != len(self.choice)):
            raise ValueError("planted tastes need choice (P, n_items) matching user_mix (n, P)")
        width = self.utilities.shape[1] if self.utilities is not None else self.choice.shape[1]
        if self.item_embeddings.shape[0] != width:
            raise ValueError(f"utilities cover {width} items but item_embeddings {self.item_embeddings.shape[0]}")
        if self.utilities is not None and (self.utilities.ndim != 2 or not np.isfinite(self.utilities).all()):
            raise ValueError("true utilities must be a finite (n, n_items) array")

    @property
    def n_users(self) -> int:
        return len(self.utilities if self.utilities is not None else self.user_mix)

    @property
    def n_items(self) -> int:
        return self.item_embeddings.shape[0]

    def initial(self, users: slice | np.ndarray) -> np.ndarray:
        """(len(users), n_items) float64: the users' utilities at t = 0."""
        if self.utilities is not None:
            return np.asarray(self.utilities[users], np.float64)
        return np.log(np.maximum(self.user_mix[users] @ self.choice, np.finfo(np.float64).tiny))

    @classmethod
    def planted(cls, dataset: InteractionDataset, users: np.ndarray | None = None,
                temperature: float = PLANTED_TEMPERATURE) -> "TrueTastes":
        """The planted tastes of a `synthetic` dataset (of `users`, default all):
        U_u(i) = log sum_k mix_uk softmax_i(<p_k, e_i> / T)."""
        truth = dataset.ground_truth
        if truth is None or not hasattr(truth, "user_mix"):
            raise ValueError(f"dataset {dataset.name!r} has no planted tastes (only `synthetic` has)")
        logits = truth.persona_vectors @ truth.item_embeddings.T / temperature  # (P, n_items)
        mix = truth.user_mix if users is None else truth.user_mix[users]
        return cls(np.asarray(truth.item_embeddings, np.float64), user_mix=np.asarray(mix, np.float64),
                   choice=np.exp(logits - logsumexp(logits, axis=1, keepdims=True)))

    @classmethod
    def fitted(cls, model: PersonaRecommender, histories: sp.spmatrix) -> "TrueTastes":
        """Tastes as a persona model fitted on all the users' data sees them: its scores of
        their full `histories` (n, n_items)."""
        return cls(model.shared.item_embeddings.astype(np.float64),
                   utilities=model.score(histories).astype(np.float64))


@dataclass(frozen=True)
class TasteDrift:
    """Exact chunked taste drift (module docstring): unit (n_items, d) centred unit item vectors
    and the inverse square root of m' Sigma m is computed per user from `covariance` (d, d)."""

    centred_unit: np.ndarray
    unit: np.ndarray
    covariance: np.ndarray

    @classmethod
    def for_items(cls, item_embeddings: np.ndarray) -> "TasteDrift":
        unit = item_embeddings / np.maximum(np.linalg.norm(item_embeddings, axis=1, keepdims=True), 1e-12)
        centred = unit - unit.mean(axis=0)
        return cls(centred, unit, centred.T @ centred / len(unit))

    def step(self, consumed: sp.csr_matrix) -> np.ndarray:
        """(c, d) each user's w for one round's consumption (c, n_items); zero for no consumption."""
        counts = np.asarray(consumed.sum(axis=1)).ravel()
        mean = np.asarray(consumed @ self.unit) / np.maximum(counts, 1.0)[:, None]  # (c, d)
        spread = np.sqrt(np.maximum(np.einsum("cd,de,ce->c", mean, self.covariance, mean), 0.0))
        return np.where((counts > 0)[:, None] & (spread > 0)[:, None], mean / np.where(spread > 0, spread, 1.0)[:, None],
                        0.0)

    def current(self, initial: np.ndarray, drift: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
        """(current utilities (c, n_items), each user's echo_chambers.taste_drift (c,)) from
        initial (c, n_items) and summed drift (c, d). The drift's Pearson correlation is computed
        in the d-space: the shift D = s w C' (s = rate * std of the initial row, C the centred unit
        vectors, whose columns sum to 0 over items, so D has mean 0) gives, with I the centred
        initial row, I.D = s (U0 C) w and |D|^2 = n_items s^2 w' Sigma w, and |I|^2 = n_items std^2:
        no (c, n_items) pass beyond building the utilities."""
        if rate == 0:
            return initial, np.zeros(len(initial))
        spread = initial.std(axis=1)  # (c,)
        shift = rate * spread[:, None] * drift  # (c, d)
        n_items = len(self.unit)
        cross = np.einsum("cd,cd->c", initial @ self.centred_unit, shift)  # I . D
        shift_norm = n_items * np.einsum("cd,de,ce->c", shift, self.covariance, shift)  # |D|^2
        start_norm = n_items * spread ** 2  # |I|^2
        denominator = np.sqrt(np.maximum(start_norm * (start_norm + 2 * cross + shift_norm), 0.0))
        correlation = np.divide(start_norm + cross, denominator, out=np.ones(len(initial)), where=denominator > 0)
        return initial + shift @ self.centred_unit.T, 1.0 - correlation


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimated_bytes(n_users: int, n_items: int, embedding_dim: int, start_interactions: int,
                    config: SimulationConfig, candidates: int = 100) -> int:
    """A simulation's peak memory, estimated: the sparse histories and consumption of both
    arms (12 bytes a stored entry, twice while a round's are added), each user's drift vector,
    and one chunk's dense work (utilities, scores and the ideal ranking: about 8 float64
    (chunk, n_items) arrays, plus the calibration pool's (chunk, candidates, 64) mixes)."""
    entries = start_interactions + n_users * config.rounds * config.choices_per_round
    sparse = 2 * 2 * 12 * entries
    chunk = min(config.chunk_users, n_users)
    dense = 8 * 8 * chunk * n_items + 8 * chunk * candidates * 64
    return int(sparse + 8 * n_users * embedding_dim * 2 + dense)


def check_memory(estimate: int, available: int | None = None) -> None:
    """Refuse (ValueError, with the estimate) a simulation that would not fit in memory."""
    available = machine_memory_bytes() if available is None else available
    if estimate > available:
        raise ValueError(f"this simulation needs about {estimate / 2**30:.1f} GiB but the machine has "
                         f"{available / 2**30:.1f} GiB; use fewer users or items, or a smaller chunk_users")


@dataclass
class Simulation:
    """What a run needs besides its configuration. builder: the recommender (None = the ideal
    recommender, top-k by true utility); tastes: the simulated users' TrueTastes; histories
    (n, n_items): their starting histories; banned: (n_items,) bool, never recommended;
    item_genres (n_items, G) categories for calibration KL, narrowing and polarization (None:
    those are NaN); retrain: refits a model on the simulated users' current histories (for
    retrain_every)."""

    builder: SlateBuilder | None
    tastes: TrueTastes
    histories: sp.csr_matrix
    banned: np.ndarray | None = None
    item_genres: np.ndarray | None = None
    retrain: Callable[[sp.csr_matrix], PersonaRecommender] | None = None
    _pairs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def run(self, safeguards: SafeguardsConfig, config: SimulationConfig, progress: bool = False,
            reference: list[dict[str, float]] | None = None) -> list[dict[str, float]]:
        """One row of metrics per round t = 0..T (module docstring); deterministic per seed.
        reference: the rows of the ideal recommender's run with the same config, which
        chaney_homogenization subtracts (NaN without it)."""
        n, n_items = self.histories.shape
        if (n, n_items) != (self.tastes.n_users, self.tastes.n_items):
            raise ValueError(f"histories {self.histories.shape} and tastes ({self.tastes.n_users}, "
                             f"{self.tastes.n_items}) differ")
        if reference is not None and len(reference) != config.rounds + 1:
            raise ValueError(f"the reference run has {len(reference)} rows, expected {config.rounds + 1}")
        dim = self.tastes.item_embeddings.shape[1]
        check_memory(estimated_bytes(n, n_items, dim, self.histories.nnz, config, safeguards.candidates))
        loop = _Loop(self, safeguards, config)
        chunks = [slice(start, min(start + config.chunk_users, n)) for start in range(0, n, config.chunk_users)]
        rows = []
        with tqdm(total=(config.rounds + 1) * len(chunks), desc="simulated rounds x chunks", disable=not progress,
                  leave=False) as bar:
            for round_index in range(config.rounds + 1):
                row = loop.round(round_index, chunks, bar)
                if reference is not None:
                    for pairing in ("", "population_"):
                        row[f"chaney_{pairing}homogenization"] = \
                            row[f"{pairing}homogenization"] - reference[round_index][f"{pairing}homogenization"]
                rows.append(row)
        return rows

    def pairs(self, max_users: int, nearest: bool = True) -> np.ndarray:
        """Users paired by the most similar initial true taste (echo_chambers.nearest_taste_pairs),
        or at random (nearest=False; echo_chambers.random_pairs, max_users // 2 pairs)."""
        if not nearest:
            return random_pairs(self.tastes.n_users, max_users // 2)
        key = (max_users, id(self.tastes))  # copies made by dataclasses.replace share this cache
        if key not in self._pairs:
            users = np.arange(self.tastes.n_users)
            if len(users) > max_users:
                users = np.sort(np.random.default_rng(0).choice(len(users), max_users, replace=False))
            pairs = nearest_taste_pairs(self.tastes.initial(users), max_users=max_users)
            self._pairs[key] = users[pairs]
        return self._pairs[key]


class _Loop:
    """The state of one run: histories, consumption, drift, per-user starting entropies."""

    def __init__(self, simulation: Simulation, safeguards: SafeguardsConfig, config: SimulationConfig) -> None:
        self.simulation, self.safeguards, self.config = simulation, safeguards, config
        self.histories = sp.csr_matrix(simulation.histories, dtype=np.float32, copy=True)
        self.histories.data[:] = 1.0
        n, n_items = self.histories.shape
        self.consumed = sp.csr_matrix((n, n_items), dtype=np.float32)
        self.drift = TasteDrift.for_items(simulation.tastes.item_embeddings)
        self.drift_sum = np.zeros((n, simulation.tastes.item_embeddings.shape[1]))
        self.builder = simulation.builder
        if self.builder is not None:
            self.builder = self.builder.with_exposure(np.asarray(self.histories.sum(axis=0)).ravel())
        genres = simulation.item_genres
        self.start_mix = consumption_mix(self.histories, genres) if genres is not None else None
        self.groups = np.argmax(self.start_mix, axis=1) if genres is not None else None
        self.start_persona_entropy = np.zeros(n)

    def round(self, t: int, chunks: list[slice], bar: tqdm) -> dict[str, float]:
        config, n_items = self.config, self.histories.shape[1]
        sums: dict[str, float] = dict.fromkeys(("ndcg", "utility", "slots", "kl", "kl_users", "entropy",
                                                "entropy_users", "drift", "persona_narrowing"), 0.0)
        exposure = np.zeros(n_items)
        new_consumption = []
        rng = np.random.default_rng([config.seed, t])  # drawn chunk after chunk: the same draws in any chunk size
        for users in chunks:
            new_consumption.append(self._chunk(t, users, sums, exposure, rng))
            bar.update()
        n = self.histories.shape[0]
        row = {"round": t, f"ndcg@{NDCG_K}": sums["ndcg"] / n, "true_utility": sums["utility"] / max(sums["slots"], 1),
               "calibration_kl": sums["kl"] / sums["kl_users"] if sums["kl_users"] else float("nan"),
               "persona_entropy": sums["entropy"] / sums["entropy_users"] if sums["entropy_users"] else float("nan"),
               "homogenization": pair_jaccard(self.consumed, self.simulation.pairs(config.pair_users)),
               "chaney_homogenization": float("nan"),
               "population_homogenization": pair_jaccard(self.consumed,
                                                         self.simulation.pairs(config.pair_users, nearest=False)),
               "chaney_population_homogenization": float("nan"),
               "persona_narrowing": sums["persona_narrowing"] / n if self.builder is not None else float("nan"),
               "gini": gini(exposure), "coverage": float((exposure > 0).mean()), "taste_drift": sums["drift"] / n}
        row |= self._population(self.simulation.item_genres)
        if t < config.rounds:
            self._advance(t, sp.vstack(new_consumption).tocsr(), exposure)
        return row

    def _chunk(self, t: int, users: slice, sums: dict[str, float], exposure: np.ndarray,
               rng: np.random.Generator) -> sp.csr_matrix:
        """Slates, metrics and (before the last round) consumption of one chunk of users."""
        simulation, config = self.simulation, self.config
        initial = simulation.tastes.initial(users)  # (c, n_items)
        utilities, drifted = self.drift.current(initial, self.drift_sum[users], config.drift)
        histories = self.histories[users]
        ideal, _ = top_k(utilities, config.k, exclude=histories, banned_items=simulation.banned)
        if self.builder is None:
            slate = ideal
        else:
            state = self.builder.model.fold_in(histories)
            built = self.builder.build(state, histories, config.k, self.safeguards, banned_items=simulation.banned)
            slate = built.items
            attention = self.builder.scorer.terms(built.state, np.maximum(slate, 0)).attention
            sums["entropy"] += persona_entropy(attention, slate >= 0) * len(slate)
            sums["entropy_users"] += len(slate)
            history_entropy = self._history_persona_entropy(built.state, histories)
            if t == 0:
                self.start_persona_entropy[users] = history_entropy
            sums["persona_narrowing"] += float((self.start_persona_entropy[users] - history_entropy).sum())
        valid = slate >= 0
        sums["ndcg"] += true_ndcg(slate, ideal, utilities / config.choice_temperature, NDCG_K) * len(slate)
        sums["utility"] += float(np.take_along_axis(utilities, np.maximum(slate, 0), axis=1)[valid].sum())
        sums["slots"] += float(valid.sum())
        sums["drift"] += float(drifted.sum())
        np.add.at(exposure, slate[valid], 1.0)
        if simulation.item_genres is not None:
            kl = calibration_kl(slate, simulation.item_genres, histories, config.k)
            if np.isfinite(kl):
                sums["kl"] += kl * len(slate)
                sums["kl_users"] += len(slate)
        if t == config.rounds:
            return sp.csr_matrix((len(slate), utilities.shape[1]), dtype=np.float32)
        return consume(slate, utilities, rng, config)

    def _history_persona_entropy(self, state, histories: sp.csr_matrix) -> np.ndarray:
        """(c,) entropy (nats) of each user's mean attention over their history's items."""
        items = padded_rows(histories)
        attention = self.builder.scorer.terms(state, np.maximum(items, 0)).attention  # (c, M, L)
        valid = items >= 0
        mix = (attention * valid[:, None, :]).sum(axis=2) / np.maximum(valid.sum(axis=1), 1)[:, None]
        return mix_entropy(mix)

    def _population(self, genres: np.ndarray | None) -> dict[str, float]:
        """Narrowing, polarization and effective clusters over the whole population."""
        if genres is None:
            return {"narrowing": float("nan"), "polarization": float("nan"), "effective_clusters": float("nan")}
        current = consumption_mix(self.histories, genres)
        kept = self.start_mix.sum(axis=1) > 0
        narrowed = float(np.mean(mix_entropy(self.start_mix[kept]) - mix_entropy(current[kept]))) if kept.any() \
            else float("nan")
        counts = group_consumption(self.consumed, self.groups, genres.shape[1])
        return {"narrowing": narrowed, "polarization": polarization(counts),
                "effective_clusters": effective_clusters(dominant_counts(consumption_mix(self.consumed, genres)))}

    def _advance(self, t: int, consumed: sp.csr_matrix, exposure: np.ndarray) -> None:
        """Consumption joins the histories; tastes drift; the model is refitted every
        retrain_every rounds; the exposure safeguard sees this round's slates' exposure (n_items,)."""
        self.histories = (self.histories + consumed).minimum(1.0).tocsr()
        self.consumed = (self.consumed + consumed).minimum(1.0).tocsr()
        if self.config.drift > 0:
            self.drift_sum += self.drift.step(consumed)
        if self.builder is None:
            return
        retrain, every = self.simulation.retrain, self.config.retrain_every
        if retrain is not None and every and (t + 1) % every == 0:
            self.builder = self.builder.with_model(retrain(self.histories))
        self.builder = self.builder.with_exposure(exposure)


def padded_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """(n, max row length) the column indices of each row of a CSR matrix, -1 padded."""
    lengths = np.diff(matrix.indptr)
    items = np.full((matrix.shape[0], max(int(lengths.max(initial=0)), 1)), -1, np.int64)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    positions = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    items[rows, positions] = matrix.indices
    return items


def consume(slate: np.ndarray, utilities: np.ndarray, rng: np.random.Generator,
            config: SimulationConfig) -> sp.csr_matrix:
    """(n, n_items) binary: the items each user takes from their slate (n, k), by the choice
    model of the module docstring (Gumbel-top-k over slate items and the no-choice option)."""
    k = slate.shape[1]
    valid = slate >= 0
    item_utility = np.where(valid, np.take_along_axis(utilities, np.maximum(slate, 0), axis=1), -np.inf)
    no_choice = row_quantile(utilities, config.no_choice_quantile)  # (n,)
    options = np.concatenate([item_utility, no_choice[:, None]], axis=1) / config.choice_temperature
    perturbed = options + rng.gumbel(size=options.shape)
    order = np.argsort(-perturbed, axis=1, kind="stable")  # (n, k + 1), a draw without replacement
    stop = np.argmax(order == k, axis=1)  # position of the no-choice option
    taken = (np.arange(k + 1)[None, :] < np.minimum(stop, config.choices_per_round)[:, None])
    rows, positions = np.nonzero(taken)
    items = slate[rows, order[rows, positions]]
    keep = items >= 0
    return sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], items[keep])), shape=utilities.shape)


def row_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """(n,) the q-quantile of each row of values (n, m), as np.quantile's default (linear)
    method computes it, from a partition of the two order statistics it needs instead of a sort."""
    position = (values.shape[1] - 1) * q
    low = int(np.floor(position))
    high = min(low + 1, values.shape[1] - 1)
    ordered = np.partition(values, (low, high), axis=1)
    fraction = position - low
    below, above = ordered[:, low], ordered[:, high]
    if fraction >= 0.5:  # numpy's lerp, from the nearer end
        return above - (above - below) * (1.0 - fraction)
    return below + (above - below) * fraction


def true_ndcg(slate: np.ndarray, ideal: np.ndarray, utilities: np.ndarray, k: int) -> float:
    """Mean over users of DCG(slate) / DCG(ideal slate) with graded gains exp(U - max U) per
    user: slate, ideal (n, >= k) item ids, -1 padded; utilities (n, n_items)."""
    best_utility = utilities.max(axis=1, keepdims=True)  # (n, 1); gains are read for slate items only
    discount = 1.0 / np.log2(np.arange(2, k + 2))

    def dcg(items: np.ndarray) -> np.ndarray:
        top = items[:, :k]
        gains = np.exp(np.take_along_axis(utilities, np.maximum(top, 0), axis=1) - best_utility)
        return (np.where(top >= 0, gains, 0.0) * discount[: top.shape[1]]).sum(axis=1)

    best = dcg(ideal)
    return float(np.mean(np.where(best > 0, dcg(slate) / np.where(best > 0, best, 1.0), 0.0)))
