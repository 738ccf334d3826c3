"""The ASGI app: JSON routes over ProfileService, the page, /healthz and /metrics.

Requests pass, outermost first: metrics (time and count) -> limits (413 body size, 415 content
type) -> keys (401) -> the route. Bodies and queries are validated by their pydantic models;
a refusal is {"detail": message naming the field, "field": "body.answer"}: 422 for a value, 400
for malformed JSON, 404 for an unknown user or session, 409 for a conflict, 410 for an expired
session. Work that computes runs in threads; recommendations go through a MicroBatcher so
concurrent requests share one pipeline call. The OpenAPI page is /docs.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.service.auth import AuthMiddleware, KeyCheck
from recsys_pref.service.batching import MicroBatcher
from recsys_pref.service.engine import PersonaEngine, artifact_hash
from recsys_pref.service.errors import ServiceError
from recsys_pref.service.limits import RequestLimits
from recsys_pref.service.metrics import Metrics, MetricsMiddleware
from recsys_pref.service.page import add_page
from recsys_pref.service.profiles import AnonymousHistory, ProfileService, StoredUser
from recsys_pref.service.settings import ServiceConfig
from recsys_pref.service.store import ProfileStore, default_store_url

Id = StrictInt | StrictStr


class Body(BaseModel):
    """Request bodies refuse fields they do not define (a 422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


class AnswerBody(Body):
    answer: Id = Field(description='an item id shown by the pending question, "none" (choice), "tie" (pair) or "unknown"')


class FinishBody(Body):
    user_id: Id = Field(description="the new user's id (the model's id type)")


class HistoryBody(Body):
    items: list[Id] = Field(description="item ids the anonymous user liked")
    k: StrictInt = 10
    safeguards: StrictStr = "off"
    explain: bool = True


class Pair(Body):
    user_id: Id
    item_id: Id


class ScoreBody(Body):
    candidates: list[Pair] = Field(description="user_id, item_id rows from another retriever")
    history: list[Pair] = Field(default_factory=list, description="extra interactions, e.g. of users the model lacks")


class InteractionsBody(Body):
    items: list[Id] = Field(description="item ids the user interacted with positively")


class ControlBody(Body):
    personas: dict[str, float] = Field(default_factory=dict, description="persona id or label -> weight (0 mutes, 1 resets, up to 4 boosts)")
    bases: dict[str, float] = Field(default_factory=dict, description="base id or label -> factor (same range)")


def _field(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location)


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = error.errors()
    if any(item["type"] == "json_invalid" for item in errors):
        reason = errors[0].get("ctx", {}).get("error", "not JSON")
        return JSONResponse({"detail": f"malformed JSON body: {reason} at character {errors[0]['loc'][-1]}",
                             "field": "body"}, status_code=400)
    listed = [{"field": _field(item["loc"]), "message": item["msg"]} for item in errors]
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in listed)
    return JSONResponse({"detail": detail, "field": listed[0]["field"], "errors": listed}, status_code=422)


async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
    return JSONResponse(error.payload(), status_code=error.status)


def build_service(config: ServiceConfig) -> ProfileService:
    """Load the model, open (and check, or migrate) the store: the service the routes call."""
    pipeline = PersonaPipeline.load(config.model_dir)
    model_hash = artifact_hash(config.model_dir)
    if config.engine == "als":
        from recsys_pref.service.reference import AlsEngine

        engine: Any = AlsEngine(pipeline, model_hash)
    else:
        engine = PersonaEngine(pipeline, model_hash)
    store = ProfileStore(config.store_url or default_store_url(config.model_dir), engine.state_size, config.keep_history)
    service = ProfileService(engine, store, config)
    store.check_model(engine.model_hash, migrate=service.migrate if config.migrate else None)
    return service


