"""Candidate retrieval: a FAISS index over the item vectors and certified exact top-K."""
from recsys_pref.retrieval.certified import (
    CertifiedConfig,
    RetrievalResult,
    certified_top_k,
)
from recsys_pref.retrieval.index import CandidateIndex, IndexConfig, IndexMismatchError
from recsys_pref.retrieval.serving import RetrievalConfig, Retriever

__all__ = [
    "CandidateIndex", "CertifiedConfig", "IndexConfig", "IndexMismatchError", "RetrievalConfig",
    "RetrievalResult", "Retriever", "certified_top_k",
]
