"""The service's settings: the model, the store, limits and batching."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENGINES = ("persona", "als")


@dataclass(frozen=True)
class ServiceConfig:
    """model_dir: the artifact written by `recsys-pref fit` (PersonaPipeline.save).
    store_url: a SQLAlchemy URL (None: a SQLite file beside the model, store.default_store_url).
    migrate: refold a store written for another model instead of refusing it.
    keep_history: also keep raw interaction rows (profiles hold only the set of items their
    state was folded in from otherwise).
    engine: "persona" (the product) or "als" (implicit's ALS, the reference of `bench serve`).
    max_k: largest k a request may ask; max_items: items (or rows) one request may carry;
    max_body_bytes: request bodies above it get 413; session_ttl_s: an onboarding session
    expires this long after it started (seconds); questions, question_type: the interview.
    batch_workers, max_batch: recommendation batches run at once, and users per batch.
    write_retries: optimistic writes re-read and retried this often before a 409."""

    model_dir: Path
    store_url: str | None = None
    migrate: bool = False
    keep_history: bool = False
    engine: Literal["persona", "als"] = "persona"
    max_k: int = 100
    max_items: int = 1000
    max_body_bytes: int = 1 << 20
    session_ttl_s: float = 24 * 3600.0
    questions: int = 10
    question_type: Literal["choice", "pair"] = "choice"
    batch_workers: int = 2
    max_batch: int = 32
    write_retries: int = 8

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("max_k", "max_items", "max_body_bytes", "questions", "batch_workers", "max_batch",
                     "write_retries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.session_ttl_s <= 0:
            raise ValueError(f"session_ttl_s must be > 0, got {self.session_ttl_s}")
