"""Helpers of the service tests (tests/test_service*.py): a key, a saved tiny model, clients."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from recsys_pref.service.app import build_service, create_app
from recsys_pref.service.auth import KeyCheck
from recsys_pref.service.profiles import ProfileService
from recsys_pref.service.settings import ServiceConfig

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def open_service(model_dir: Path, store: Path, **settings: Any) -> ProfileService:
    """The service of `model_dir` over the SQLite file `store`."""
    return build_service(ServiceConfig(model_dir=model_dir, store_url=f"sqlite:///{store}", **settings))


def client_for(service: ProfileService, keys: frozenset[str] | None = frozenset({KEY})) -> TestClient:
    """A test client of the app (enter it with `with` to run the app's start-up)."""
    return TestClient(create_app(service, KeyCheck(keys)))


def onboard(client: TestClient, user_id: Any, answer_index: int = 0) -> dict[str, Any]:
    """Take a whole onboarding (always the item at `answer_index`) and finish it for `user_id`."""
    reply = client.post("/onboarding", headers=AUTH).json()
    session_id = reply["session_id"]
    while not reply["done"]:
        items = reply["question"]["items"]
        reply = client.post(f"/onboarding/{session_id}/answers", headers=AUTH,
                            json={"answer": items[answer_index % len(items)]["item_id"]}).json()
    finished = client.post(f"/onboarding/{session_id}/finish", headers=AUTH, json={"user_id": user_id})
    assert finished.status_code == 201, finished.text
    return finished.json() | {"session_id": session_id}
