"""`recsys-pref bench serve`: a bounded load on the real server on 127.0.0.1.

The persona model (M personas, K = d bases) is fitted on the dataset and saved; the server
(`python -m recsys_pref.service`, one process, SQLite store) starts on a free local port and
`profiles` users are stored through the interactions route (each gets the first `history`
training positives of one dataset user, under a new id). Then each route gets `requests`
requests from `concurrency` clients at once (an asyncio httpx loop; a fixed count, so the run
ends by itself), one route after the other:

    user          GET  /users/{id}/recommendations?k=K&explain=true   (a random stored user)
    history       POST /recommendations                                 (a stored user's items, anonymously)
    answer        POST /onboarding/{session}/answers                    (the first item shown; sessions
                                                                         are started outside the timing)
    interactions  POST /users/{id}/interactions                         (one random catalog item)
    healthz       GET  /healthz: no model and no store, the ceiling of the HTTP stack and the
                  client on this machine in the same run (first, so it reads the same load)

A row per route reports requests/s (requests / wall time of the route's run), latency
percentiles in ms and errors (non-2xx answers and failed connections). The reference, in the
same run: implicit's ALS (d factors, the persona model's shared-side settings) behind the same
app and store (`--engine als`), on the `user` route with the same stored users. The client
runs on the same machine as the server and takes part of its CPU.

Store size: state_bytes is the stored state (M*(K+1) float32); row_bytes the mean bytes of a
profile row's values (state, items JSON, id, version, time); disk_bytes the pages of the
profiles table and its index over the number of profiles (SQLite's dbstat).
"""
from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import numpy as np
from sqlalchemy import func, select
from tqdm import tqdm

from recsys_pref.bench.results import BenchResult
from recsys_pref.data.dataset import InteractionDataset
from recsys_pref.models.persona import PersonaConfig
from recsys_pref.pipeline import PersonaPipeline
from recsys_pref.service.process import ServerProcess
from recsys_pref.service.store import ProfileStore, bytes_on_disk, profiles

KEY = "bench-serve-key-0123456789"  # the run's own server: a fixed local key
HEADERS = {"Authorization": f"Bearer {KEY}"}
COLUMNS = ["engine", "route", "items", "requests", "concurrency", "errors", "requests_per_s", "p50_ms", "p95_ms",
           "p99_ms", "state_bytes", "row_bytes", "disk_bytes"]
ROUTES = ("healthz", "user", "history", "answer", "interactions")


@dataclass(frozen=True)
class ServeBenchConfig:
    """requests: per route; concurrency: clients at once; profiles: stored users; history:
    items per stored user; k: recommendations per request; n_personas, n_bases: M and K = d of
    the persona model; reference: also run implicit's ALS on the user route."""

    requests: int = 1000
    concurrency: int = 32
    profiles: int = 1000
    history: int = 20
    k: int = 10
    n_personas: int = 2
    n_bases: int = 32
    reference: bool = True
    seed: int = 0

    @classmethod
    def quick(cls) -> "ServeBenchConfig":
        """The reduced run used by tests: a few requests per route, a small model."""
        return cls(requests=64, concurrency=8, profiles=20, history=5, n_bases=8)


@dataclass
class Timings:
    """Latencies (seconds) of the answered requests, errors, and the wall time of the run."""

    latencies: list[float]
    errors: int
    wall_s: float

    def row(self) -> dict[str, Any]:
        done = len(self.latencies) + self.errors
        percentiles = np.percentile(np.array(self.latencies) * 1000, [50, 95, 99]) if self.latencies else [np.nan] * 3
        return {"requests": done, "errors": self.errors, "requests_per_s": round(done / self.wall_s, 1),
                "p50_ms": round(float(percentiles[0]), 2), "p95_ms": round(float(percentiles[1]), 2),
                "p99_ms": round(float(percentiles[2]), 2)}


