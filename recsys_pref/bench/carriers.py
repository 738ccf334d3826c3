"""`recsys-pref bench carriers`: what carries a person best per byte (issue 15).

Per seed: a strong-generalization split (data.splits); the persona model (default
configuration) fitted on the training matrix; the summary vocabulary learned from the training
users' states (explain.vocabulary). For each held-out test user, every carrier is built from
the user's fold-in history alone, turned into a persona state, and served through the one
scorer (PersonaScorer.scores, then the catalog top-100 with the fold-in items excluded, as in
evaluation.evaluate); NDCG@10 and NDCG@100 are measured on the user's targets, against the
carrier's size in bytes per user (mean over users):

- semantic / parametric: the folded-in state as float32 (M (K+1) 4 bytes), float16, int8 with a
  per-user scale (one float32 scale for the coefficients, one for the prior logits), the top n
  coefficients by magnitude (sparse: a 1-byte index per kept coefficient when M K <= 256, a
  float16 value, and the M prior logits in float16), and one persona instead of M (the one
  with the largest weight, K float32);
- semantic / text: the summary at each length (explain.summary: clause, sentence, three
  sentences), as UTF-8 bytes, parsed back with explain.summary_parser.state_from_summary;
  and the sentence plus one "because you liked" title per persona (the history item with the
  highest reward for that persona);
- episodic: the last N history items (by timestamp; ties by item index) and the N history items
  most similar (cosine of item embeddings) to the mean embedding of the history, each folded in
  exactly; ceil(log2(n_items) / 8) bytes per item id (users with fewer than N items keep all);
- ceilings: the whole history folded in (the float32 state's numbers, counted as the history's
  item ids), and EASE (its l2 tuned on the first split's validation users with the accuracy
  bench's budget) on the whole history.

Rows: mean over seeds and standard deviation (key + "_std") of ndcg@10, ndcg@100 and bytes;
share_of_full = ndcg@10 / ndcg@10 of the float32 state, per seed then averaged. The result's
config holds `moonshot`: among carriers of at most MOONSHOT_BYTES bytes, the one keeping the
largest share of the full state's NDCG@10.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys_pref.bench.accuracy import aggregate
from recsys_pref.bench.results import BenchResult
from recsys_pref.core.metrics import ndcg_at_k
from recsys_pref.core.ranking import top_k
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.data.splits import HeldOut, Split, SplitConfig, make_split
from recsys_pref.evaluation.tuning import build_model, tune
from recsys_pref.explain.explainer import Explainer
from recsys_pref.explain.summary import LENGTHS, render_summaries
from recsys_pref.explain.summary_parser import state_from_summary
from recsys_pref.models.persona import PersonaRecommender, PersonaState
from recsys_pref.models.ease import GRID as EASE_GRID

MOONSHOT_BYTES = 32
MOONSHOT_SHARE = 0.9
TABLE_COLUMNS = ["carrier", "family", "bytes", "ndcg@10", "ndcg@100", "share_of_full"]  # means; the table adds ± std
FAMILIES = ("semantic/parametric", "semantic/text", "episodic/recency", "episodic/similarity", "ceiling")


@dataclass(frozen=True)
class CarriersBenchConfig:
    """seeds: one split and model seed each; recent: the N of the episodic carriers; top: the
    n of the sparse carriers; max_users: test users per seed (None: all); budget: EASE
    configurations tried; params: persona hyperparameters over the default."""

    seeds: tuple[int, ...] = (0, 1, 2)
    recent: tuple[int, ...] = (1, 5, 10, 20, 50)
    top: tuple[int, ...] = (4, 8)
    max_users: int | None = None
    budget: int = 8
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "CarriersBenchConfig":
        """The reduced run used by tests: one seed, 40 test users, N in (1, 10), EASE untuned."""
        return cls(seeds=(0,), recent=(1, 10), max_users=40, budget=1)


@dataclass(frozen=True)
class Carrier:
    """One carrier's outcome for the test users: scores (n, n_items) and bytes (n,)."""

    name: str
    family: str
    scores: np.ndarray
    bytes: np.ndarray


def id_bytes(n_items: int) -> int:
    """Bytes of one item id: ceil(log2(n_items) / 8), at least 1."""
    return max(1, math.ceil(math.log2(max(n_items, 2)) / 8))


# -- parametric carriers: the state, compressed ------------------------------------------------
def float16_state(state: PersonaState) -> PersonaState:
    """The state rounded through float16."""
    return PersonaState(state.coefficients.astype(np.float16), state.prior_logits.astype(np.float16))