def create_app(service: ProfileService, keys: KeyCheck) -> Any:
    """The ASGI app for `service`, its routes behind `keys` (wrapped in the middleware)."""
    config = service.config
    batcher: MicroBatcher = MicroBatcher(service.recommend_batch, config.batch_workers, config.max_batch)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        service.store.close()

    app = FastAPI(title="recsys_pref", lifespan=lifespan,
                  description="Persona recommendations, onboarding and stored profiles (DESIGN.md, 'Serving').")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceError, _service_error)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the model and store are loaded (no key needed)."""
        return {"status": "ok", "engine": service.engine.kind, "model_hash": service.engine.model_hash}

    @app.get("/metrics", tags=["operations"])
    async def prometheus() -> Response:
        """Prometheus text: request counts and latency histograms per route."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/onboarding", status_code=201, tags=["onboarding"])
    async def start_onboarding() -> dict[str, Any]:
        """Start a stored onboarding session: its id and the first question."""
        return await run_in_threadpool(service.start_onboarding)

    @app.get("/onboarding/{session_id}", tags=["onboarding"])
    async def onboarding_session(session_id: str) -> dict[str, Any]:
        """The session's pending question, or done."""
        return await run_in_threadpool(service.session, session_id)

    @app.post("/onboarding/{session_id}/answers", tags=["onboarding"])
    async def answer(session_id: str, body: AnswerBody) -> dict[str, Any]:
        """Answer the pending question: the next question, or done."""
        return await run_in_threadpool(service.answer, session_id, body.answer)

    @app.post("/onboarding/{session_id}/finish", status_code=201, tags=["onboarding"])
    async def finish(session_id: str, body: FinishBody) -> dict[str, Any]:
        """Store the session's state as the profile of a new user."""
        return await run_in_threadpool(service.finish, session_id, body.user_id)

    @app.get("/users/{user_id}/recommendations", tags=["recommendations"])
    async def user_recommendations(user_id: str, k: int = 10, safeguards: str = "off",
                                   explain: bool = True) -> dict[str, Any]:
        """Top-k for a stored user (or a user of the model), rows in the pipeline's schema."""
        key = service.recommendation_key("user", k, safeguards, explain)
        rows = await batcher.submit(key, StoredUser(service.parse_user(user_id, "path.user_id")))
        return {"user_id": rows[0]["user_id"] if rows else user_id, "recommendations": rows}

    @app.post("/recommendations", tags=["recommendations"])
    async def history_recommendations(body: HistoryBody) -> dict[str, Any]:
        """Top-k for an anonymous history given in the body; nothing is stored."""
        key = service.recommendation_key("history", body.k, body.safeguards, body.explain)
        items = service.parse_items(body.items, "body.items")
        return {"recommendations": await batcher.submit(key, AnonymousHistory(tuple(items)))}

    @app.post("/score", tags=["recommendations"])
    async def score(body: ScoreBody) -> dict[str, Any]:
        """Score and explain candidate rows from another pipeline's retriever."""
        candidates = [(row.user_id, row.item_id) for row in body.candidates]
        history = [(row.user_id, row.item_id) for row in body.history]
        return {"scores": await run_in_threadpool(service.score, candidates, history)}

    @app.post("/users/{user_id}/interactions", tags=["profiles"])
    async def interactions(user_id: str, body: InteractionsBody) -> dict[str, Any]:
        """Append interactions and fold the stored state in again (one transaction)."""
        return await run_in_threadpool(service.add_interactions, user_id, body.items)

    @app.get("/users/{user_id}/profile", tags=["profiles"])
    async def profile(user_id: str) -> dict[str, Any]:
        """Summary, personas with labels and weights, control, items and state size."""
        return await run_in_threadpool(service.profile, user_id)

    @app.patch("/users/{user_id}/profile", tags=["profiles"])
    async def control(user_id: str, body: ControlBody) -> dict[str, Any]:
        """Mute or boost personas and bases (persisted); returns the profile."""
        return await run_in_threadpool(service.set_control, user_id, body.personas, body.bases)

    @app.delete("/users/{user_id}", tags=["profiles"])
    async def forget(user_id: str) -> dict[str, Any]:
        """Forget a user: profile, interactions and sessions."""
        return await run_in_threadpool(service.forget, user_id)

    add_page(app, service, keys)
    return MetricsMiddleware(RequestLimits(AuthMiddleware(app, keys), config.max_body_bytes), metrics)
