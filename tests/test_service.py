"""The service's routes over the tiny pipeline (in-process ASGI client; the real server and the
browser are in test_service_server.py and test_service_page.py)."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_pref.pipeline import RECOMMENDATION_COLUMNS
from recsys_pref.service.store import StoreError, default_store_url
from service_support import AUTH, KEY, client_for, onboard, open_service

NEW_USER = 10_000  # ids above the dataset's 0..79 are new users


@pytest.fixture(scope="module")
def model_dir(pipeline, tmp_path_factory) -> Path:
    return pipeline.save(tmp_path_factory.mktemp("service") / "model")


@pytest.fixture()
def store(tmp_path) -> Path:
    return tmp_path / "profiles.sqlite"


@pytest.fixture()
def service(model_dir, store):
    return open_service(model_dir, store)


@pytest.fixture()
def client(service):
    with client_for(service) as client:
        yield client


def history_of(user: int, items: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"user_id": [user] * len(items), "item_id": items})


def snapshot(store: Path) -> list[tuple]:
    """Every row of every table: what a refused request must leave unchanged."""
    with sqlite3.connect(store) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(table, sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)) for table in tables]


# -- the routes ----------------------------------------------------------------------------------
def test_onboarding_finish_stores_a_profile_that_is_served(client):
    finished = onboard(client, NEW_USER)
    profile = client.get(f"/users/{NEW_USER}/profile", headers=AUTH).json()
    rows = client.get(f"/users/{NEW_USER}/recommendations?k=5", headers=AUTH).json()["recommendations"]
    assert profile["source"] == "stored" and profile["state_bytes"] == finished["state_bytes"] == 2 * (4 + 1) * 4
    assert len(rows) == 5 and list(rows[0]) == list(RECOMMENDATION_COLUMNS)
    assert not set(finished["items"]) & {row["item_id"] for row in rows}  # chosen items are seen


def test_an_onboarding_session_survives_a_restart(model_dir, store):
    with client_for(open_service(model_dir, store)) as first:
        started = first.post("/onboarding", headers=AUTH).json()
        item = started["question"]["items"][0]["item_id"]
        first.post(f"/onboarding/{started['session_id']}/answers", headers=AUTH, json={"answer": item})
    with client_for(open_service(model_dir, store)) as second:
        resumed = second.get(f"/onboarding/{started['session_id']}", headers=AUTH).json()
    assert resumed["answered"] == 1 and resumed["question"]["number"] == 2


def test_stored_user_recommendations_are_the_pipelines(client, pipeline):
    client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2, 3]})
    rows = client.get(f"/users/{NEW_USER}/recommendations?k=6", headers=AUTH).json()["recommendations"]
    expected = pipeline.recommend([NEW_USER], 6, history=history_of(NEW_USER, [1, 2, 3]))
    assert [row["item_id"] for row in rows] == expected["item_id"].to_list()
    np.testing.assert_allclose([row["score"] for row in rows], expected["score"].to_numpy(), rtol=1e-5)


def test_model_users_are_served_from_their_training_data(client, pipeline):
    rows = client.get("/users/3/recommendations?k=4&safeguards=all", headers=AUTH).json()["recommendations"]
    from recsys_pref.safeguards.config import SafeguardsConfig

    expected = pipeline.recommend([3], 4, safeguards=SafeguardsConfig.preset("all"))
    assert [row["item_id"] for row in rows] == expected["item_id"].to_list()


def test_anonymous_history_is_recommended_for_and_not_stored(client, pipeline, store):
    before = snapshot(store)
    reply = client.post("/recommendations", headers=AUTH, json={"items": [5, 6, 7], "k": 4, "explain": False})
    expected = pipeline.recommend([NEW_USER], 4, history=history_of(NEW_USER, [5, 6, 7]))
    rows = reply.json()["recommendations"]
    assert [row["item_id"] for row in rows] == expected["item_id"].to_list()
    assert "because_you_liked" not in rows[0] and rows[0]["user_id"] is None
    assert snapshot(store) == before


def test_score_is_the_pipelines_explain_many(client, pipeline):
    candidates = [{"user_id": 3, "item_id": 10}, {"user_id": 3, "item_id": 11}, {"user_id": 5, "item_id": 10}]
    scored = client.post("/score", headers=AUTH, json={"candidates": candidates}).json()["scores"]
    expected = pipeline.explain_many(pl.DataFrame(candidates))
    np.testing.assert_allclose([row["score"] for row in scored], expected["score"].to_numpy(), rtol=1e-5)
    assert [row["because_you_liked"] for row in scored] == expected["because_you_liked"].to_list()


def test_interactions_refold_the_stored_state(client, service, pipeline):
    first = client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2]}).json()
    second = client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [2, 9]}).json()
    stored = service.store.get_profile(str(NEW_USER))
    expected = pipeline.user_batch([NEW_USER], history=history_of(NEW_USER, [1, 2, 9])).state.vectors()[0]
    assert (first["version"], second["version"], second["items"], second["added"]) == (1, 2, 3, 1)
    np.testing.assert_allclose(stored.state, expected, rtol=1e-5, atol=1e-6)


def test_profiles_keep_no_raw_history_unless_configured(model_dir, tmp_path):
    kept = {}
    for keep in (False, True):
        service = open_service(model_dir, tmp_path / f"{keep}.sqlite", keep_history=keep)
        with client_for(service) as client:
            client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [4, 8]})
        kept[keep] = service.store.counts()["interactions"]
    assert kept == {False: 0, True: 2}


def test_profile_names_personas_with_weights_and_summary(client, pipeline):
    profile = client.get("/users/3/profile", headers=AUTH).json()
    assert profile["summary"] == pipeline.summary(3)
    assert [persona["label"] for persona in profile["personas"]] == pipeline.personas(3)["label"].to_list()
    assert sum(persona["weight"] for persona in profile["personas"]) == pytest.approx(1.0, abs=1e-4)


def test_mute_changes_the_list_and_is_persisted(model_dir, store, pipeline):
    with client_for(open_service(model_dir, store)) as client:
        client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2, 3, 30, 31]})
        before = client.get(f"/users/{NEW_USER}/recommendations?k=8", headers=AUTH).json()["recommendations"]
        patched = client.patch(f"/users/{NEW_USER}/profile", headers=AUTH, json={"personas": {"0": 0}})
    with client_for(open_service(model_dir, store)) as client:
        after = client.get(f"/users/{NEW_USER}/recommendations?k=8", headers=AUTH).json()["recommendations"]
    assert patched.json()["control"]["personas"] == {"0": 0.0}
    assert {row["persona"] for row in after} == {1}
    assert [row["item_id"] for row in after] != [row["item_id"] for row in before]


def test_delete_forgets_a_stored_user(client, store):
    client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1]})
    assert client.delete(f"/users/{NEW_USER}", headers=AUTH).status_code == 200
    assert client.get(f"/users/{NEW_USER}/profile", headers=AUTH).status_code == 404
    assert ("profiles", []) in snapshot(store)


def test_delete_stops_serving_a_user_of_the_model(client):
    assert client.delete("/users/3", headers=AUTH).status_code == 200
    assert client.get("/users/3/recommendations", headers=AUTH).status_code == 404


def test_muting_every_persona_is_refused_and_leaves_the_profile(client, store):
    client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2, 3]})
    before = snapshot(store)
    answer = client.patch(f"/users/{NEW_USER}/profile", headers=AUTH, json={"personas": {"0": 0, "1": 0}})
    assert answer.status_code == 422 and "every persona" in answer.text
    assert snapshot(store) == before
    assert client.get(f"/users/{NEW_USER}/recommendations", headers=AUTH).status_code == 200


def test_a_persona_muted_by_label_is_stored_by_id(client):
    client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2, 3, 30, 31]})
    labels = [persona["label"] for persona in client.get(f"/users/{NEW_USER}/profile", headers=AUTH).json()["personas"]]
    patched = client.patch(f"/users/{NEW_USER}/profile", headers=AUTH, json={"personas": {labels[0]: 0}})
    named = [str(m) for m, name in enumerate(labels) if name == labels[0]]
    if len(named) == len(labels):  # the label names every persona: muting it would mute the user
        assert patched.status_code == 422
    else:
        assert patched.json()["control"]["personas"] == {m: 0.0 for m in named}


def test_score_refuses_a_deleted_user_even_with_a_history(client):
    assert client.delete("/users/3", headers=AUTH).status_code == 200
    answer = client.post("/score", headers=AUTH, json={"candidates": [{"user_id": 3, "item_id": 5}],
                                                       "history": [{"user_id": 3, "item_id": 7}]})
    assert answer.status_code == 404


@pytest.mark.parametrize("user", ["--5", "%C2%B2", "1" * 40])
def test_malformed_integer_ids_get_a_422(client, user):
    assert client.get(f"/users/{user}/profile", headers=AUTH).status_code == 422


def test_healthz_needs_no_key_and_metrics_count_routes(client):
    assert client.get("/healthz").status_code == 200
    client.get("/users/3/recommendations", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert 'recsys_pref_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"} 1.0' in text
    assert 'recsys_pref_request_seconds_bucket{le="0.05",method="GET",route="/users/{user_id}/recommendations"}' in text


@pytest.mark.parametrize("method,path", [
    ("get", "/users/3/recommendations"), ("post", "/recommendations"), ("post", "/score"), ("post", "/onboarding"),
    ("post", "/users/3/interactions"), ("get", "/users/3/profile"), ("patch", "/users/3/profile"),
    ("delete", "/users/3"), ("get", "/metrics"), ("get", "/docs"), ("get", "/openapi.json"),
])
def test_every_route_but_healthz_needs_a_key(client, method, path):
    missing = client.request(method, path, json={})
    wrong = client.request(method, path, json={}, headers={"Authorization": "Bearer wrong-key-0123456789"})
    assert (missing.status_code, wrong.status_code) == (401, 401)


def test_the_server_refuses_short_keys():
    from recsys_pref.service.auth import load_keys

    with pytest.raises(ValueError, match="at least 16"):
        load_keys(environ={"RECSYS_PREF_API_KEYS": "short"})


# -- the store ------------------------------------------------------------------------------------
def test_the_default_store_is_a_wal_sqlite_file_beside_the_model(model_dir):
    url = default_store_url(model_dir)
    service = open_service(model_dir, Path(url.removeprefix("sqlite:///")))
    try:
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert Path(url.removeprefix("sqlite:///")).parent == model_dir.parent
    finally:
        service.store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def test_a_store_of_another_model_is_refused(model_dir, store, dataset, tiny_persona, tmp_path):
    from recsys_pref.pipeline import PersonaPipeline

    open_service(model_dir, store).store.close()
    other = PersonaPipeline.fit(dataset, tiny_persona).save(tmp_path / "other")
    (other / "MANIFEST.json").write_text((other / "MANIFEST.json").read_text() + " ")  # another hash, same model
    with pytest.raises(StoreError, match="another model"):
        open_service(other, store)


def test_migrate_refolds_profiles_for_the_new_model(model_dir, store, dataset, tmp_path):
    from recsys_pref.models.persona import PersonaConfig
    from recsys_pref.pipeline import PersonaPipeline

    with client_for(open_service(model_dir, store)) as client:
        client.post(f"/users/{NEW_USER}/interactions", headers=AUTH, json={"items": [1, 2, 3]})
    other = PersonaPipeline.fit(dataset, PersonaConfig(n_personas=1, n_bases=3, embedding_dim=6, progress=False))
    migrated = open_service(other.save(tmp_path / "other"), store, migrate=True)
    expected = other.user_batch([NEW_USER], history=history_of(NEW_USER, [1, 2, 3])).state.vectors()[0]
    np.testing.assert_allclose(migrated.store.get_profile(str(NEW_USER)).state, expected, rtol=1e-5, atol=1e-6)



def _dying_migration(store) -> None:
    raise RuntimeError("the machine went down midway")


def test_an_interrupted_migration_is_refused_by_the_old_model_too(store):
    from recsys_pref.service.store import ProfileStore

    profiles = ProfileStore(f"sqlite:///{store}", state_size=10)
    profiles.check_model("old-model")
    with pytest.raises(RuntimeError, match="midway"):
        profiles.check_model("new-model", migrate=_dying_migration)
    for model in ("old-model", "new-model"):
        with pytest.raises(StoreError, match="migration that did not finish"):
            profiles.check_model(model)


def test_an_interrupted_migration_completes_when_rerun(store):
    from recsys_pref.service.store import ProfileStore

    profiles = ProfileStore(f"sqlite:///{store}", state_size=10)
    profiles.check_model("old-model")
    with pytest.raises(RuntimeError):
        profiles.check_model("new-model", migrate=_dying_migration)
    profiles.check_model("new-model", migrate=lambda store: None)
    assert profiles.model_hash() == "new-model"


@pytest.fixture(scope="module")
def model_dir_with_tree(pipeline, model_dir, tmp_path_factory):
    """A copy of the artifact with an interview tree grown beside it (as `recsys-pref onboard` does)."""
    import shutil

    from recsys_pref.onboarding.tree import TreeConfig
    from recsys_pref.terminal import interview_tree

    copy = Path(shutil.copytree(model_dir, tmp_path_factory.mktemp("tree") / "model"))
    tree = interview_tree(pipeline, copy, TreeConfig(min_users=3, pool_size=20, validation_share=0.0), write=lambda line: None)
    assert tree.nodes[0].options, "the tiny pipeline grew no question: the test needs one"
    return copy


def test_onboarding_asks_the_interview_tree_saved_beside_the_model(model_dir_with_tree, store):
    from recsys_pref.onboarding.tree import TREE_FILE, InterviewTree

    tree = InterviewTree.load(model_dir_with_tree / TREE_FILE)
    with client_for(open_service(model_dir_with_tree, store)) as client:
        started = client.post("/onboarding", headers=AUTH).json()
        finished = onboard(client, NEW_USER)
    assert [item["item_id"] for item in started["question"]["items"]] == list(tree.nodes[0].options)
    assert finished["state_bytes"] > 0

# -- bad input: a clear 4xx, the store unchanged ---------------------------------------------------
def _pending(client) -> tuple[str, list[int]]:
    """A new session's id and the item ids its first question shows."""
    started = client.post("/onboarding", headers=AUTH).json()
    return started["session_id"], [item["item_id"] for item in started["question"]["items"]]


