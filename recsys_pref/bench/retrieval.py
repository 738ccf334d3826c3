"""`recsys-pref bench retrieval`: candidate retrieval against exhaustive scoring.

Per catalog, every method answers the same users' top-K with the same excluded items:
"exhaustive" scores every item (the reference). Two methods are exact, their answers proven
equal to exhaustive scoring's: "flat" (a Flat index's exact lists and the certificate,
`retrieval.certified`) and "exact-ivf" (IVF cells with proven bounds, `retrieval.exact_ivf`).
"hnsw", "ivf-flat" and "ivf-pq" are approximate: their rows say so in `answer`, certify no
user, and their recall is the measure. Rows report recall@K against exhaustive scoring, the
share of users certified and the share that fell back to exhaustive scoring, the items scored
exactly per user (rescoring, all rounds), for exact-ivf the cells and items whose bound was
computed per user, the inner products the index computed per user (FAISS indexes), users per
second, the index's build seconds and bytes. A reference row times
implicit's ALS `recommend` on the same catalog size and factor count (item factors = the
catalog's item embeddings, user factors = each user's first persona query; its values do not
change its speed). The machine is shared, so its load drifts: ALS is timed again right before
each method, `users_per_s_vs_als` is the ratio to that paired timing, and the ALS row shows
the median of its timings.

Catalogs. On a named dataset the persona model is fitted on all its positives and the users
are its users, their histories excluded: the serving situation. Recall here measures
fidelity to exhaustive scoring on the same users, not accuracy, so fitting on them is right.
On "synthetic" the catalogs (100k and 1M items by default) are drawn from a trained model's
item vectors (see `retrieval.synthetic_catalog` for why and how), with held-out users.
exact-ivf fits its query subspace to other users than the measured ones (`Workload.sample`):
the rest of the held-out users on "synthetic", the rest of the dataset's users otherwise.

Threads: every library runs with `threads` threads (faiss.omp_set_num_threads,
torch.set_num_threads, implicit's num_threads and the BLAS pool).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator

import faiss
import numpy as np
import scipy.sparse as sp
import torch
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender, PersonaState
from recsys_pref.models.persona.scorer import PersonaScorer, SharedSide
from recsys_pref.retrieval.certified import CertifiedConfig, certified_top_k
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig
from recsys_pref.retrieval.synthetic_catalog import SourceConfig, expand_catalog, fit_source, seen_items

TABLE_COLUMNS = ["catalog", "n_items", "method", "index", "answer", "recall@10", "certified_share", "fallback_share",
                 "scored_per_user", "scored_reduction", "cells_per_user", "scanned_per_user", "scanned_reduction",
                 "index_distances_per_user", "users_per_s", "users_per_s_vs_als", "build_s", "index_bytes"]


@dataclass(frozen=True)
class Method:
    """A retrieval method: an index and its first list length. In the factory "{nlist}" becomes
    the IVF cell count for the catalog (`ivf_cells`) and "{pq}" the product quantizer's
    sub-vectors: one per stored float, so that "PQ{pq}x4fs" is a learned 4-bit code per
    coordinate (with one per 2 floats, recall@10 stayed near 0.84 at 1M items: the
    quantization error exceeded the score gaps at the top); IVF visits `probe_share` of the
    cells."""

    name: str
    factory: str
    ef_search: int = 128
    ef_construction: int = 40
    probe_share: float = 1 / 8
    candidates: int = 64
    subspace_energy: float = IndexConfig.subspace_energy

    def index_config(self) -> IndexConfig:
        """The index this method builds."""
        return IndexConfig(factory=self.factory, ef_search=self.ef_search,
                           ef_construction=self.ef_construction, probe_share=self.probe_share,
                           subspace_energy=self.subspace_energy)


#: Settings picked on synthetic catalogs to reach recall@10 >= 0.99 (BENCHMARKS.md, "Retrieval").
DEFAULT_METHODS = (
    Method("flat", "Flat"),
    Method("exact-ivf", "ExactIVF{nlist}"),
    Method("hnsw", "HNSW32", ef_search=512),
    Method("ivf-flat", "IVF{nlist},Flat"),
    Method("ivf-pq", "IVF{nlist},PQ{pq}x4fs", candidates=256),
)


@dataclass(frozen=True)
class RetrievalBenchConfig:
    """k: list length (recall@k); users: query users per catalog; threads: for every library;
    methods: the indexes compared with exhaustive scoring; certified: widening settings
    (its `candidates` is each method's own); catalog_sizes: synthetic catalogs' items;
    bandwidth: their kernel-density bandwidth; source: the model they are derived from;
    model: the persona model fitted on a named dataset; seen_per_user: excluded items per
    synthetic user."""

    k: int = 10
    users: int = 500
    threads: int = 1
    methods: tuple[Method, ...] = DEFAULT_METHODS
    certified: CertifiedConfig = CertifiedConfig()
    catalog_sizes: tuple[int, ...] = (100_000, 1_000_000)
    bandwidth: float = 0.5
    source: SourceConfig = SourceConfig()
    model: PersonaConfig = PersonaConfig(max_epochs=60, patience=10, progress=False)
    seen_per_user: int = 20

    @classmethod
    def quick(cls) -> "RetrievalBenchConfig":
        """The reduced run for tests: a tiny model, one 20k catalog, 40 users, light indexes."""
        tiny = PersonaConfig(n_bases=8, embedding_dim=8, hidden_dim=32, max_epochs=3, patience=2, progress=False)
        methods = (Method("flat", "Flat"), Method("exact-ivf", "ExactIVF{nlist}"), Method("hnsw", "HNSW16", ef_search=64),
                   Method("ivf-flat", "IVF{nlist},Flat"), Method("ivf-pq", "IVF{nlist},PQ{pq}x4fs"))
        return cls(users=40, methods=methods, catalog_sizes=(20_000,), model=tiny,
                   source=SourceConfig(n_users=300, n_items=200, tastes=4, taste_dim=8, density=0.05,
                                       query_users=60, model=tiny))


@dataclass(frozen=True)
class Workload:
    """One catalog and its users: states (n, M, K), excluded items (n, n_items), and other
    users' states (the query sample exact-ivf fits its subspace to)."""

    name: str
    catalog: SharedSide
    users: PersonaState
    exclude: sp.csr_matrix
    sample: PersonaState


def run_retrieval(dataset: InteractionDataset, config: RetrievalBenchConfig | None = None) -> BenchResult:
    """The suite (module docstring) on `dataset`; "synthetic" means the derived catalogs."""
    config = config or RetrievalBenchConfig()
    rows: list[dict[str, Any]] = []
    with _threads(config.threads):
        for workload in _workloads(dataset, config):
            rows += _catalog_rows(workload, config)
    protocol = ("synthetic catalogs from a trained model's item vectors, held-out users" if dataset.name == "synthetic"
                else "persona model fitted on all positives, its users with their histories excluded")
    return BenchResult("retrieval", dataset.name, protocol, _plain_config(config), rows, columns=TABLE_COLUMNS)


def _workloads(dataset: InteractionDataset, config: RetrievalBenchConfig) -> Iterator[Workload]:
    if dataset.name == "synthetic":
        source = fit_source(config.source)
        users, sample = _split(source.users, config.users)
        for n_items in config.catalog_sizes:
            catalog = expand_catalog(source.catalog, n_items, config.bandwidth, seed=config.source.seed)
            exclude = seen_items(catalog, len(users), config.seen_per_user, seed=config.source.seed)
            yield Workload(f"synthetic-{_short(n_items)}", catalog, users, exclude, sample)
        return
    histories = dataset.to_csr()
    model = PersonaRecommender(config.model).fit(histories)
    active = np.flatnonzero(np.diff(histories.indptr) > 0)
    states = model.fold_in(histories[active])
    users, sample = _split(states, config.users)
    yield Workload(dataset.name, model.shared, users, histories[active[: len(users)]], sample)


def _catalog_rows(workload: Workload, config: RetrievalBenchConfig) -> list[dict[str, Any]]:
    catalog, users, exclude, k = workload.catalog, workload.users, workload.exclude, config.k
    scorer = PersonaScorer(catalog)
    n_users, n_items = len(users), catalog.n_items
    base = {"catalog": workload.name, "n_items": n_items}
    catalog.rewards  # computed once, outside every timing
    start = time.perf_counter()
    truth, _ = scorer.top_k(users, k, exclude)
    exhaustive_s = time.perf_counter() - start
    als_s = [_time_als(scorer, users, exclude, k, config.threads)]
    rows = [base | _row("exhaustive", "-", "exact", n_users / exhaustive_s, als_s[0] / exhaustive_s, n_items,
                        index_bytes=catalog.rewards.nbytes, recall_at_k=1.0)]
    sample = scorer.queries(workload.sample)
    for method in tqdm(config.methods, desc=f"retrieval {workload.name}", leave=False):
        start = time.perf_counter()
        index_config = method.index_config()
        index = CandidateIndex.build(catalog.item_embeddings, catalog.item_bias, index_config,
                                     sample.reshape(-1, sample.shape[-1]))
        build_s = time.perf_counter() - start
        certified = replace(config.certified, candidates=method.candidates,
                            max_candidates=max(method.candidates, config.certified.max_candidates))
        als_s.append(_time_als(scorer, users, exclude, k, config.threads))  # paired with this method
        start = time.perf_counter()
        result = certified_top_k(index, scorer, users, k, exclude, certified)
        seconds = time.perf_counter() - start
        rows.append(base | _row(
            method.name, index.factory, "exact" if index.exact else "approximate", n_users / seconds,
            als_s[-1] / seconds, n_items, recall_at_k=recall(result.ids, truth), certified_share=result.certified_share,
            fallback_share=float(result.fallback.mean()), scored=float(result.scored.mean()),
            cells=float("nan") if result.cells is None else float(result.cells.mean()),
            scanned=float("nan") if result.scanned is None else float(result.scanned.mean()),
            distances=float("nan") if index.cells is not None else index.distance_count / n_users,
            build_s=build_s, index_bytes=index.memory_bytes))
    rows.insert(1, base | _row("implicit-als", "-", "-", n_users / float(np.median(als_s)), 1.0,
                               n_items, index_bytes=catalog.item_embeddings.nbytes))
    return rows


def _row(method: str, index: str, answer: str, users_per_s: float, vs_als: float, n_items: int, *,
         recall_at_k: float = float("nan"), certified_share: float = float("nan"), fallback_share: float = float("nan"),
         scored: float | None = None, cells: float = float("nan"), scanned: float = float("nan"),
         distances: float = 0.0, build_s: float = 0.0, index_bytes: int = 0) -> dict[str, Any]:
    """One table row; `scored` defaults to the whole catalog (exhaustive methods)."""
    scored = float(n_items) if scored is None else scored
    return {"method": method, "index": index, "answer": answer, "recall@10": recall_at_k,
            "certified_share": certified_share, "fallback_share": fallback_share, "scored_per_user": scored,
            "scored_reduction": n_items / scored, "cells_per_user": cells, "scanned_per_user": scanned,
            "scanned_reduction": n_items / scanned, "index_distances_per_user": distances,
            "users_per_s": users_per_s, "users_per_s_vs_als": vs_als, "build_s": build_s, "index_bytes": index_bytes}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of truth (n, k) (ids, -1 = none) that found (n, k) contains;
    rows of truth without any item are skipped."""
    shares = [np.isin(t[t >= 0], f).mean() for f, t in zip(found, truth) if (t >= 0).any()]
    return float(np.mean(shares)) if shares else float("nan")


def _time_als(scorer: PersonaScorer, users: PersonaState, exclude: sp.csr_matrix, k: int, threads: int) -> float:
    """Seconds implicit's ALS `recommend` takes for these users on a catalog of the same size and
    factor count, seen items filtered (the throughput reference)."""
    catalog = scorer.shared
    als = AlternatingLeastSquares(factors=catalog.item_embeddings.shape[1], num_threads=threads)
    als.item_factors = catalog.item_embeddings
    als.user_factors = np.ascontiguousarray(scorer.queries(users)[:, 0])
    start = time.perf_counter()
    als.recommend(np.arange(len(users)), exclude, N=k, filter_already_liked_items=True)
    return time.perf_counter() - start


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """faiss, torch and the BLAS pool limited to `n` threads; torch's and faiss's settings restored after."""
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)


def _split(state: PersonaState, n: int) -> tuple[PersonaState, PersonaState]:
    """The first n users (measured) and the rest (exact-ivf's query sample; the measured users
    themselves when there is no one else)."""
    first = PersonaState(state.coefficients[:n], state.prior_logits[:n])
    rest = PersonaState(state.coefficients[n:], state.prior_logits[n:])
    return first, rest if len(rest) else first


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _plain_config(config: RetrievalBenchConfig) -> dict[str, Any]:
    plain = asdict(config)
    plain["methods"] = [asdict(method) for method in config.methods]
    return plain