async def _load(requests: int, concurrency: int,
                send: Callable[[httpx.AsyncClient, int], Awaitable[float | None]]) -> Timings:
    """`requests` calls of send(client, worker) from `concurrency` workers at once (worker: the
    caller's number, 0..concurrency-1); send returns its timed request's latency (seconds), or
    None for an error answer."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient, number: int) -> None:
        nonlocal errors
        for _ in remaining:
            try:
                elapsed = await send(client, number)
            except httpx.HTTPError:
                elapsed = None
            if elapsed is None:
                errors += 1
            else:
                latencies.append(elapsed)

    async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=60.0) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, number) for number in range(concurrency)))
        wall = time.perf_counter() - started
    return Timings(latencies, errors, wall)


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


class Workload:
    """The stored users and their items, and a request builder per route."""

    def __init__(self, pipeline: PersonaPipeline, config: ServeBenchConfig) -> None:
        self.config, self.rng = config, random.Random(config.seed)
        rows = np.flatnonzero(np.diff(pipeline.histories.indptr) > 0)[: config.profiles]
        self.items = [pipeline.item_ids.to_external(pipeline.histories[row].indices[: config.history]).tolist()
                      for row in rows]
        integer_ids = np.issubdtype(pipeline.user_ids.external.dtype, np.integer)
        self.users = [10**9 + index if integer_ids else f"bench-{index}" for index in range(len(rows))]
        self.catalog = pipeline.item_ids.external.tolist()
        self.sessions: dict[int, tuple[str, list[Any]]] = {}  # per worker: its session's id, the items shown

    def send(self, route: str, url: str) -> Callable[[httpx.AsyncClient, int], Awaitable[float | None]]:
        """send(client, worker) for `route`: the timed request's latency, or None on an error."""
        k = self.config.k

        async def healthz(client: httpx.AsyncClient, number: int) -> float | None:
            response, elapsed = await _timed(client.get(f"{url}/healthz"))
            return elapsed if response.status_code == 200 else None

        async def user(client: httpx.AsyncClient, number: int) -> float | None:
            target = self.rng.choice(self.users)
            response, elapsed = await _timed(client.get(f"{url}/users/{target}/recommendations?k={k}&explain=true"))
            return elapsed if response.status_code == 200 else None

        async def history(client: httpx.AsyncClient, number: int) -> float | None:
            body = {"items": self.rng.choice(self.items), "k": k}
            response, elapsed = await _timed(client.post(f"{url}/recommendations", json=body))
            return elapsed if response.status_code == 200 else None

        async def interactions(client: httpx.AsyncClient, number: int) -> float | None:
            target = self.rng.choice(self.users)
            body = {"items": [self.rng.choice(self.catalog)]}
            response, elapsed = await _timed(client.post(f"{url}/users/{target}/interactions", json=body))
            return elapsed if response.status_code == 200 else None

        async def answer(client: httpx.AsyncClient, slot: int) -> float | None:
            session = self.sessions.get(slot)
            if session is None:  # a new session: started outside the timing
                started = (await client.post(f"{url}/onboarding")).json()
                session = (started["session_id"], [item["item_id"] for item in started["question"]["items"]])
            response, elapsed = await _timed(client.post(f"{url}/onboarding/{session[0]}/answers",
                                                         json={"answer": session[1][0]}))
            reply = response.json() if response.status_code == 200 else {"done": True}
            if reply["done"]:
                self.sessions.pop(slot, None)
            else:
                self.sessions[slot] = (session[0], [item["item_id"] for item in reply["question"]["items"]])
            return elapsed if response.status_code == 200 else None

        return {"healthz": healthz, "user": user, "history": history, "interactions": interactions, "answer": answer}[route]

    async def store_profiles(self, url: str) -> int:
        """Create every stored user through the interactions route; returns the failures."""
        users = iter(zip(self.users, self.items))

        async def send(client: httpx.AsyncClient, number: int) -> float | None:
            user, items = next(users)
            response, elapsed = await _timed(client.post(f"{url}/users/{user}/interactions", json={"items": items}))
            return elapsed if response.status_code == 200 else None

        return (await _load(len(self.users), self.config.concurrency, send)).errors


def store_sizes(store_url: str, state_size: int) -> dict[str, float | None]:
    """state_bytes, row_bytes (mean bytes of a profile row's values) and disk_bytes per profile."""
    store = ProfileStore(store_url, state_size)
    try:
        with store.engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(profiles)).scalar_one()
            values = connection.execute(select(func.sum(
                func.length(profiles.c.state) + func.length(profiles.c["items"]) + func.length(profiles.c.user_id)
                + func.coalesce(func.length(profiles.c.control), 0) + 8 + 8))).scalar_one()
            disk = bytes_on_disk(connection, "profiles")
    finally:
        store.close()
    return {"state_bytes": state_size * 4, "row_bytes": round(values / count, 1) if count else None,
            "disk_bytes": round(disk / count, 1) if disk is not None and count else None}


def _serve(model_dir: Path, directory: Path, engine: str, workload: Workload, routes: tuple[str, ...],
           config: ServeBenchConfig, state_size: int, bar: tqdm) -> list[dict[str, Any]]:
    """Start a server for `engine`, store the profiles, load each route; one row per route."""
    store_url = f"sqlite:///{directory / f'{engine}.sqlite'}"
    rows = []
    with ServerProcess(model_dir, store_url, keys=[KEY], extra=["--engine", engine],
                       log=directory / f"{engine}.log") as server:
        failed = asyncio.run(workload.store_profiles(server.url))
        if failed:
            raise RuntimeError(f"{failed} of {len(workload.users)} profiles could not be stored ({engine})")
        for route in routes:
            timings = asyncio.run(_load(config.requests, config.concurrency, workload.send(route, server.url)))
            rows.append({"engine": engine, "route": route, "concurrency": config.concurrency} | timings.row())
            bar.update()
    sizes = store_sizes(store_url, state_size)
    return [row | (sizes if row["route"] == "user" else {}) for row in rows]


def run_serve(dataset: InteractionDataset, config: ServeBenchConfig, progress: bool = True) -> BenchResult:
    """Fit, serve and load (see the module docstring)."""
    persona = PersonaConfig(n_personas=config.n_personas, n_bases=config.n_bases, embedding_dim=config.n_bases,
                            progress=False)
    pipeline = PersonaPipeline.fit(dataset, persona)
    workload = Workload(pipeline, config)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as temporary, \
            tqdm(total=len(ROUTES) + config.reference, desc=f"serve on {dataset.name}", disable=not progress) as bar:
        directory = Path(temporary)
        model_dir = pipeline.save(directory / "model")
        rows = _serve(model_dir, directory, "persona", workload, ROUTES, config,
                      config.n_personas * (config.n_bases + 1), bar)
        if config.reference:
            rows += _serve(model_dir, directory, "als", workload, ("user",), config, config.n_bases, bar)
    for row in rows:
        row["items"] = dataset.n_items
    load = {"load_average_1m_before": load_before[0], "load_average_1m_after": os.getloadavg()[0],
            "cpus": os.cpu_count()}  # other work on the machine shares its CPUs with server and client
    return BenchResult("serve", dataset.name, "bounded load on 127.0.0.1 (one server process, SQLite store)",
                       asdict(config) | load, rows, COLUMNS)
