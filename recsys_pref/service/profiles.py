"""The service's operations over the engine (the serving pipeline), onboarding and the store.

Every operation checks its input first and writes last, in one transaction, so a refused
request leaves the store unchanged. Writes are optimistic (store.StaleWrite): a concurrent
update of the same row makes the operation re-read and recompute, `write_retries` times, then
answer 409. Users are the model's external ids; the store keys them by their text.

Where a user's state comes from, first match wins:
    a stored profile (onboarding, interactions, mute/boost)  -> its stored state
    a user of the model's training data, not deleted         -> folded in from that data
    otherwise                                                 -> 404
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Hashable, Sequence, TypeVar

import numpy as np
import polars as pl

from recsys_pref.data.dataset import UnknownIdError
from recsys_pref.explain.control import Control, resolve
from recsys_pref.explain.summary import persona_mix
from recsys_pref.onboarding.session import Onboarder, OnboardingConfig, OnboardingError, OnboardingState, build_onboarder
from recsys_pref.onboarding.questions import QuestionConfig
from recsys_pref.onboarding.tree import TREE_FILE, InterviewTree
from recsys_pref.safeguards.config import SafeguardsConfig
from recsys_pref.service.engine import Engine, PersonaEngine
from recsys_pref.service.errors import ServiceError, conflict, invalid, not_found
from recsys_pref.service.settings import ServiceConfig
from recsys_pref.service.store import Profile, ProfileStore, Session, StaleWrite

MAX_CONTROL_WEIGHT = 4.0  # mute/boost weights run from 0 (mute) to this (a strong boost)
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: what int() takes and int64 holds
EXPLANATION_COLUMNS = ("persona", "persona_label", "persona_weight", "score_share", "because_you_liked")
SAFEGUARDS = ("off", "all")
KNOWN_STATE_CACHE = 65536  # model users whose folded-in state is kept in memory
T = TypeVar("T")


@dataclass(frozen=True)
class StoredUser:
    """A recommendation request for a user the service knows (stored or of the model)."""

    user: Any


@dataclass(frozen=True)
class AnonymousHistory:
    """A recommendation request for a history given in the request (external item ids)."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class Resolved:
    """A user's state (D,), the items folded in beyond the model's data, control, and whether it
    is stored (else: from the model's training data)."""

    state: np.ndarray
    items: list[Any]
    control: dict[str, Any]
    stored: Profile | None


def control_from_json(stored: dict[str, Any]) -> Control | None:
    """The Control a profile stores as {"personas": [[target, weight]...], "bases": [...]}."""
    if not stored:
        return None
    return Control({target: weight for target, weight in stored.get("personas", [])},
                   {target: weight for target, weight in stored.get("bases", [])})


