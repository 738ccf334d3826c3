"""A FAISS index over the persona model's items, with the bias folded in, verified on load.

Item i is stored as x_i = [e_i, b_i, 0, ...] and a persona's query as y_um = [q_um, 1, 0, ...]
(d + 1 numbers, zero-padded to a multiple of `PAD_TO` so that product quantizers can split
them; zeros change no inner product), hence

    <y_um, x_i> = <q_um, e_i> + b_i = rho_um(i) + b_i,

persona m's reward for item i plus the item's bias: an upper bound of the attentive score
s(u, i) (see `retrieval.certified`). The index type is a FAISS index-factory string, or
"ExactIVF{nlist}"; "{nlist}" stands for the catalog's IVF cell count (`ivf_cells`) and "auto"
picks by catalog size. Two kinds are *exact* and may certify answers:

- "Flat": a linear scan of every item (searched with torch, see `_flat_search`);
- "ExactIVF{nlist}": IVF cells over the bound space of `retrieval.cells` (each item's
  projection on the users' query subspace, its bias and its residual norm), searched by
  `retrieval.exact_ivf` with a proven bound per cell. It is not searched through FAISS;
  FAISS clusters, stores and serialises it.

Every other type ("HNSW32", "IVF{nlist},Flat", "IVF{nlist},PQ72x4fs", ...) is *approximate*:
it may miss items of a persona's true top-n, so nothing it returns is certified. Approximate
indexes search the same ranking as a nearest-neighbour problem (Bachrach et al. 2014): each
item gets one more coordinate sqrt(R^2 - |x_i|^2), R the largest |x_i|, and each query a 0
there, so |y - x_i|^2 = |y|^2 + R^2 - 2 <y, x_i> and the L2 ranking is the inner-product
ranking. Graphs and k-means cells are built for L2 geometry: on the 100k synthetic catalog of
the retrieval benchmark, HNSW32 at efSearch 128 found 48% of each persona's true top-64 by
inner product and 86% through the transform; IVF1024 visiting 32 cells, 57% and 84% (a one-off
probe while developing, 100 users; BENCHMARKS.md, "Retrieval").

Loading checks the index against the model it is loaded with (`CandidateIndex.from_bytes`):
the metadata's sha256 of the stored vectors, then the index file's own stored vectors,
reconstructed and compared with the model's (all of them for kinds that store vectors as
they are; a seeded sample, encoded by the index's own quantizer, for lossy kinds). An index
file from another model is refused even when its metadata and manifest say otherwise.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np
import torch

from recsys_pref.models.artifact import ArtifactError
from recsys_pref.retrieval.cells import CellBounds, bound_items, bound_queries, fit_subspace

PAD_TO = 8  # stored vectors are padded to a multiple of this many floats (PQ sub-vectors must divide it)
FLAT_BLOCK_FLOATS = 1 << 24  # scores held at once by a flat search: 64 MB
EXACT_IVF = "ExactIVF"  # factory prefix of the exact cell index ("ExactIVF{nlist}")
VERIFY_BLOCK = 1 << 16  # items reconstructed at once while verifying a loaded index
VERIFY_RTOL = 1e-6  # stored and recomputed vectors agree to float32 rounding (6e-8) and a margin
VERIFY_SELF_SEARCH_SHARE = 0.9  # sampled items a quantized index must find near their own vector
RAW_STORAGE = (faiss.IndexFlat, faiss.IndexHNSWFlat, faiss.IndexIVFFlat)  # indexes storing vectors as they are


class IndexMismatchError(ArtifactError):
    """A candidate index does not belong to the model it is loaded with."""


@dataclass(frozen=True)
class IndexConfig:
    """How the candidate index is built and searched.

    factory: "Flat", "ExactIVF{nlist}" (exact), a FAISS index-factory string ("HNSW32",
        "IVF{nlist},Flat", "IVF1024,PQ72x4fs", ...: approximate) or "auto": "Flat" up to
        `flat_max_items` items, `large_factory` above. "{nlist}" becomes `ivf_cells(n_items)`,
        "{pq}" the stored floats per item (one 4-bit code per float in "PQ{pq}x4fs").
    flat_max_items: largest catalog "auto" serves with an exact flat scan; above it,
        "ExactIVF". At 100k items ExactIVF served 1.6x Flat's users/s, at 20k (the quick
        bench's tiny model) Flat served 1.9x ExactIVF's (BENCHMARKS.md, issue 18); the
        crossover in between is not measured, so the index switches where serving starts
        using one (`RetrievalConfig.min_items`, 50k).
    large_factory: what "auto" uses above `flat_max_items`; exact by default (approximate
        indexes are an opt-in, `RetrievalConfig.approximate`).
    ef_search: HNSW candidate-queue length per query (more = higher recall, slower).
    ef_construction: HNSW queue length while building (more = better graph, slower build).
    probe_share: share of the IVF cells an approximate IVF index visits per query.
    train_items: at most this many items (a seeded random sample) train IVF/PQ quantizers.
    seed: the sample's seed.
    mips_as_l2: approximate indexes search the L2 transform of the inner-product problem
        (module docstring); False searches inner products directly.
    subspace_energy: "ExactIVF" projects the items on the smallest subspace holding this
        share of the sample queries' squared norm (`retrieval.cells`); 1 (or no sample
        queries) keeps all dimensions. The answer is exact either way; the share only moves
        work between cells and items.
    verify_sample: items of an approximate index compared with the model's when it is loaded
        (exact indexes are compared in full).
    """

    factory: str = "auto"
    flat_max_items: int = 50_000
    large_factory: str = EXACT_IVF + "{nlist}"
    ef_search: int = 128
    ef_construction: int = 40
    probe_share: float = 0.125
    train_items: int = 200_000
    seed: int = 0
    mips_as_l2: bool = True
    subspace_energy: float = 0.99
    verify_sample: int = 4096

    def __post_init__(self) -> None:
        for name in ("flat_max_items", "ef_search", "ef_construction", "train_items", "verify_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.probe_share <= 1:
            raise ValueError(f"IndexConfig: probe_share must be in (0, 1], got {self.probe_share}")
        if not 0 < self.subspace_energy <= 1:
            raise ValueError(f"IndexConfig: subspace_energy must be in (0, 1], got {self.subspace_energy}")
        if not self.factory.strip():
            raise ValueError("IndexConfig: factory must be 'Flat', 'ExactIVF{nlist}', a FAISS index-factory string or 'auto'")

    def resolve(self, n_items: int) -> str:
        """The factory string used for a catalog of `n_items` items."""
        factory = self.factory if self.factory != "auto" else "Flat" if n_items <= self.flat_max_items else self.large_factory
        return factory.replace("{nlist}", str(ivf_cells(n_items)))

    def searches_l2(self, factory: str) -> bool:
        """Whether an index of type `factory` stores the L2 transform (approximate types only)."""
        return self.mips_as_l2 and not is_exact(factory)


def ivf_cells(n_items: int) -> int:
    """IVF cells for a catalog: about 4 sqrt(n_items), a power of two (FAISS's usual advice)."""
    return int(2 ** round(np.log2(max(4 * np.sqrt(n_items), 16))))


def is_flat(factory: str) -> bool:
    """Whether `factory` is an exact flat scan."""
    return factory.replace(" ", "") == "Flat"


def is_exact_ivf(factory: str) -> bool:
    """Whether `factory` is the exact cell index "ExactIVF{nlist}"."""
    return factory.replace(" ", "").startswith(EXACT_IVF)


def is_exact(factory: str) -> bool:
    """Whether an index of type `factory` returns exact answers (and may certify them)."""
    return is_flat(factory) or is_exact_ivf(factory)


def stored_vectors(item_embeddings: np.ndarray, item_bias: np.ndarray, l2: bool = False) -> np.ndarray:
    """x_i = [e_i, b_i, 0...], with l2 [e_i, b_i, sqrt(R^2 - |x_i|^2), 0...]: (n_items, d) and
    (n_items,) -> (n_items, padded(d + 1 + l2)) float32.

    Raises ValueError on mismatched shapes or non-finite values.
    """
    embeddings, bias = _checked_items(item_embeddings, item_bias)
    d = embeddings.shape[1]
    vectors = np.zeros((embeddings.shape[0], stored_width(d, l2)), np.float32)
    vectors[:, :d] = embeddings
    vectors[:, d] = bias
    if l2:
        norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        vectors[:, d + 1] = np.sqrt(norms.max() - norms)
    return vectors


def _checked_items(item_embeddings: np.ndarray, item_bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """item_embeddings (n, d) and item_bias (n,) as float32; ValueError naming what is wrong."""
    embeddings = np.asarray(item_embeddings, dtype=np.float32)
    bias = np.asarray(item_bias, dtype=np.float32)
    if embeddings.ndim != 2 or bias.shape != (embeddings.shape[0],):
        raise ValueError(f"item embeddings (n, d) and biases (n,) expected, got {embeddings.shape} and {bias.shape}")
    if embeddings.shape[0] == 0:
        raise ValueError("cannot index an empty catalog")
    if not (np.isfinite(embeddings).all() and np.isfinite(bias).all()):
        raise ValueError("item embeddings or biases contain NaN or infinite values")
    return embeddings, bias


def index_vectors(factory: str, config: IndexConfig, item_embeddings: np.ndarray, item_bias: np.ndarray,
                  subspace: np.ndarray | None) -> np.ndarray:
    """What an index of type `factory` stores for these items, in item order: the bound-space
    x' for "ExactIVF" (`retrieval.cells`), else x (or its L2 transform), float32."""
    if is_exact_ivf(factory):
        return bound_items(*_checked_items(item_embeddings, item_bias), subspace)
    return stored_vectors(item_embeddings, item_bias, config.searches_l2(factory))


def query_vectors(queries: np.ndarray, stored_dim: int) -> np.ndarray:
    """y = [q, 1, 0...]: persona queries (n, d) -> (n, stored_dim) float32."""
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or stored_dim not in (stored_width(queries.shape[1], False), stored_width(queries.shape[1], True)):
        raise ValueError(f"queries must be (n, d) with d matching the index's {stored_dim} stored floats, got shape {queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("queries contain NaN or infinite values")
    vectors = np.zeros((queries.shape[0], stored_dim), np.float32)
    vectors[:, : queries.shape[1]] = queries
    vectors[:, queries.shape[1]] = 1.0
    return vectors


def items_sha256(vectors: np.ndarray) -> str:
    """sha256 of the stored item vectors' bytes (shape included): identifies the model's items."""
    digest = hashlib.sha256(str(vectors.shape).encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def stored_width(dim: int, l2: bool) -> int:
    """Floats per stored vector for d = `dim`: d + 1 (bias) + 1 with the L2 transform, padded."""
    return -(-(dim + 1 + l2) // PAD_TO) * PAD_TO


class CandidateIndex:
    """A FAISS index over the items (module docstring) with the hash of what it stores.

    Approximate and Flat indexes: `search(queries, n)` returns, per persona query q (d,), the
    ids of the n items with the largest <q, e_i> + b_i as the index finds them (exactly for
    "Flat"). "ExactIVF": `cells` and `bound_queries` feed `retrieval.exact_ivf`.
    """

    def __init__(self, index: faiss.Index, factory: str, sha256: str, config: IndexConfig,
                 subspace: np.ndarray | None = None, cells: CellBounds | None = None) -> None:
        self.index, self.factory, self.sha256, self.config, self.subspace = index, factory, sha256, config, subspace
        self.cells = cells if cells is not None or not is_exact_ivf(factory) else CellBounds.from_ivf(index)
        self.distance_count = 0  # inner products the index has computed in `search` so far
        self._apply_search_parameters()

    @classmethod
    def build(cls, item_embeddings: np.ndarray, item_bias: np.ndarray, config: IndexConfig | None = None,
              queries: np.ndarray | None = None) -> "CandidateIndex":
        """Index a catalog: item_embeddings (n_items, d), item_bias (n_items,). queries (n, d):
        a sample of persona queries users ask; "ExactIVF" fits its subspace to them (none:
        no projection)."""
        config = config or IndexConfig()
        factory = config.resolve(len(item_bias))
        subspace = fit_subspace(queries, config.subspace_energy) if is_exact_ivf(factory) and queries is not None else None
        vectors = index_vectors(factory, config, item_embeddings, item_bias, subspace)
        factory = factory.replace("{pq}", str(vectors.shape[1]))
        faiss_factory = _exact_ivf_factory(factory, len(vectors)) if is_exact_ivf(factory) else factory
        metric = faiss.METRIC_L2 if is_exact_ivf(factory) or config.searches_l2(factory) else faiss.METRIC_INNER_PRODUCT
        try:
            index = faiss.index_factory(vectors.shape[1], faiss_factory, metric)
        except RuntimeError as error:
            raise ValueError(f"FAISS cannot build index {factory!r} for {vectors.shape[1]}-d vectors: {error}") from error
        hnsw = _hnsw(index)
        if hnsw is not None:
            hnsw.efConstruction = config.ef_construction
        if not index.is_trained:
            rng = np.random.default_rng(config.seed)
            sample = vectors[np.sort(rng.permutation(len(vectors))[: config.train_items])]
            index.train(sample)
        index.add(vectors)
        return cls(index, factory, items_sha256(stored_vectors(item_embeddings, item_bias)), config, subspace)

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    @property
    def stored_dim(self) -> int:
        return int(self.index.d)

    @property
    def exact(self) -> bool:
        """Whether answers through this index are exact ("Flat", "ExactIVF"), not approximations."""
        return is_exact(self.factory)

    def bound_queries(self, queries: np.ndarray) -> np.ndarray:
        """Persona queries (..., d) in an "ExactIVF" index's bound space (..., D) (`retrieval.cells`)."""
        return bound_queries(queries, self.subspace)

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Ids of the top-n items per persona query by <q, e_i> + b_i: queries (q, d) -> ids
        (q, n) int64, best first as the index ranks them, -1 where it found fewer than n."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if self.cells is not None:
            raise ValueError("an ExactIVF index is searched by retrieval.exact_ivf (certified_top_k), not per query")
        vectors = query_vectors(queries, self.stored_dim)
        _reset_search_stats()
        if is_flat(self.factory):
            ids = self._flat_search(vectors, min(n, self.n_items))
        else:
            _, ids = self.index.search(vectors, min(n, self.n_items))
        self.distance_count += self._distances_since_reset(len(vectors))
        if ids.shape[1] < n:
            ids = np.pad(ids, ((0, 0), (0, n - ids.shape[1])), constant_values=-1)
        return ids

    def add(self, item_embeddings: np.ndarray, item_bias: np.ndarray) -> None:
        """Catch up with a grown catalog: item_embeddings (n, d) and item_bias (n,) are all its
        items, the first `n_items` the indexed ones (checked); the rest are added with the next
        ids. "ExactIVF" puts each in its nearest cell and recomputes every cell's mean and
        radius. Only exact indexes grow; approximate ones are rebuilt (their L2 transform
        depends on the largest item norm)."""
        if not self.exact:
            raise ValueError(f"items can be added to exact indexes only; rebuild the {self.factory!r} index")
        vectors = index_vectors(self.factory, self.config, item_embeddings, item_bias, self.subspace)
        if len(vectors) < self.n_items or vectors.shape[1] != self.stored_dim:
            raise ValueError(f"the grown catalog gives {vectors.shape} stored floats, the index holds "
                             f"{self.n_items} items of {self.stored_dim}")
        self._verify(vectors[: self.n_items])
        self.index.add(vectors[self.n_items :])
        if self.cells is not None:
            self.cells = CellBounds.from_ivf(self.index)
        self.sha256 = items_sha256(stored_vectors(item_embeddings, item_bias))

    @property
    def memory_bytes(self) -> int:
        """Size of the serialised index (vectors, graph or codes): its memory to within a few percent."""
        return int(faiss.serialize_index(self.index).size)

    # -- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The FAISS index file's bytes (faiss.write_index format, no pickle)."""
        return faiss.serialize_index(self.index).tobytes()

    def metadata(self) -> dict[str, Any]:
        """What `from_bytes` needs besides the bytes: factory, item hash, sizes, config and the
        "ExactIVF" subspace (d x r floats, exact in JSON)."""
        return {"factory": self.factory, "items_sha256": self.sha256, "n_items": self.n_items,
                "stored_dim": self.stored_dim, "config": asdict(self.config),
                "subspace": None if self.subspace is None else self.subspace.tolist()}

    @classmethod
    def from_bytes(
        cls, data: bytes, metadata: dict[str, Any], item_embeddings: np.ndarray, item_bias: np.ndarray
    ) -> "CandidateIndex":
        """Load an index saved with `to_bytes`/`metadata` beside the model whose items are
        item_embeddings (n_items, d) and item_bias (n_items,).

        Raises IndexMismatchError when the index was built from other item vectors (another
        model, or a retrained one), whether its metadata or only its file is another's.
        """
        try:
            config = IndexConfig(**metadata.get("config", {}))
        except TypeError as error:  # a field this version does not know
            raise IndexMismatchError(f"the candidate index's config is not one this version reads: {error}") from error
        factory = str(metadata.get("factory"))
        subspace = None if metadata.get("subspace") is None else np.asarray(metadata["subspace"], np.float64)
        sha256 = items_sha256(stored_vectors(item_embeddings, item_bias))
        if metadata.get("items_sha256") != sha256:
            raise IndexMismatchError(
                f"the candidate index ({factory!r}, {metadata.get('n_items')} items) was built "
                f"from other item vectors than this model's {len(item_bias)} items (sha256 "
                f"{str(metadata.get('items_sha256'))[:12]}... vs {sha256[:12]}...); rebuild it with "
                "CandidateIndex.build or pipeline.build_index()"
            )
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as error:
            raise IndexMismatchError(f"the candidate index file cannot be read by FAISS: {error}") from error
        if index.ntotal != len(item_bias) or index.d != metadata.get("stored_dim"):
            raise IndexMismatchError(
                f"the candidate index file holds {index.ntotal} items of {index.d} floats, its metadata and "
                f"the model say {len(item_bias)} items of {metadata.get('stored_dim')}"
            )
        loaded = cls(index, factory, sha256, config, subspace)
        loaded._verify(index_vectors(factory, config, item_embeddings, item_bias, subspace))
        return loaded

    # -- internals ---------------------------------------------------------------------------
    def _verify(self, expected: np.ndarray) -> None:
        """Compare the stored vectors with `expected` (n, D), the model's first n items as this
        kind stores them: all n for an exact index, a seeded sample of an approximate one.
        Indexes that store vectors as they are (Flat, HNSW, IVF-Flat, ExactIVF) are compared
        value by value, to float32 rounding of the computation (VERIFY_RTOL, so a model computed
        on another machine still matches); quantized ones (PQ), whose codes FAISS cannot decode
        after loading, must find each sampled item among the 10 nearest to its own vector
        (`_self_search_misses`). Raises IndexMismatchError when the check fails."""
        if self.exact:
            ids = np.arange(len(expected))
        else:
            rng = np.random.default_rng(self.config.seed)
            ids = np.sort(rng.permutation(len(expected))[: self.config.verify_sample])
        if not isinstance(faiss.downcast_index(self.index), RAW_STORAGE):
            misses = self._self_search_misses(expected, ids)
            if misses > (1 - VERIFY_SELF_SEARCH_SHARE) * len(ids):
                raise IndexMismatchError(
                    f"the candidate index file's stored vectors are not this model's items: {misses} of {len(ids)} "
                    "sampled items are not found near their own vectors (the file was built for another model or "
                    "changed); rebuild it with CandidateIndex.build or pipeline.build_index()")
            return
        scale = float(np.abs(expected).max(initial=0))
        differing = 0
        for start in range(0, len(ids), VERIFY_BLOCK):
            block = ids[start : start + VERIFY_BLOCK]
            close = np.isclose(self._stored(block), expected[block], rtol=VERIFY_RTOL, atol=VERIFY_RTOL * scale)
            differing += int((~close.all(axis=1)).sum())
        if differing:
            raise IndexMismatchError(
                f"the candidate index file's stored vectors are not this model's items: {differing} of {len(ids)} "
                f"checked items differ (the file was built for another model or changed); rebuild it with "
                "CandidateIndex.build or pipeline.build_index()"
            )

    def _self_search_misses(self, expected: np.ndarray, ids: np.ndarray) -> int:
        """How many items `ids` the index does not return among the 10 nearest to their own
        stored vector `expected[ids]` (a quantized index of this model's items finds nearly all)."""
        _, found = self.index.search(np.ascontiguousarray(expected[ids], np.float32), min(10, self.n_items))
        return int((~(found == ids[:, None]).any(axis=1)).sum())

    def _stored(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of items `ids` (n,) as the index file holds them (n, D) float32."""
        if self.cells is not None:
            position = np.empty(self.n_items, np.int64)
            position[self.cells.order] = np.arange(len(self.cells.order))
            return self.cells.vectors[position[ids]]
        if is_flat(self.factory):
            return self._flat_vectors()[ids]
        ivf = _ivf(self.index)
        if ivf is not None and not ivf.direct_map.type:
            ivf.make_direct_map()
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, np.int64))

    def _flat_vectors(self) -> np.ndarray:
        """A flat index's stored vectors (n_items, D), a view of FAISS's memory."""
        return faiss.rev_swig_ptr(self.index.get_xb(), self.n_items * self.stored_dim).reshape(self.n_items, self.stored_dim)

    def _flat_search(self, vectors: np.ndarray, n: int) -> np.ndarray:
        """A flat index's exact top-n as a torch matrix product and topk over its stored vectors,
        in query blocks of at most FLAT_BLOCK_FLOATS scores: on 2 cores faiss's own flat search
        took 2.4x as long at 100k items (9.2 s against 3.9 s for 512 queries, k = 64, one probe)."""
        stored = torch.from_numpy(self._flat_vectors())
        block = max(1, FLAT_BLOCK_FLOATS // self.n_items)
        ids = np.empty((len(vectors), n), np.int64)
        for start in range(0, len(vectors), block):
            scores = torch.from_numpy(vectors[start : start + block]) @ stored.T
            ids[start : start + block] = torch.topk(scores, n, dim=1).indices.numpy()
        return ids

    def _apply_search_parameters(self) -> None:
        hnsw = _hnsw(self.index)
        if hnsw is not None:
            hnsw.efSearch = self.config.ef_search
        ivf = _ivf(self.index)
        if ivf is not None:
            ivf.nprobe = max(1, round(ivf.nlist * self.config.probe_share))

    def _distances_since_reset(self, n_queries: int) -> int:
        if _hnsw(self.index) is not None:
            return int(faiss.cvar.hnsw_stats.ndis)
        ivf = _ivf(self.index)
        if ivf is not None:  # the coarse quantizer's scan plus the visited cells' items
            return int(faiss.cvar.indexIVF_stats.ndis) + n_queries * int(ivf.nlist)
        return n_queries * self.n_items


def _exact_ivf_factory(factory: str, n_items: int) -> str:
    """The FAISS IVF-Flat that stores an "ExactIVF{nlist}" index: at most one cell per item."""
    cells = factory.replace(" ", "")[len(EXACT_IVF):]
    if not cells.isdigit() or int(cells) < 1:
        raise ValueError(f"an exact IVF index is written 'ExactIVF<cells>' or 'ExactIVF{{nlist}}', got {factory!r}")
    return f"IVF{min(int(cells), n_items)},Flat"


def _hnsw(index: faiss.Index) -> Any:
    """The HNSW graph of an HNSW index, else None."""
    index = faiss.downcast_index(index)
    return index.hnsw if isinstance(index, faiss.IndexHNSW) else None


def _ivf(index: faiss.Index) -> Any:
    """The IVF part of an IVF index (possibly wrapped), else None."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _reset_search_stats() -> None:
    faiss.cvar.hnsw_stats.reset()
    faiss.cvar.indexIVF_stats.reset()