def int8_state(state: PersonaState) -> PersonaState:
    """The state through int8 with one scale per user for the coefficients and one for the logits."""
    def quantize(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(len(values), -1)
        scale = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-12) / 127  # (n, 1)
        return (np.round(flat / scale).astype(np.int8) * scale).reshape(values.shape)
    return PersonaState(quantize(state.coefficients), quantize(state.prior_logits))


def sparse_state(state: PersonaState, n_kept: int) -> PersonaState:
    """Only each user's `n_kept` largest coefficients (by magnitude, over all personas), in
    float16, the rest zero; prior logits in float16."""
    flat = state.coefficients.reshape(len(state), -1)
    kept = np.argsort(-np.abs(flat), axis=1, kind="stable")[:, :n_kept]
    sparse = np.zeros_like(flat)
    np.put_along_axis(sparse, kept, np.take_along_axis(flat, kept, axis=1).astype(np.float16), axis=1)
    return PersonaState(sparse.reshape(state.coefficients.shape), state.prior_logits.astype(np.float16))


def one_persona_state(state: PersonaState) -> PersonaState:
    """Each user's persona with the largest weight alone (M = 1)."""
    main = state.prior_logits.argmax(axis=1)
    return PersonaState(state.coefficients[np.arange(len(state)), main][:, None, :], np.zeros((len(state), 1)))


# -- episodic carriers: some history items, folded in -----------------------------------------
def timestamp_matrix(dataset: InteractionDataset) -> sp.csr_matrix:
    """(n_users, n_items) float64 timestamp of each positive (0 where none is known)."""
    positives = dataset.positives()
    rows = dataset.user_ids.to_index(positives["user_id"].to_numpy())
    cols = dataset.item_ids.to_index(positives["item_id"].to_numpy())
    stamps = positives["timestamp"].fill_null(0).to_numpy().astype(np.float64)
    return sp.csr_matrix((stamps, (rows, cols)), shape=(dataset.n_users, dataset.n_items))


