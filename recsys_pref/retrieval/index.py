"""A FAISS inner-product index over the persona model's items, with the bias folded in.

Item i is stored as x_i = [e_i, b_i, 0, ...] and a persona's query as y_um = [q_um, 1, 0, ...]
(d + 1 numbers, zero-padded to a multiple of `PAD_TO` so that product quantizers can split
them; zeros change no inner product), hence

    <y_um, x_i> = <q_um, e_i> + b_i = rho_um(i) + b_i,

persona m's reward for item i plus the item's bias: an upper bound of the attentive score
s(u, i) (see `retrieval.certified`). The index type is a FAISS index-factory string: "Flat"
(exact, linear in the catalog) for small catalogs, "IVF{nlist},Flat", "HNSW32" or
"IVF{nlist},PQ72x4fs" style indexes (approximate, sublinear) for large ones, "{nlist}" standing
for the catalog's IVF cell count (`ivf_cells`); "auto" picks by catalog size.

"Flat" searches inner products directly. Approximate indexes search the same ranking as a
nearest-neighbour problem (Bachrach et al. 2014): each item gets one more coordinate
sqrt(R^2 - |x_i|^2), R the largest |x_i|, and each query a 0 there, so |y - x_i|^2 =
|y|^2 + R^2 - 2 <y, x_i> and the L2 ranking is the inner-product ranking. Graphs and k-means
cells are built for L2 geometry: on the 100k synthetic catalog of the retrieval benchmark,
HNSW32 at efSearch 128 found 48% of each persona's true top-64 by inner product and 86%
through the transform; IVF1024 visiting 32 cells, 57% and 84% (a one-off probe while
developing, 100 users; BENCHMARKS.md, "Retrieval").

The index records the sha256 of the stored item vectors, so an index can only be loaded
beside the model it was built from (`CandidateIndex.from_bytes` refuses any other).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np
import torch

from recsys_pref.models.artifact import ArtifactError

PAD_TO = 8  # stored vectors are padded to a multiple of this many floats (PQ sub-vectors must divide it)
FLAT_BLOCK_FLOATS = 1 << 24  # scores held at once by a flat search: 64 MB


class IndexMismatchError(ArtifactError):
    """A candidate index does not belong to the model it is loaded with."""


@dataclass(frozen=True)
class IndexConfig:
    """How the candidate index is built and searched.

    factory: a FAISS index-factory string ("Flat", "HNSW32", "IVF{nlist},Flat", "IVF1024,PQ72x4fs",
        ...; "{nlist}" becomes `ivf_cells(n_items)`) or "auto": "Flat" up to `flat_max_items`
        items, `large_factory` above.
    flat_max_items: largest catalog "auto" serves with an exact flat scan. 100k items x 72
        floats is a 29 MB scan per query, about as fast as a graph walk at that size.
    large_factory: what "auto" uses above `flat_max_items`. IVF-Flat: on the 1M synthetic
        catalog (BENCHMARKS.md, "Retrieval") it kept recall@10 at 0.99 with the default 64
        candidates per persona, where HNSW32 (ef_construction 40; 160 did not finish building
        in 8 minutes) fell to 0.69. "IVF{nlist},PQ72x4fs" (one 4-bit code per stored float)
        with 256 candidates per persona reached 0.99 at 3.9x the speed of
        implicit's ALS; it needs `CertifiedConfig(candidates=256)` beside it, so it is opt-in.
    ef_search: HNSW candidate-queue length per query (more = higher recall, slower).
    ef_construction: HNSW queue length while building (more = better graph, slower build).
    probe_share: share of the IVF cells visited per query (more = higher recall, slower); 1/8
        reached recall@10 0.99 on the synthetic catalogs.
    train_items: at most this many items (a seeded random sample) train IVF/PQ quantizers.
    seed: the sample's seed.
    mips_as_l2: approximate indexes search the L2 transform of the inner-product problem
        (module docstring); False searches inner products directly.
    """

    factory: str = "auto"
    flat_max_items: int = 100_000
    large_factory: str = "IVF{nlist},Flat"
    ef_search: int = 128
    ef_construction: int = 40
    probe_share: float = 0.125
    train_items: int = 200_000
    seed: int = 0
    mips_as_l2: bool = True

    def __post_init__(self) -> None:
        for name in ("flat_max_items", "ef_search", "ef_construction", "train_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.probe_share <= 1:
            raise ValueError(f"IndexConfig: probe_share must be in (0, 1], got {self.probe_share}")
        if not self.factory.strip():
            raise ValueError("IndexConfig: factory must be a FAISS index-factory string or 'auto'")

    def resolve(self, n_items: int) -> str:
        """The factory string used for a catalog of `n_items` items."""
        factory = self.factory if self.factory != "auto" else "Flat" if n_items <= self.flat_max_items else self.large_factory
        return factory.replace("{nlist}", str(ivf_cells(n_items)))

    def searches_l2(self, factory: str) -> bool:
        """Whether an index of type `factory` stores the L2 transform (approximate types only)."""
        return self.mips_as_l2 and not is_flat(factory)


def ivf_cells(n_items: int) -> int:
    """IVF cells for a catalog: about 4 sqrt(n_items), a power of two (FAISS's usual advice)."""
    return int(2 ** round(np.log2(max(4 * np.sqrt(n_items), 16))))


def is_flat(factory: str) -> bool:
    """Whether `factory` is an exact flat scan."""
    return factory.replace(" ", "") == "Flat"


def stored_vectors(item_embeddings: np.ndarray, item_bias: np.ndarray, l2: bool = False) -> np.ndarray:
    """x_i = [e_i, b_i, 0...], with l2 [e_i, b_i, sqrt(R^2 - |x_i|^2), 0...]: (n_items, d) and
    (n_items,) -> (n_items, padded(d + 1 + l2)) float32.

    Raises ValueError on mismatched shapes or non-finite values.
    """
    embeddings = np.asarray(item_embeddings, dtype=np.float32)
    bias = np.asarray(item_bias, dtype=np.float32)
    if embeddings.ndim != 2 or bias.shape != (embeddings.shape[0],):
        raise ValueError(f"item embeddings (n, d) and biases (n,) expected, got {embeddings.shape} and {bias.shape}")
    if embeddings.shape[0] == 0:
        raise ValueError("cannot index an empty catalog")
    if not (np.isfinite(embeddings).all() and np.isfinite(bias).all()):
        raise ValueError("item embeddings or biases contain NaN or infinite values")
    d = embeddings.shape[1]
    vectors = np.zeros((embeddings.shape[0], stored_width(d, l2)), np.float32)
    vectors[:, :d] = embeddings
    vectors[:, d] = bias
    if l2:
        norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        vectors[:, d + 1] = np.sqrt(norms.max() - norms)
    return vectors


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
    """A FAISS index over x_i = [e_i, b_i] (inner product, or its L2 transform) with the hash
    of what it indexes.

    `search(queries, n)` returns, per persona query q (d,), the ids of the n items with the
    largest <q, e_i> + b_i as the index finds them (exactly for "Flat").
    """

    def __init__(self, index: faiss.Index, factory: str, sha256: str, config: IndexConfig) -> None:
        self.index, self.factory, self.sha256, self.config = index, factory, sha256, config
        self.distance_count = 0  # inner products the index has computed in `search` so far
        self._apply_search_parameters()

    @classmethod
    def build(cls, item_embeddings: np.ndarray, item_bias: np.ndarray, config: IndexConfig | None = None) -> "CandidateIndex":
        """Index a catalog: item_embeddings (n_items, d), item_bias (n_items,)."""
        config = config or IndexConfig()
        factory = config.resolve(len(item_bias))
        l2 = config.searches_l2(factory)
        vectors = stored_vectors(item_embeddings, item_bias, l2)
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_L2 if l2 else faiss.METRIC_INNER_PRODUCT)
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
        return cls(index, factory, items_sha256(vectors), config)

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    @property
    def stored_dim(self) -> int:
        return int(self.index.d)

    @property
    def exact(self) -> bool:
        """Whether search returns the true top-n (a flat scan) rather than an approximation."""
        return is_flat(self.factory)

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Ids of the top-n items per persona query by <q, e_i> + b_i: queries (q, d) -> ids
        (q, n) int64, best first as the index ranks them, -1 where it found fewer than n."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        vectors = query_vectors(queries, self.stored_dim)
        _reset_search_stats()
        if self.exact:
            ids = self._flat_search(vectors, min(n, self.n_items))
        else:
            _, ids = self.index.search(vectors, min(n, self.n_items))
        self.distance_count += self._distances_since_reset(len(vectors))
        if ids.shape[1] < n:
            ids = np.pad(ids, ((0, 0), (0, n - ids.shape[1])), constant_values=-1)
        return ids

    @property
    def memory_bytes(self) -> int:
        """Size of the serialised index (vectors, graph or codes): its memory to within a few percent."""
        return int(faiss.serialize_index(self.index).size)

    # -- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The FAISS index file's bytes (faiss.write_index format, no pickle)."""
        return faiss.serialize_index(self.index).tobytes()

    def metadata(self) -> dict[str, Any]:
        """What `from_bytes` needs besides the bytes: factory, item hash, sizes and config."""
        return {"factory": self.factory, "items_sha256": self.sha256, "n_items": self.n_items,
                "stored_dim": self.stored_dim, "config": asdict(self.config)}

    @classmethod
    def from_bytes(
        cls, data: bytes, metadata: dict[str, Any], item_embeddings: np.ndarray, item_bias: np.ndarray
    ) -> "CandidateIndex":
        """Load an index saved with `to_bytes`/`metadata` beside the model whose items are
        item_embeddings (n_items, d) and item_bias (n_items,).

        Raises IndexMismatchError when the index was built from other item vectors (another
        model, or a retrained one) or its file does not hold what its metadata says.
        """
        try:
            config = IndexConfig(**metadata.get("config", {}))
        except TypeError as error:  # a field this version does not know
            raise IndexMismatchError(f"the candidate index's config is not one this version reads: {error}") from error
        expected = items_sha256(stored_vectors(item_embeddings, item_bias, config.searches_l2(str(metadata.get("factory")))))
        if metadata.get("items_sha256") != expected:
            raise IndexMismatchError(
                f"the candidate index ({metadata.get('factory')!r}, {metadata.get('n_items')} items) was built "
                f"from other item vectors than this model's {len(item_bias)} items (sha256 "
                f"{str(metadata.get('items_sha256'))[:12]}... vs {expected[:12]}...); rebuild it with "
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
        return cls(index, metadata["factory"], expected, config)

    # -- internals ---------------------------------------------------------------------------
    def _flat_search(self, vectors: np.ndarray, n: int) -> np.ndarray:
        """A flat index's exact top-n as a torch matrix product and topk over its stored vectors,
        in query blocks of at most FLAT_BLOCK_FLOATS scores: on 2 cores faiss's own flat search
        took 2.4x as long at 100k items (9.2 s against 3.9 s for 512 queries, k = 64, one probe)."""
        stored = torch.from_numpy(faiss.rev_swig_ptr(self.index.get_xb(), self.n_items * self.stored_dim)
                                  .reshape(self.n_items, self.stored_dim))
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