class ProfileService:
    """The routes' logic: engine (persona pipeline or the ALS reference), store, onboarder."""

    def __init__(self, engine: Engine, store: ProfileStore, config: ServiceConfig) -> None:
        self.engine, self.store, self.config = engine, store, config
        self.pipeline = engine.pipeline
        self.user_dtype = pl.Series(self.pipeline.user_ids.external[:1].tolist()).dtype
        self.item_dtype = pl.Series(self.pipeline.item_ids.external[:1].tolist()).dtype
        self.safeguards = {"off": None, "all": SafeguardsConfig.preset("all")}
        self.onboarder: Onboarder | None = None
        if isinstance(engine, PersonaEngine):
            onboarding = OnboardingConfig(QuestionConfig(question_type=config.question_type),
                                          max_questions=config.questions)
            self.onboarder = build_onboarder(self.pipeline.model, self.pipeline.histories, self.pipeline.item_ids,
                                             onboarding, self.pipeline.items, tree=self._interview_tree())
        self._known_state: Callable[[Any], np.ndarray] = lru_cache(maxsize=KNOWN_STATE_CACHE)(
            lambda user: self.engine.fold_in([user], [[]])[0])

    def _interview_tree(self) -> InterviewTree | None:
        """The learned interview tree saved beside the model (`recsys-pref onboard` grows it once;
        TreeError if it was grown for another model), for choice questions; None: there is none,
        or the service asks pairs, and onboarding uses the information criterion alone."""
        path = self.config.model_dir / TREE_FILE
        if self.config.question_type != "choice" or not path.exists():
            return None
        return InterviewTree.load(path, self.pipeline.model)

    # -- ids -------------------------------------------------------------------------------
    def parse_user(self, value: Any, field: str) -> Any:
        """A user id of the model's type (path parameters arrive as text)."""
        return self._parse_id(value, self.user_dtype, field, "user")

    def parse_item(self, value: Any, field: str) -> Any:
        """A known item id of the model's type; 422 naming `field` otherwise."""
        item = self._parse_id(value, self.item_dtype, field, "item")
        if item not in self.pipeline.item_ids:
            raise invalid(f"{field}: unknown item {value!r}", field)
        return item

    def parse_items(self, values: Sequence[Any], field: str) -> list[Any]:
        """Known, distinct item ids; 422 naming the first bad one (field[i])."""
        if len(values) > self.config.max_items:
            raise invalid(f"{field}: at most {self.config.max_items} items per request, got {len(values)}", field)
        items = [self.parse_item(value, f"{field}[{index}]") for index, value in enumerate(values)]
        seen: dict[Any, int] = {}
        for index, item in enumerate(items):
            if item in seen:
                raise invalid(f"{field}[{index}]: item {item!r} repeats {field}[{seen[item]}]", f"{field}[{index}]")
            seen[item] = index
        return items

    @staticmethod
    def _parse_id(value: Any, dtype: pl.DataType, field: str, kind: str) -> Any:
        if dtype.is_integer():
            if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value.strip()):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise invalid(f"{field}: {kind} ids of this model are whole numbers, got {value!r}", field)
            return value
        if not isinstance(value, str) or not value:
            raise invalid(f"{field}: {kind} ids of this model are non-empty text, got {value!r}", field)
        return value

    def _item_from_text(self, text: str) -> Any:
        return int(text) if self.item_dtype.is_integer() else text

    def _knows(self, user: Any) -> bool:
        return user in self.pipeline.user_ids

    # -- users' states ---------------------------------------------------------------------
    def resolve(self, users: Sequence[Any]) -> dict[Any, Resolved | ServiceError]:
        """Each distinct user's state and items (see the module docstring), in two queries."""
        keys = {user: str(user) for user in users}
        stored = self.store.get_profiles(list(keys.values()))
        forgotten = self.store.forgotten_among([key for user, key in keys.items()
                                                if key not in stored and self._knows(user)])
        result: dict[Any, Resolved | ServiceError] = {}
        for user, key in keys.items():
            if key in stored:
                profile = stored[key]
                result[user] = Resolved(profile.state, [self._item_from_text(item) for item in profile.items],
                                        profile.control, profile)
            elif self._knows(user) and key not in forgotten:
                result[user] = Resolved(self._known_state(user), [], {}, None)
            else:
                result[user] = not_found(f"no user {user!r}: no stored profile, and not a user of the model")
        return result

    def _resolve_one(self, user: Any) -> Resolved:
        found = self.resolve([user])[user]
        if isinstance(found, ServiceError):
            raise found
        return found

    # -- recommendations -------------------------------------------------------------------
    def recommendation_key(self, kind: str, k: Any, safeguards: str, explain: bool) -> tuple[str, int, str, bool]:
        """The batching key of a recommendation request, after checking k and safeguards."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise invalid(f"query.k: k must be a whole number from 1 to {self.config.max_k}, got {k!r}", "query.k")
        if safeguards not in SAFEGUARDS:
            raise invalid(f"query.safeguards: one of {', '.join(SAFEGUARDS)}, got {safeguards!r}", "query.safeguards")
        if safeguards != "off" and self.onboarder is None:
            raise ServiceError(501, f"safeguards are not available with the {self.engine.kind} engine")
        return kind, k, safeguards, explain

    def recommend_batch(self, key: Hashable, requests: Sequence[StoredUser | AnonymousHistory]
                        ) -> list[list[dict[str, Any]] | BaseException]:
        """One engine call per control setting for a batch of same-key requests (MicroBatcher's
        `run`): rows per request, or the error of that request alone."""
        kind, k, safeguards, explain = key  # type: ignore[misc]
        if kind == "history":
            users = self._anonymous_ids(len(requests))
            items = [list(request.items) for request in requests]  # type: ignore[union-attr]
            states = self.engine.fold_in(users, items)
            resolved: dict[Any, Resolved | ServiceError] = {
                user: Resolved(state, user_items, {}, None) for user, state, user_items in zip(users, states, items)}
        else:
            users = [request.user for request in requests]  # type: ignore[union-attr]
            resolved = self.resolve(users)
        rows = self._rank(resolved, k, self.safeguards[safeguards])
        results: list[list[dict[str, Any]] | BaseException] = []
        for user in users:
            found = rows.get(user, resolved[user])
            if isinstance(found, BaseException):
                results.append(found)
                continue
            results.append([self._row(row, explain, anonymous=kind == "history") for row in found])
        return results

    def _rank(self, resolved: dict[Any, Resolved | ServiceError], k: int, safeguards: SafeguardsConfig | None
              ) -> dict[Any, list[dict[str, Any]] | ServiceError]:
        """Rows per user, one engine call per distinct control setting; a group whose call fails
        gets that error for its users only."""
        groups: dict[str, list[Any]] = {}
        for user, found in resolved.items():
            if isinstance(found, Resolved):
                groups.setdefault(repr(found.control), []).append(user)
        rows: dict[Any, list[dict[str, Any]] | ServiceError] = {}
        for members in groups.values():
            first = resolved[members[0]]
            assert isinstance(first, Resolved)
            states = np.stack([resolved[user].state for user in members])  # type: ignore[union-attr]
            try:
                frame = self.engine.recommend(members, states, [resolved[user].items for user in members],  # type: ignore[union-attr]
                                              k, control_from_json(first.control), safeguards)
            except ValueError as error:  # this group's stored control no longer applies: its users alone fail
                for user in members:
                    rows[user] = conflict(f"user {user!r}: the stored mute/boost no longer applies ({error}); "
                                          "reset it with PATCH /users/{user_id}/profile")
                continue
            for user in members:
                rows[user] = []
            for row in frame.to_dicts():
                rows[row["user_id"]].append(row)
        return rows

    @staticmethod
    def _row(row: dict[str, Any], explain: bool, anonymous: bool) -> dict[str, Any]:
        kept = {name: value for name, value in row.items() if explain or name not in EXPLANATION_COLUMNS}
        if anonymous:
            kept["user_id"] = None
        return kept

    def _anonymous_ids(self, n: int) -> list[Any]:
        """n user ids the model does not know, standing for the anonymous histories of a batch."""
        if self.user_dtype.is_integer():
            ids, candidate = [], -1
            while len(ids) < n:
                if candidate not in self.pipeline.user_ids:
                    ids.append(candidate)
                candidate -= 1
            return ids
        return [f"\x00anonymous-{index}" for index in range(n)]

    # -- the scoring seam ------------------------------------------------------------------
    def score(self, candidates: list[tuple[Any, Any]], history: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
        """Score and explain (user, item) candidate rows (pipeline.explain_many). A user's
        history: the model's data, their stored items and the request's `history` rows."""
        self._require_personas("/score")
        if not candidates:
            raise invalid("body.candidates: at least one row is needed", "body.candidates")
        if len(candidates) > self.config.max_items or len(history) > self.config.max_items:
            raise invalid(f"body: at most {self.config.max_items} candidate and history rows", "body")
        users = [self.parse_user(user, f"body.candidates[{row}].user_id") for row, (user, _) in enumerate(candidates)]
        items = [self.parse_item(item, f"body.candidates[{row}].item_id") for row, (_, item) in enumerate(candidates)]
        pairs: dict[tuple[Any, Any], int] = {}
        for row, pair in enumerate(zip(users, items)):
            if pair in pairs:
                raise invalid(f"body.candidates[{row}]: repeats row {pairs[pair]}", f"body.candidates[{row}]")
            pairs[pair] = row
        extra = [(self.parse_user(user, f"body.history[{row}].user_id"), self.parse_item(item, f"body.history[{row}].item_id"))
                 for row, (user, item) in enumerate(history)]
        given = {user for user, _ in extra}
        deleted = self.store.forgotten_among([str(user) for user in given if self._knows(user)])
        if deleted:
            raise not_found(f"no user {sorted(deleted)[0]!r}: deleted", "body.history")
        resolved = self.resolve([user for user in dict.fromkeys(users) if user not in given])
        for user, found in resolved.items():
            if isinstance(found, ServiceError):
                raise found
            if not found.items and not self._knows(user):
                raise conflict(f"user {user!r} has a profile from onboarding alone; /score folds users in from "
                               "their items, so send their history in body.history")
            extra += [(user, item) for item in found.items]
        frame = pl.DataFrame({"user_id": pl.Series(users, dtype=self.user_dtype),
                              "item_id": pl.Series(items, dtype=self.item_dtype)})
        history_frame = pl.DataFrame({"user_id": pl.Series([user for user, _ in extra], dtype=self.user_dtype),
                                      "item_id": pl.Series([item for _, item in extra], dtype=self.item_dtype)})
        return self.pipeline.explain_many(frame, history=history_frame if extra else None).to_dicts()

    # -- writes ----------------------------------------------------------------------------
    def _retrying(self, write: Callable[[], T]) -> T:
        """`write` (which re-reads what it updates), retried on StaleWrite; then 409."""
        for _ in range(self.config.write_retries):
            try:
                return write()
            except StaleWrite:
                time.sleep(0.001)
        raise conflict("too many concurrent updates of the same record; retry")

    def add_interactions(self, user_value: Any, item_values: Sequence[Any]) -> dict[str, Any]:
        """Append positive interactions to a user (created when new) and fold the state in
        again from all of them, in one transaction."""
        user = self.parse_user(user_value, "path.user_id")
        items = self.parse_items(item_values, "body.items")
        if not items:
            raise invalid("body.items: at least one item is needed", "body.items")
        key = str(user)
        if self._knows(user) and self.store.forgotten_among([key]):
            raise conflict(f"user {user!r} was deleted; the model still holds their training data until it is "
                           "refitted without them")

        def write() -> dict[str, Any]:
            profile = self.store.get_profile(key)
            before = [self._item_from_text(item) for item in profile.items] if profile else []
            combined = list(dict.fromkeys(before + items))
            state = self.engine.fold_in([user], [combined])[0]
            version = self.store.put_profile(key, state, map(str, combined), profile.control if profile else None,
                                             profile.version if profile else None, [str(item) for item in items])
            return {"user_id": user, "items": len(combined), "added": len(set(combined)) - len(before),
                    "state_bytes": int(state.nbytes), "version": version}

        return self._retrying(write)

    def set_control(self, user_value: Any, personas: dict[str, float], bases: dict[str, float]) -> dict[str, Any]:
        """Mute (0) or boost (> 1) personas and bases by id or label; 1 resets one. Persisted."""
        self._require_personas("mute and boost")
        user = self.parse_user(user_value, "path.user_id")
        updates = {"personas": self._control_targets(personas, "body.personas"),
                   "bases": self._control_targets(bases, "body.bases")}
        if not updates["personas"] and not updates["bases"]:
            raise invalid("body: give personas or bases to mute or boost", "body")

        def write() -> dict[str, Any]:
            found = self._resolve_one(user)
            merged = {kind: dict(map(tuple, found.control.get(kind, []))) for kind in ("personas", "bases")}
            for kind, targets in updates.items():
                for target, weight in targets.items():
                    self._check_target(found.state, kind, target, weight)
                    # a persona label is stored as the ids it names now: labels move with fold-in
                    for key in self._persona_ids(found.state, target) if kind == "personas" else [target]:
                        merged[kind].pop(key, None)
                        if weight != 1.0:
                            merged[kind][key] = weight
            self._check_control(found.state, merged)
            control = {kind: sorted(values.items(), key=repr) for kind, values in merged.items() if values}
            profile = found.stored
            self.store.put_profile(str(user), found.state, map(str, found.items), control,
                                   profile.version if profile else None)
            return self.profile(user)

        return self._retrying(write)

    def _control_targets(self, values: dict[str, float], field: str) -> dict[int | str, float]:
        targets: dict[int | str, float] = {}
        for name, weight in values.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                    0.0 <= weight <= MAX_CONTROL_WEIGHT):
                raise invalid(f"{field}.{name}: a weight from 0 (mute) to {MAX_CONTROL_WEIGHT} (boost), 1 resets; "
                              f"got {weight!r}", f"{field}.{name}")
            targets[int(name) if WHOLE_NUMBER.fullmatch(name) and not name.startswith("-") else name] = float(weight)
        return targets

    def _check_target(self, state: np.ndarray, kind: str, target: int | str, weight: float) -> None:
        """422 unless `target` names one of this user's personas (or a base)."""
        control = Control(personas={target: weight}) if kind == "personas" else Control(bases={target: weight})
        try:
            self.pipeline.explainer.control_weights(self.engine.states(state[None]), control)  # type: ignore[attr-defined]
        except ValueError as error:
            raise invalid(f"body.{kind}.{target}: {error}", f"body.{kind}.{target}") from None

    def _persona_ids(self, state: np.ndarray, target: int | str) -> list[int]:
        """The ids of this user's personas that `target` (an id or a label) names."""
        if isinstance(target, int):
            return [target]
        labels = [persona.label for persona in self.pipeline.explainer.describe(self.engine.states(state[None]))[0]]  # type: ignore[attr-defined]
        return resolve(target, labels, "persona")

    def _check_control(self, state: np.ndarray, merged: dict[str, dict[Any, float]]) -> None:
        """422 unless the user's whole control leaves at least one persona unmuted."""
        control = Control(personas=merged["personas"], bases=merged["bases"])
        try:
            weights = self.pipeline.explainer.control_weights(self.engine.states(state[None]), control)  # type: ignore[attr-defined]
            if weights is not None:
                weights.resolved(1, self.engine.n_personas, self.engine.n_bases)  # type: ignore[attr-defined]
        except ValueError as error:
            raise invalid(f"body: {error}", "body") from None

    def forget(self, user_value: Any) -> dict[str, Any]:
        """Delete a user's profile, raw interactions and sessions; a user of the model's own
        data is also marked deleted, so it is no longer served (until a refit without them)."""
        user = self.parse_user(user_value, "path.user_id")
        self._resolve_one(user)  # 404 for a user the service does not know
        self.store.forget(str(user), tombstone=self._knows(user))
        return {"user_id": user, "deleted": True}

    # -- profiles --------------------------------------------------------------------------
    def profile(self, user_value: Any) -> dict[str, Any]:
        """The summary sentence, personas (label, weight, control, bases, top items), the
        control, the items folded in and the state's size in bytes."""
        self._require_personas("profiles")
        user = self.parse_user(user_value, "path.user_id")
        found = self._resolve_one(user)
        state = self.engine.states(found.state[None])  # type: ignore[attr-defined]
        weights = persona_mix(self.pipeline.model.scorer.terms(state))[0]
        personas = self.pipeline.personas(user, states=state).to_dicts()
        control = {kind: {str(target): weight for target, weight in found.control.get(kind, [])}
                   for kind in ("personas", "bases")}
        for persona in personas:
            persona["weight"] = float(weights[persona["persona"]])
            persona["control"] = control["personas"].get(str(persona["persona"]), 1.0)
        return {
            "user_id": user,
            "source": "stored" if found.stored else "model",
            "summary": self.pipeline.explainer.summaries(state)[0],
            "personas": personas,
            "control": control,
            "items": found.items,
            "state_bytes": int(found.state.nbytes),
            "version": found.stored.version if found.stored else 0,
        }

    def _require_personas(self, what: str) -> None:
        if self.onboarder is None:
            raise ServiceError(501, f"{what} need the persona engine; this server runs {self.engine.kind}")

    # -- onboarding ------------------------------------------------------------------------
    def _question(self, session_id: str, state: OnboardingState) -> dict[str, Any]:
        assert self.onboarder is not None
        done = state.finished
        payload: dict[str, Any] = {"session_id": session_id, "done": done, "answered": len(state.answers),
                                   "max_questions": state.max_questions, "question": None}
        if not done:
            indices = self.onboarder.next_question_indices(state)
            genres = self.onboarder.item_genres
            payload["question"] = {
                "number": len(state.questions),
                "type": state.question_type,
                "items": [{"item_id": item_id, "title": title, "genres": genres[index] if genres else []}
                          for index, item_id, title in zip(indices, self.onboarder.next_question(state),
                                                           self.onboarder.titles(np.array(indices)))],
                "other_answers": ["none" if state.question_type == "choice" else "tie", "unknown"],
            }
        return payload

    def start_onboarding(self, seed: int | None = None) -> dict[str, Any]:
        """A stored session at the population prior, with its first question."""
        self._require_personas("onboarding")
        assert self.onboarder is not None
        state = self.onboarder.start(seed=secrets.randbelow(2**31) if seed is None else seed)
        session_id = secrets.token_urlsafe(16)
        payload = self._question(session_id, state)  # records the first question in the state
        self.store.create_session(session_id, state.to_json(), self.config.session_ttl_s)
        return payload

    def _open_session(self, session_id: str) -> tuple[Session, OnboardingState]:
        """A session that may still change: 404 unknown, 410 expired, 409 finished."""
        self._require_personas("onboarding")
        session = self.store.get_session(session_id)
        if session is None:
            raise not_found(f"no onboarding session {session_id!r}", "path.session_id")
        if session.expires_at < time.time():
            raise ServiceError(410, f"onboarding session {session_id!r} has expired; start a new one", "path.session_id")
        if session.user_id is not None:
            raise conflict(f"onboarding session {session_id!r} is finished (user {session.user_id!r})",
                           "path.session_id")
        return session, OnboardingState.from_json(session.state_json)

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's pending question (or done), without changing it."""
        _, state = self._open_session(session_id)
        return self._question(session_id, state)

    def answer(self, session_id: str, answer: Any) -> dict[str, Any]:
        """Record the answer to the pending question; the next question, or done."""
        self._require_personas("onboarding")

        def write() -> dict[str, Any]:
            session, state = self._open_session(session_id)
            if state.finished:
                raise conflict(f"onboarding session {session_id!r} has answered all its questions; finish it",
                               "path.session_id")
            choice = answer if isinstance(answer, str) and answer in ("none", "tie", "unknown") else \
                self.parse_item(answer, "body.answer")
            try:
                self.onboarder.answer(state, choice)  # type: ignore[union-attr]
            except (OnboardingError, UnknownIdError) as error:
                raise invalid(f"body.answer: {error}", "body.answer") from None
            payload = self._question(session_id, state)
            self.store.update_session(session, state.to_json())
            return payload

        return self._retrying(write)

    def finish(self, session_id: str, user_value: Any) -> dict[str, Any]:
        """Store the session's state as a new user's profile (the posterior mean; the items the
        user chose are kept as their items), and close the session."""
        user = self.parse_user(user_value, "body.user_id")
        if self._knows(user):
            raise conflict(f"user {user!r} is a user of the model; onboard a new id", "body.user_id")

        def write() -> dict[str, Any]:
            session, state = self._open_session(session_id)
            if self.store.get_profile(str(user)) is not None:
                raise conflict(f"user {user!r} already has a profile; DELETE it first", "body.user_id")
            assert self.onboarder is not None
            vector = self.onboarder.persona_states([state]).vectors()[0]
            chosen = list(dict.fromkeys(answer for answer in state.answers if isinstance(answer, int)))
            items = self.pipeline.item_ids.to_external(np.array(chosen, np.int64)).tolist() if chosen else []
            self.store.finish_session(session, str(user), vector, map(str, items))
            return {"user_id": user, "answered": len(state.answers), "items": items, "state_bytes": int(vector.nbytes)}

        return self._retrying(write)

    # -- another model ---------------------------------------------------------------------
    def migrate(self, store: ProfileStore) -> dict[str, int]:
        """Refold every stored profile for this engine's model from its items (items the model
        does not know are dropped; mute/boost settings are dropped, as personas and bases differ
        between models) and delete every onboarding session."""
        counts = {"profiles": 0, "dropped_items": 0, "sessions": store.drop_sessions()}
        after = None
        while ids := store.profile_ids(after):
            for key, stored_items, version in store.items_of(ids):
                user = self.parse_user(key, "store.user_id")
                items = [self._item_from_text(item) for item in stored_items]
                kept = [item for item in items if item in self.pipeline.item_ids]
                counts["dropped_items"] += len(items) - len(kept)
                state = self.engine.fold_in([user], [kept])[0]
                store.put_profile(key, state, map(str, kept), None, version)
                counts["profiles"] += 1
            after = ids[-1]
        return counts

