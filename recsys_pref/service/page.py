"""The web page at `/`: server-rendered HTML and plain forms, no script and no build step.

A person logs in with an API key (unless the server runs without keys), takes the onboarding
interview (each question shows item titles and genres), names the new profile, and then sees
their recommendations (title, genres, the persona each satisfies, "because you liked"), their
summary and their personas, each with mute / boost / reset buttons that change the list.
Every action is a form POST answered by a redirect (303) to the page that shows its result;
every one calls the same ProfileService as the JSON routes.
"""
from __future__ import annotations

import functools
import html
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, quote

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from recsys_pref.service.auth import PAGE_COOKIE, KeyCheck, cookie_value, page_token
from recsys_pref.service.errors import ServiceError, invalid
from recsys_pref.service.profiles import ProfileService, StoredUser

PAGE_K = 10  # recommendations shown
STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.92rem}
button{margin:.15rem;padding:.35rem .7rem;cursor:pointer}.choice{display:block;width:100%;text-align:left}
.muted{color:#777}.error{color:#a00}.genres{color:#666;font-size:.85rem}.persona{font-weight:600}
form.inline{display:inline}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _document(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
                        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>", status)


def _button_form(action: str, fields: dict[str, Any], label: str, element_id: str, css: str = "") -> str:
    hidden = "".join(f"<input type='hidden' name='{_e(name)}' value='{_e(value)}'>" for name, value in fields.items())
    return (f"<form class='inline' method='post' action='{_e(action)}'>{hidden}"
            f"<button id='{_e(element_id)}' class='{css}' type='submit'>{label}</button></form>")


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body as {name: first value}."""
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


class ItemNames:
    """Titles and genres of the model's items, by external id."""

    def __init__(self, service: ProfileService) -> None:
        pipeline = service.pipeline
        self.ids, items = pipeline.item_ids, pipeline.items
        n = len(self.ids)
        self.titles = [str(title) for title in items["title"].to_list()] if "title" in items.columns else \
            [str(item) for item in self.ids.external.tolist()]
        self.genres = items["genres"].to_list() if "genres" in items.columns else [[] for _ in range(n)]

    def html(self, item: Any) -> str:
        index = int(self.ids.to_index(np.array([item]))[0])
        genres = ", ".join(self.genres[index] or [])
        return f"{_e(self.titles[index])} <span class='genres'>{_e(genres)}</span>"

    def titles_of(self, items: list[Any]) -> str:
        return "; ".join(_e(self.titles[int(index)]) for index in self.ids.to_index(np.array(items))) if items else ""


def _login(message: str = "", status: int = 200) -> HTMLResponse:
    error = f"<p class='error'>{_e(message)}</p>" if message else ""
    return _document("recsys_pref", f"{error}<form method='post' action='/ui/login'><label>API key "
                     "<input id='key' type='password' name='key' autocomplete='off'></label> "
                     "<button id='login' type='submit'>Log in</button></form>", status)


def _home() -> HTMLResponse:
    return _document("recsys_pref", "<p>Answer about ten questions about items you know, and get recommendations "
                     "that say which of your tastes each one serves.</p>"
                     + _button_form("/ui/onboarding", {}, "Start the interview", "start")
                     + "<h2>Open a profile</h2><form method='get' action='/ui/users'><input id='open-user' "
                     "name='user_id'> <button id='open' type='submit'>Open</button></form>")


def _question_page(names: ItemNames, question: dict[str, Any]) -> HTMLResponse:
    session_id = question["session_id"]
    action = f"/ui/onboarding/{quote(session_id)}"
    if question["done"]:
        return _document("Name your profile", f"<p>You answered {question['answered']} questions.</p>"
                         f"<form method='post' action='{action}/finish'><label>User id "
                         "<input id='user-id' name='user_id'></label> "
                         "<button id='finish' type='submit'>Save and see recommendations</button></form>")
    pending = question["question"]
    prompt = "Which of these do you like most?" if pending["type"] == "choice" else "Which of the two do you prefer?"
    choices = "".join(_button_form(f"{action}/answers", {"answer": item["item_id"]}, names.html(item["item_id"]),
                                   f"answer-{item['item_id']}", "choice") for item in pending["items"])
    words = {"none": "None of these", "tie": "No preference", "unknown": "I don't know these"}
    others = "".join(_button_form(f"{action}/answers", {"answer": word}, words[word], f"answer-{word}")
                     for word in pending["other_answers"])
    return _document(f"Question {pending['number']} of {question['max_questions']}",
                     f"<p>{prompt}</p>{choices}<p>{others}</p>"
                     + _button_form(f"{action}/answers", {"answer": "__finish__"}, "Stop here", "stop", "muted"))


def _profile_page(names: ItemNames, profile: dict[str, Any], rows: list[dict[str, Any]]) -> HTMLResponse:
    user = profile["user_id"]
    action = f"/ui/users/{quote(str(user))}/control"
    personas = []
    for persona in profile["personas"]:
        m = persona["persona"]
        buttons = "".join(_button_form(action, {"persona": m, "weight": weight}, label, f"persona-{m}-{name}")
                          for name, label, weight in (("mute", "Mute", 0), ("boost", "Boost", 2), ("reset", "Reset", 1)))
        personas.append(f"<tr><td class='persona'>{_e(persona['label'])}</td><td>{persona['weight']:.0%}</td>"
                        f"<td>{persona['control']:g}</td><td>{buttons}</td></tr>")
    listed = "".join(
        f"<tr><td>{row['rank']}</td><td>{names.html(row['item_id'])}</td><td>{_e(row.get('persona_label', ''))}</td>"
        f"<td>{names.titles_of(row.get('because_you_liked') or [])}</td></tr>" for row in rows)
    body = (f"<p id='summary'>{_e(profile['summary'])}</p>"
            "<h2>Your personas</h2><table id='personas'><tr><th>persona</th><th>share</th><th>weight</th><th></th></tr>"
            f"{''.join(personas)}</table>"
            "<h2>Recommended for you</h2><table id='recommendations'><tr><th>#</th><th>item</th><th>for your taste</th>"
            f"<th>because you liked</th></tr>{listed}</table>"
            f"<p class='muted'>State: {profile['state_bytes']} bytes; {len(profile['items'])} items folded in.</p>"
            "<p><a href='/'>Home</a></p>")
    return _document(f"Profile {user}", body)


def add_page(app: FastAPI, service: ProfileService, keys: KeyCheck) -> None:
    """Add the page's routes (/, /ui/...) to `app`."""
    names = ItemNames(service)

    def page_errors(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        """Refusals as an HTML page with the message and the status."""

        @functools.wraps(handler)  # FastAPI reads the handler's signature through __wrapped__
        async def wrapped(*args: Any, **kwargs: Any) -> Response:
            try:
                return await handler(*args, **kwargs)
            except ServiceError as error:
                return _document("Something is wrong", f"<p class='error'>{_e(error.message)}</p>"
                                 "<p><a href='/'>Home</a></p>", error.status)

        return wrapped

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> Response:
        if not keys.cookie(cookie_value(request.headers.get("cookie"))) and not keys.bearer(
                request.headers.get("authorization")):
            return _login()
        return _home()

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        key = (await _form(request)).get("key", "")
        if not keys.key(key):
            return _login("That key is not accepted.", 401)
        response = RedirectResponse("/", 303)
        if keys.enabled:
            response.set_cookie(PAGE_COOKIE, page_token(key.strip()), httponly=True, samesite="strict")
        return response

    @app.post("/ui/onboarding", include_in_schema=False)
    @page_errors
    async def start(request: Request) -> Response:
        started = await run_in_threadpool(service.start_onboarding)
        return RedirectResponse(f"/ui/onboarding/{quote(started['session_id'])}", 303)

    @app.get("/ui/onboarding/{session_id}", include_in_schema=False)
    @page_errors
    async def question(session_id: str) -> Response:
        return _question_page(names, await run_in_threadpool(service.session, session_id))

    @app.post("/ui/onboarding/{session_id}/answers", include_in_schema=False)
    @page_errors
    async def answer(session_id: str, request: Request) -> Response:
        choice = (await _form(request)).get("answer", "")
        if choice == "__finish__":  # stop early: name the profile now
            current = await run_in_threadpool(service.session, session_id)
            return _question_page(names, current | {"done": True})
        await run_in_threadpool(service.answer, session_id, choice)
        return RedirectResponse(f"/ui/onboarding/{quote(session_id)}", 303)

    @app.post("/ui/onboarding/{session_id}/finish", include_in_schema=False)
    @page_errors
    async def finish(session_id: str, request: Request) -> Response:
        user = (await _form(request)).get("user_id", "").strip()
        finished = await run_in_threadpool(service.finish, session_id, user)
        return RedirectResponse(f"/ui/users/{quote(str(finished['user_id']))}", 303)

    @app.get("/ui/users", include_in_schema=False)
    @page_errors
    async def open_profile(user_id: str = "") -> Response:
        if not user_id.strip():
            raise invalid("query.user_id: type a user id", "query.user_id")
        return RedirectResponse(f"/ui/users/{quote(user_id.strip())}", 303)

    @app.get("/ui/users/{user_id}", include_in_schema=False)
    @page_errors
    async def user_page(user_id: str) -> Response:
        profile = await run_in_threadpool(service.profile, user_id)
        key = service.recommendation_key("user", PAGE_K, "off", True)
        rows = (await run_in_threadpool(service.recommend_batch, key, [StoredUser(profile["user_id"])]))[0]
        if isinstance(rows, BaseException):
            raise rows
        return _profile_page(names, profile, rows)

    @app.post("/ui/users/{user_id}/control", include_in_schema=False)
    @page_errors
    async def control(user_id: str, request: Request) -> Response:
        form = await _form(request)
        try:
            weight = float(form.get("weight", ""))
        except ValueError:
            raise invalid(f"weight: a number, got {form.get('weight')!r}", "weight") from None
        await run_in_threadpool(service.set_control, user_id, {form.get("persona", ""): weight}, {})
        return RedirectResponse(f"/ui/users/{quote(user_id)}", 303)