def keep_top(history: sp.csr_matrix, priority: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Per row of `history`, its n entries with the highest `priority` (same sparsity pattern;
    ties to the lower item index); rows with at most n entries are kept whole."""
    history, priority = sp.csr_matrix(history), sp.csr_matrix(priority)
    keep = np.zeros(history.nnz, bool)
    for row in range(history.shape[0]):
        start, stop = history.indptr[row], history.indptr[row + 1]
        items = history.indices[start:stop]
        values = np.asarray(priority[row, items].todense()).ravel()
        order = np.lexsort((items, -values))[:n]
        keep[start + order] = True
    kept = sp.csr_matrix((history.data * keep, history.indices.copy(), history.indptr.copy()), shape=history.shape)
    kept.eliminate_zeros()
    return kept


def similarity_priority(history: sp.csr_matrix, item_embeddings: np.ndarray) -> sp.csr_matrix:
    """Cosine of each history item's embedding with the user's mean history embedding (same
    sparsity pattern as `history`)."""
    unit = item_embeddings / np.maximum(np.linalg.norm(item_embeddings, axis=1, keepdims=True), 1e-12)
    binary = sp.csr_matrix(history, dtype=np.float64)
    binary.data[:] = 1
    mean = binary @ unit  # (n, d)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    rows = np.repeat(np.arange(binary.shape[0]), np.diff(binary.indptr))
    cosine = np.einsum("nd,nd->n", unit[binary.indices], mean[rows])
    return sp.csr_matrix((cosine + 2.0, binary.indices, binary.indptr), shape=binary.shape)  # +2: keep entries > 0


# -- text carriers ---------------------------------------------------------------------------
def liked_items(model: PersonaRecommender, state: PersonaState, history: sp.csr_matrix) -> np.ndarray:
    """(n, M) for each persona the history item with the highest persona score rho + b."""
    scores = model.scorer.persona_scores(state)  # (n, M, n_items)
    mask = np.asarray(history.todense()) > 0  # (n, n_items)
    return np.where(mask[:, None, :], scores, -np.inf).argmax(axis=2)


def parsed_states(texts: Sequence[str], explainer: Explainer, n_personas: int) -> PersonaState:
    """The states `texts` describe, each padded to `n_personas` (at least its own count)."""
    assert explainer.vocabulary is not None
    width = max([n_personas] + [len(state_from_summary(text, explainer.vocabulary).prior_logits[0]) for text in texts])
    states = [state_from_summary(text, explainer.vocabulary, width) for text in texts]
    return PersonaState(np.concatenate([state.coefficients for state in states]),
                        np.concatenate([state.prior_logits for state in states]))


# -- one split ---------------------------------------------------------------------------------
def carriers(dataset: InteractionDataset, split: Split, held: HeldOut, model: PersonaRecommender,
             ease: Any, config: CarriersBenchConfig) -> list[Carrier]:
    """Every carrier of the held-out users (module docstring)."""
    state = model.fold_in(held.fold_in)
    n, n_personas, n_bases = state.coefficients.shape
    per_user = np.ones(n)
    history_ids = np.diff(held.fold_in.indptr) * id_bytes(dataset.n_items)
    index_bytes = 1 if n_personas * n_bases <= 256 else 2
    score = model.scorer.scores
    found = [
        Carrier("state float32", "semantic/parametric", score(state), per_user * n_personas * (n_bases + 1) * 4),
        Carrier("state float16", "semantic/parametric", score(float16_state(state)), per_user * n_personas * (n_bases + 1) * 2),
        Carrier("state int8 + scale", "semantic/parametric", score(int8_state(state)), per_user * (n_personas * (n_bases + 1) + 8)),
        Carrier("one persona float32", "semantic/parametric", score(one_persona_state(state)), per_user * n_bases * 4),
    ]
    found += [Carrier(f"top {kept} coefficients", "semantic/parametric", score(sparse_state(state, kept)),
                      per_user * (kept * (index_bytes + 2) + n_personas * 2)) for kept in config.top]
    active = np.flatnonzero(np.diff(split.train.indptr) > 0)
    explainer = Explainer.for_items(model.scorer, dataset.items, split.train).with_vocabulary(
        model.fold_in(split.train[active]), dataset.items["title"].to_list())
    for length in LENGTHS:
        texts = render_summaries(explainer, explainer.vocabulary, state, length)
        found.append(Carrier(f"summary: {length}", "semantic/text", score(parsed_states(texts, explainer, n_personas)),
                             np.array([len(text.encode("utf-8")) for text in texts], float)))
    texts = render_summaries(explainer, explainer.vocabulary, state, "sentence", liked_items(model, state, held.fold_in))
    found.append(Carrier("summary: sentence + titles", "semantic/text", score(parsed_states(texts, explainer, n_personas)),
                         np.array([len(text.encode("utf-8")) for text in texts], float)))
    stamps = timestamp_matrix(dataset)[held.users]
    episodic = [("episodic/recency", "last", stamps)] if stamps.nnz else []  # recency only where timestamps exist
    episodic.append(("episodic/similarity", "similar", similarity_priority(held.fold_in, model.shared.item_embeddings)))
    for family, name, priority in episodic:
        for count in config.recent:
            kept = keep_top(held.fold_in, priority, count)
            found.append(Carrier(f"{name} {count}", family, score(model.fold_in(kept)),
                                 np.diff(kept.indptr) * float(id_bytes(dataset.n_items))))
    found.append(Carrier("history, folded in", "ceiling", score(state), history_ids.astype(float)))
    found.append(Carrier("EASE on the history", "ceiling", ease.score(held.fold_in), history_ids.astype(float)))
    return found


def measure(carrier: Carrier, held: HeldOut, catalog: np.ndarray) -> dict[str, float]:
    """NDCG@10 and @100 of a carrier's scores (catalog top-100, fold-in items excluded) and its mean bytes."""
    ranked, _ = top_k(carrier.scores, 100, exclude=held.fold_in, banned_items=~catalog)
    return {"ndcg@10": float(np.nanmean(ndcg_at_k(ranked, held.targets, 10))),
            "ndcg@100": float(np.nanmean(ndcg_at_k(ranked, held.targets, 100))),
            "bytes": float(carrier.bytes.mean())}


def _test_users(split: Split, max_users: int | None) -> HeldOut:
    held = split.test
    if max_users is None or len(held) <= max_users:
        return held
    keep = np.sort(np.random.default_rng(split.seed).choice(len(held), max_users, replace=False))
    return HeldOut(held.users[keep], held.fold_in[keep], held.targets[keep], held.known)


def run_carriers(dataset: InteractionDataset, config: CarriersBenchConfig, progress: bool = True) -> BenchResult:
    """The carriers suite on `dataset`: one row per carrier (module docstring)."""
    if dataset.fixed_test is not None:
        raise ValueError(f"{dataset.name} ships a fixed split; the carriers bench needs held-out users (strong)")
    splits = [make_split(dataset, SplitConfig(protocol="strong", seed=seed)) for seed in config.seeds]
    ease_params = {} if config.budget <= 1 else tune(  # budget 1: EASE's default l2, no tuning fit
        "ease", splits[0], EASE_GRID, metric="ndcg@100", budget=config.budget, seed=splits[0].seed).best_params
    per_carrier: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tqdm(total=len(splits), desc=f"carriers on {dataset.name}", disable=not progress) as bar:
        for split in splits:
            model = build_model("persona", config.params | {"progress": False}, split.seed).fit(split.train)
            ease = build_model("ease", ease_params, split.seed).fit(split.train)
            held = _test_users(split, config.max_users)
            results = [(carrier, measure(carrier, held, split.catalog))
                       for carrier in carriers(dataset, split, held, model, ease, config)]
            full = next(metrics["ndcg@10"] for carrier, metrics in results if carrier.name == "state float32")
            for carrier, metrics in results:
                per_carrier.setdefault((carrier.name, carrier.family), []).append(
                    metrics | {"share_of_full": metrics["ndcg@10"] / full if full > 0 else float("nan")})
            bar.update()
    rows = [aggregate(name, values) | {"carrier": name, "family": family}
            for (name, family), values in per_carrier.items()]
    for row in rows:
        del row["model"]
    return BenchResult(suite="carriers", dataset=dataset.name, protocol="strong",
                       config=asdict(config) | {"ease_params": ease_params, "moonshot": moonshot(rows),
                                                "dataset_summary": dataset.summary()},
                       rows=rows, columns=TABLE_COLUMNS)


def moonshot(rows: Sequence[dict[str, Any]], max_bytes: float = MOONSHOT_BYTES) -> dict[str, Any]:
    """The carrier of at most `max_bytes` bytes keeping the largest share of the full state's
    NDCG@10, with that share and whether it reaches MOONSHOT_SHARE (None if none is that small)."""
    small = [row for row in rows if row["bytes"] <= max_bytes and row["family"] != "ceiling"]
    if not small:
        return {"carrier": None}
    best = max(small, key=lambda row: row["share_of_full"])
    return {"carrier": best["carrier"], "bytes": best["bytes"], "share_of_full": best["share_of_full"],
            "reached": bool(best["share_of_full"] >= MOONSHOT_SHARE), "max_bytes": max_bytes}


# -- the Pareto plot ---------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (bytes, ndcg) no other point beats in both (fewer or equal bytes
    and higher NDCG, or fewer bytes and equal NDCG), by increasing bytes."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def pareto_figure(results: Sequence[dict[str, Any]]) -> Any:
    """A matplotlib Figure: one panel per result (BenchResult.to_json() of a carriers run),
    bytes per user (log) against NDCG@10 with the seed spread, the Pareto front, the full
    state's 90% line and the 32-byte line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5 * len(results), 5.2), layout="constrained")
    axes = figure.subplots(1, len(results), squeeze=False)[0]
    markers = dict(zip(FAMILIES, "osDv^"))
    for ax, result in zip(axes, results):
        rows = result["rows"]
        for family in FAMILIES:
            chosen = [row for row in rows if row["family"] == family]
            if chosen:
                ax.errorbar([row["bytes"] for row in chosen], [row["ndcg@10"] for row in chosen],
                            yerr=[row.get("ndcg@10_std") or 0.0 for row in chosen], fmt=markers[family],
                            label=family, capsize=2, alpha=0.85)
        front = [rows[i] for i in pareto_front([(row["bytes"], row["ndcg@10"]) for row in rows])]
        ax.plot([row["bytes"] for row in front], [row["ndcg@10"] for row in front], "k--", lw=0.8, label="Pareto front")
        full = next(row["ndcg@10"] for row in rows if row["carrier"] == "state float32")
        ax.axhline(MOONSHOT_SHARE * full, color="grey", lw=0.8, ls=":", label="90% of the float32 state")
        ax.axvline(MOONSHOT_BYTES, color="grey", lw=0.8, ls="-.", label=f"{MOONSHOT_BYTES} bytes")
        for row in front:
            ax.annotate(row["carrier"], (row["bytes"], row["ndcg@10"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("carrier size (bytes per user, log)")
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{result['dataset']}: carriers ({len(result['config'].get('seeds', []))} seeds)")
    axes[0].legend(fontsize=7, loc="lower right")
    return figure


def write_pareto_plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """Save `pareto_figure(results)` as a PNG at `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pareto_figure(results).savefig(path, dpi=120)
    return path