def _finished(client) -> tuple[str, list[int]]:
    return onboard(client, NEW_USER + 1)["session_id"], []


JSON = AUTH | {"content-type": "application/json"}
#: case -> (setup(client) -> (session id, shown items), request(client, session, shown), status, field)
BAD_REQUESTS = {
    "unknown user": (_pending, lambda c, s, shown: c.get("/users/999999/recommendations", headers=AUTH), 404, None),
    "unknown user's profile": (_pending, lambda c, s, shown: c.patch("/users/999999/profile", headers=AUTH,
                                                                     json={"personas": {"0": 0}}), 404, None),
    "unknown item": (_pending, lambda c, s, shown: c.post("/users/3/interactions", headers=AUTH,
                                                          json={"items": [1, 4040]}), 422, "body.items[1]"),
    "duplicate items": (_pending, lambda c, s, shown: c.post("/users/3/interactions", headers=AUTH,
                                                             json={"items": [1, 2, 1]}), 422, "body.items[2]"),
    "answer not offered": (_pending, lambda c, s, shown: c.post(
        f"/onboarding/{s}/answers", headers=AUTH, json={"answer": min(set(range(40)) - set(shown))}), 422, "body.answer"),
    "finished session": (_finished, lambda c, s, shown: c.post(f"/onboarding/{s}/answers", headers=AUTH,
                                                               json={"answer": "none"}), 409, "path.session_id"),
    "finishing a finished session": (_finished, lambda c, s, shown: c.post(
        f"/onboarding/{s}/finish", headers=AUTH, json={"user_id": NEW_USER + 2}), 409, "path.session_id"),
    "unknown session": (_pending, lambda c, s, shown: c.post("/onboarding/nope/answers", headers=AUTH,
                                                             json={"answer": "none"}), 404, "path.session_id"),
    "k <= 0": (_pending, lambda c, s, shown: c.get("/users/3/recommendations?k=0", headers=AUTH), 422, "query.k"),
    "k above the cap": (_pending, lambda c, s, shown: c.get("/users/3/recommendations?k=101", headers=AUTH),
                        422, "query.k"),
    "k not a number": (_pending, lambda c, s, shown: c.get("/users/3/recommendations?k=ten", headers=AUTH),
                       422, "query.k"),
    "malformed JSON": (_pending, lambda c, s, shown: c.post("/users/3/interactions", headers=JSON,
                                                            content=b'{"items": [1,'), 400, "body"),
    "oversized body": (_pending, lambda c, s, shown: c.post("/users/3/interactions", headers=JSON,
                                                            content=b'{"items": [' + b"1," * 600_000 + b"1]}"), 413, None),
    "wrong content type": (_pending, lambda c, s, shown: c.post(
        "/users/3/interactions", headers=AUTH | {"content-type": "text/plain"}, content=b'{"items": [1]}'), 415, None),
    "missing key": (_pending, lambda c, s, shown: c.post("/users/3/interactions", json={"items": [1]}), 401, None),
    "wrong key": (_pending, lambda c, s, shown: c.post("/users/3/interactions", json={"items": [1]},
                                                       headers={"Authorization": f"Bearer {KEY}x"}), 401, None),
    "mute weight out of range": (_pending, lambda c, s, shown: c.patch(
        "/users/3/profile", headers=AUTH, json={"personas": {"0": 7.5}}), 422, "body.personas.0"),
    "negative base factor": (_pending, lambda c, s, shown: c.patch(
        "/users/3/profile", headers=AUTH, json={"bases": {"1": -1}}), 422, "body.bases.1"),
    "unknown persona": (_pending, lambda c, s, shown: c.patch(
        "/users/3/profile", headers=AUTH, json={"personas": {"9": 0}}), 422, "body.personas.9"),
    "unknown body field": (_pending, lambda c, s, shown: c.post("/users/3/interactions", headers=AUTH,
                                                                json={"item": [1]}), 422, "body.items"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_clear_4xx_and_leaves_the_store_unchanged(client, store, case):
    setup, send, status, field = BAD_REQUESTS[case]
    session, shown = setup(client)
    before = snapshot(store)
    reply = send(client, session, shown)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"] and reply.json().get("field") == field
    assert snapshot(store) == before


def test_an_expired_session_gets_410_and_stays_unchanged(model_dir, store):
    with client_for(open_service(model_dir, store, session_ttl_s=0.05)) as client:
        session, _ = _pending(client)
        time.sleep(0.1)
        before = snapshot(store)
        reply = client.post(f"/onboarding/{session}/answers", headers=AUTH, json={"answer": "none"})
        assert (reply.status_code, reply.json()["field"]) == (410, "path.session_id")
        assert snapshot(store) == before
