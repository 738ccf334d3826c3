"""The real server as a subprocess on 127.0.0.1: refusal without keys, and SIGKILL durability."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from recsys_pref.service.auth import API_KEYS_ENV
from recsys_pref.service.process import ServerProcess
from recsys_pref.service.store import ProfileStore
from service_support import AUTH, KEY

USERS = 8  # users written to concurrently
BURST = 240  # writes sent at most (bounded: the burst ends by itself)
KILL_AFTER = 40  # acknowledged writes before SIGKILL
CONCURRENCY = 16


@pytest.fixture(scope="module")
def model_dir(pipeline, tmp_path_factory) -> Path:
    return pipeline.save(tmp_path_factory.mktemp("server") / "model")


def test_the_server_does_not_start_without_a_key(model_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "recsys_pref.service", "--model", str(model_dir), "--store",
                             f"sqlite:///{tmp_path / 's.sqlite'}"], capture_output=True, text=True, timeout=120,
                            env={name: value for name, value in os.environ.items() if name != API_KEYS_ENV})
    assert result.returncode == 2 and "no API key" in result.stderr


async def _burst(server: ServerProcess) -> list[tuple[int, int]]:
    """Concurrent interaction writes (user u gets items 0, 1, 2, ... in turn) until KILL_AFTER are
    acknowledged, then SIGKILL mid-burst; returns the acknowledged (user, item) writes."""
    acknowledged: list[tuple[int, int]] = []
    writes = [(10_000 + number % USERS, number // USERS) for number in range(BURST)]
    queue: asyncio.Queue = asyncio.Queue()
    for write in writes:
        queue.put_nowait(write)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            user, item = queue.get_nowait()
            try:
                reply = await client.post(f"{server.url}/users/{user}/interactions", json={"items": [item]},
                                          headers=AUTH, timeout=30)
            except httpx.TransportError:
                return  # the server is gone: this write was never acknowledged
            if reply.status_code == 200:
                acknowledged.append((user, item))
                if len(acknowledged) == KILL_AFTER:
                    server.kill()

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return acknowledged


@pytest.mark.integration
def test_acknowledged_writes_survive_sigkill(model_dir, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'profiles.sqlite'}"
    server = ServerProcess(model_dir, store_url, keys=[KEY], log=tmp_path / "server.log")
    server.wait_healthy()
    acknowledged = asyncio.run(_burst(server))
    assert server.process.returncode == -9 and len(acknowledged) >= KILL_AFTER
    with ServerProcess(model_dir, store_url, keys=[KEY], log=tmp_path / "server.log") as restarted:
        stored = {user: set(httpx.get(f"{restarted.url}/users/{user}/profile", headers=AUTH).json()["items"])
                  for user in {user for user, _ in acknowledged}}
    lost = [(user, item) for user, item in acknowledged if item not in stored[user]]
    assert lost == []
    with sqlite3.connect(tmp_path / "profiles.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    profiles = ProfileStore(store_url, state_size=2 * (4 + 1))
    assert len(profiles.get_profiles(profiles.profile_ids())) == USERS  # every state decodes: right size, finite
