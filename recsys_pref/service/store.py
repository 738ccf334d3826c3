"""The profile store: users' states, their control settings and onboarding sessions, in SQL.

Any SQLAlchemy URL works (PostgreSQL for a fleet); the default is a SQLite file next to the
model in WAL mode with synchronous=FULL, so an acknowledged write survives a killed process
and a power cut. Every write is one transaction, and every update is optimistic: it names the
`version` it read and fails with `StaleWrite` when another writer got there first (the caller
re-reads and retries), so no lock is held while a state is computed. Ids are bound parameters,
never interpolated into SQL; nothing is pickled (states are raw float32 bytes, the rest JSON).

Tables:
    service_meta  key -> value: the model hash the states were written for, the schema version
    profiles      user_id, state (M*(K+1) float32, little-endian), control (JSON or NULL),
                  items (JSON list of the external item ids the state was folded in from: the
                  set fold-in needs, without order, ratings or times), version, updated_at
    interactions  raw appended rows (user_id, item_id, created_at), written only when the
                  store keeps raw history (`keep_history`)
    sessions      onboarding sessions: state (the OnboardingState's JSON), the user it was
                  finished for, version, created_at, expires_at
    forgotten     model users deleted through the service, no longer served
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import (
    Column, Float, Integer, LargeBinary, MetaData, String, Table, Text, bindparam, create_engine, delete, event, func,
    insert, select, update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

SCHEMA_VERSION = "1"
#: service_meta's model_hash while a migration runs: this prefix, then the new model's hash
MIGRATING = "migrating to "
STATE_DTYPE = np.dtype("<f4")  # a state's numbers on disk: little-endian float32
IN_CLAUSE_IDS = 10_000  # ids per IN (...) query: under SQLite's bound-parameter limit

metadata = MetaData()
service_meta = Table("service_meta", metadata, Column("key", String(64), primary_key=True),
                     Column("value", Text, nullable=False))
profiles = Table(
    "profiles", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("state", LargeBinary, nullable=False),
    Column("control", Text, nullable=True),
    Column("items", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
interactions = Table(
    "interactions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("item_id", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
sessions = Table(
    "sessions", metadata,
    Column("session_id", String(64), primary_key=True),
    Column("state", Text, nullable=False),
    Column("user_id", String(200), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
forgotten = Table("forgotten", metadata, Column("user_id", String(200), primary_key=True),
                  Column("at", Float, nullable=False))


class StoreError(ValueError):
    """The store cannot be used as asked (another model's store, a newer schema)."""


class StaleWrite(RuntimeError):
    """An optimistic update lost: the row changed (or vanished) since it was read."""


@dataclass(frozen=True)
class Profile:
    """A stored user: state (D,) float32 (M*(K+1) numbers), control as stored (a JSON object:
    {"personas": [[target, weight], ...], "bases": [...]}, empty when none), items the state was folded in from (external ids,
    as strings), version (bumped by every write)."""

    user_id: str
    state: np.ndarray
    control: dict[str, Any]
    items: list[str]
    version: int


@dataclass(frozen=True)
class Session:
    """A stored onboarding session: state_json is the OnboardingState's JSON; user_id is set
    once the session was finished for that user."""

    session_id: str
    state_json: str
    user_id: str | None
    version: int
    expires_at: float


def default_store_url(model_dir: Path) -> str:
    """sqlite:///<model_dir>.profiles.sqlite: the default store, beside the model directory
    (not inside it: the artifact's files are hashed and swapped whole on every save)."""
    path = Path(model_dir).resolve()
    return f"sqlite:///{path.parent / (path.name + '.profiles.sqlite')}"


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL journal, synchronous=FULL (durable on power loss too), a 30 s busy timeout."""

    @event.listens_for(engine, "connect")
    def _on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def encode_state(vector: np.ndarray) -> bytes:
    """A state vector (D,) as little-endian float32 bytes (4 D bytes)."""
    return np.ascontiguousarray(vector, dtype=STATE_DTYPE).tobytes()


def decode_state(blob: bytes, size: int) -> np.ndarray:
    """The (size,) float32 state stored as `blob`; StoreError if its length or values are wrong."""
    if len(blob) != size * STATE_DTYPE.itemsize:
        raise StoreError(f"a stored state has {len(blob)} bytes, expected {size * STATE_DTYPE.itemsize}")
    vector = np.frombuffer(blob, dtype=STATE_DTYPE).astype(np.float32)
    if not np.isfinite(vector).all():
        raise StoreError("a stored state holds NaN or infinite values")
    return vector


class ProfileStore:
    """States and sessions of one model's users, in the database at `url`.

    state_size: numbers per state (M*(K+1)); keep_history: also append raw interaction rows.
    `open` checks the model hash (see `check_model`)."""

    def __init__(self, url: str, state_size: int, keep_history: bool = False) -> None:
        self.url, self.state_size, self.keep_history = url, state_size, keep_history
        is_sqlite = url.startswith("sqlite")
        self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False} if is_sqlite else {})
        if is_sqlite:
            _sqlite_pragmas(self.engine)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- the model the states belong to ----------------------------------------------------
    def model_hash(self) -> str | None:
        """The hash of the model this store's states were written for (None: a new store)."""
        with self.engine.connect() as connection:
            return connection.execute(select(service_meta.c.value).where(service_meta.c.key == "model_hash")).scalar()

    def check_model(self, model_hash: str, migrate: Callable[["ProfileStore"], None] | None = None) -> None:
        """Claim a new store for `model_hash`; refuse (StoreError) a store written for another
        model unless `migrate` is given, which is then run (it rewrites every state for this
        model) before the store is marked as this model's.

        While a migration runs the store is marked as migrating to `model_hash`, so a migration
        that dies midway (its states half old, half new) is refused by every model, the old one
        included, until a migration is run to completion again."""
        with self.engine.begin() as connection:
            schema = connection.execute(select(service_meta.c.value).where(service_meta.c.key == "schema")).scalar()
            if schema is not None and schema != SCHEMA_VERSION:
                raise StoreError(f"store {self.url} has schema {schema}; this version of recsys_pref reads {SCHEMA_VERSION}")
        stored = self.model_hash()
        if stored is not None and stored != model_hash:
            if migrate is None:
                if stored.startswith(MIGRATING):
                    raise StoreError(
                        f"store {self.url} holds a migration that did not finish (to model "
                        f"{stored.removeprefix(MIGRATING)[:12]}…): pass --migrate to refold its profiles for this model")
                raise StoreError(
                    f"store {self.url} holds states of another model (hash {stored[:12]}…, this model "
                    f"{model_hash[:12]}…): pass --migrate to refold its profiles for this model, or use another store")
            self._set_meta(model_hash=MIGRATING + model_hash)
            migrate(self)
        self._set_meta(model_hash=model_hash, schema=SCHEMA_VERSION)

    def _set_meta(self, **values: str) -> None:
        """Write service_meta keys in one transaction."""
        with self.engine.begin() as connection:
            for key, value in values.items():
                connection.execute(delete(service_meta).where(service_meta.c.key == key))
                connection.execute(insert(service_meta).values(key=key, value=value))

    # -- profiles --------------------------------------------------------------------------
    def _profile(self, row: Any) -> Profile:
        control = json.loads(row.control) if row.control else {}
        return Profile(row.user_id, decode_state(row.state, self.state_size), control, json.loads(row.items),
                       row.version)

    def get_profile(self, user_id: str) -> Profile | None:
        """The stored profile of `user_id`, or None."""
        return self.get_profiles([user_id]).get(user_id)

    def get_profiles(self, user_ids: Sequence[str]) -> dict[str, Profile]:
        """Stored profiles by user id (users without one are absent), in one query."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(profiles).where(profiles.c.user_id.in_(list(set(user_ids))))).all()
        return {row.user_id: self._profile(row) for row in rows}

    def items_of(self, user_ids: Sequence[str]) -> list[tuple[str, list[str], int]]:
        """(user_id, items, version) of stored profiles, without reading their states (which
        may be another model's, of another size, during a migration)."""
        query = select(profiles.c.user_id, profiles.c["items"], profiles.c.version).where(profiles.c.user_id.in_(list(user_ids)))
        with self.engine.connect() as connection:
            return [(row.user_id, json.loads(row.items), row.version) for row in connection.execute(query)]

    def profile_ids(self, after: str | None = None, limit: int = 1000) -> list[str]:
        """Stored user ids in order, `limit` after `after` (paging through a large store)."""
        query = select(profiles.c.user_id).order_by(profiles.c.user_id).limit(limit)
        if after is not None:
            query = query.where(profiles.c.user_id > after)
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def put_profile(self, user_id: str, state: np.ndarray, items: Iterable[str], control: dict[str, Any] | None,
                    expected_version: int | None, appended: Sequence[str] = ()) -> int:
        """Write `user_id`'s profile in one transaction and return its new version.

        expected_version: the version read (None: the user must have no profile yet).
        appended: raw interaction rows to append with it (kept only with keep_history).
        StaleWrite when the row changed since it was read (or appeared, for None)."""
        values = {"state": encode_state(state), "items": json.dumps(sorted(set(items))),
                  "control": json.dumps(control) if control else None, "updated_at": time.time()}
        with self.engine.begin() as connection:
            if expected_version is None:
                try:  # a failed insert rolls the whole transaction back
                    connection.execute(insert(profiles).values(user_id=user_id, version=1, **values))
                except IntegrityError:
                    raise StaleWrite(f"user {user_id!r} got a profile meanwhile") from None
                version = 1
            else:
                version = expected_version + 1
                result = connection.execute(
                    update(profiles).where(profiles.c.user_id == user_id, profiles.c.version == expected_version)
                    .values(version=version, **values))
                if result.rowcount != 1:
                    raise StaleWrite(f"user {user_id!r}'s profile changed since it was read")
            if self.keep_history and appended:
                now = time.time()
                connection.execute(insert(interactions), [{"user_id": user_id, "item_id": item, "created_at": now}
                                                          for item in appended])
        return version

    def put_states(self, states: Sequence[tuple[str, np.ndarray, Iterable[str]]]) -> int:
        """Write many users' (user_id, state (D,), items) in ONE transaction (a batch fold-in's
        chunk: all of it is stored or none): new users get version 1, stored users keep their
        control and get version + 1 (a concurrent optimistic writer then sees StaleWrite).
        Rewriting the same states is harmless, so a rerun of a chunk may repeat it. Returns rows."""
        now = time.time()
        rows = {user_id: {"state": encode_state(state), "items": json.dumps(sorted(set(items))), "updated_at": now}
                for user_id, state, items in states}
        with self.engine.begin() as connection:
            stored: set[str] = set()
            keys = list(rows)
            for start in range(0, len(keys), IN_CLAUSE_IDS):
                stored.update(connection.execute(select(profiles.c.user_id).where(
                    profiles.c.user_id.in_(keys[start : start + IN_CLAUSE_IDS]))).scalars())
            new = [{"user_id": key, "control": None, "version": 1} | row for key, row in rows.items() if key not in stored]
            if new:
                connection.execute(insert(profiles), new)
            if stored:
                connection.execute(
                    update(profiles).where(profiles.c.user_id == bindparam("key")).values(
                        state=bindparam("state"), items=bindparam("items"), updated_at=bindparam("updated_at"),
                        version=profiles.c.version + 1),
                    [{"key": key} | rows[key] for key in stored])
        return len(rows)

    def forget(self, user_id: str, tombstone: bool) -> bool:
        """Delete `user_id`'s profile, raw interactions and sessions in one transaction;
        tombstone: also remember the id as forgotten (a user of the model itself, who would
        otherwise still be served from training data). True if anything was deleted."""
        with self.engine.begin() as connection:
            deleted = sum(connection.execute(delete(table).where(table.c.user_id == user_id)).rowcount
                          for table in (profiles, interactions, sessions))
            if tombstone and not connection.execute(
                    select(forgotten.c.user_id).where(forgotten.c.user_id == user_id)).first():
                connection.execute(insert(forgotten).values(user_id=user_id, at=time.time()))
                deleted += 1
        return deleted > 0

    def forgotten_among(self, user_ids: Sequence[str]) -> set[str]:
        """Which of `user_ids` were deleted through the service (one query; none for none)."""
        if not user_ids:
            return set()
        with self.engine.connect() as connection:
            return set(connection.execute(select(forgotten.c.user_id).where(forgotten.c.user_id.in_(list(user_ids))))
                       .scalars())

    def history(self, user_id: str) -> list[str]:
        """The raw interaction rows kept for `user_id` (empty unless keep_history)."""
        with self.engine.connect() as connection:
            return list(connection.execute(select(interactions.c.item_id).where(interactions.c.user_id == user_id)
                                           .order_by(interactions.c.id)).scalars())

    # -- onboarding sessions ---------------------------------------------------------------
    def create_session(self, session_id: str, state_json: str, ttl_s: float) -> None:
        now = time.time()
        with self.engine.begin() as connection:
            connection.execute(insert(sessions).values(session_id=session_id, state=state_json, user_id=None,
                                                       version=1, created_at=now, expires_at=now + ttl_s))

    def get_session(self, session_id: str) -> Session | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(sessions).where(sessions.c.session_id == session_id)).first()
        return None if row is None else Session(row.session_id, row.state, row.user_id, row.version, row.expires_at)

    def update_session(self, session: Session, state_json: str) -> None:
        """Store a session's new state (one transaction); StaleWrite if it changed meanwhile."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(sessions).where(sessions.c.session_id == session.session_id, sessions.c.version == session.version)
                .values(state=state_json, version=session.version + 1))
            if result.rowcount != 1:
                raise StaleWrite(f"onboarding session {session.session_id} changed since it was read")

    def finish_session(self, session: Session, user_id: str, state: np.ndarray, items: Iterable[str]) -> None:
        """Mark `session` finished for `user_id` and create that user's profile, in one
        transaction; StaleWrite if the session changed or the user got a profile meanwhile."""
        values = {"state": encode_state(state), "items": json.dumps(sorted(set(items))), "control": None,
                  "updated_at": time.time()}
        with self.engine.begin() as connection:
            result = connection.execute(
                update(sessions).where(sessions.c.session_id == session.session_id, sessions.c.version == session.version,
                                       sessions.c.user_id.is_(None))
                .values(user_id=user_id, version=session.version + 1))
            if result.rowcount != 1:
                raise StaleWrite(f"onboarding session {session.session_id} changed since it was read")
            try:  # the session's update is rolled back with the failed insert
                connection.execute(insert(profiles).values(user_id=user_id, version=1, **values))
            except IntegrityError:
                raise StaleWrite(f"user {user_id!r} got a profile meanwhile") from None

    def drop_sessions(self) -> int:
        """Delete every onboarding session (a migration to another model); returns how many."""
        with self.engine.begin() as connection:
            return connection.execute(delete(sessions)).rowcount

    # -- size ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self.engine.connect() as connection:
            return {table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                    for table in (profiles, interactions, sessions, forgotten)}


def bytes_on_disk(connection: Connection, table: str) -> int | None:
    """Bytes of a SQLite table and its indexes on disk (pages, from the dbstat table), or None
    where dbstat is unavailable (another database, or SQLite built without it)."""
    try:
        return int(connection.exec_driver_sql(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = ? OR name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = ? AND type = 'index')", (table, table)).scalar())
    except Exception:  # noqa: BLE001 - any driver's "no such table: dbstat" means "not measurable here"
        return None
