"""Request limits as ASGI middleware: body size (413) and content type (415), before any route.

A body above `max_body_bytes` is refused from its Content-Length, or, when that is absent or
lies, as soon as the bytes received exceed it. POST, PUT and PATCH bodies must be JSON
(`application/json`) on the API and form-encoded on the page (paths under PAGE_PREFIX).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from recsys_pref.service.errors import send_error

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PAGE_PREFIX = "/ui/"
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class BodyTooLarge(Exception):
    pass


class RequestLimits:
    """Wraps an ASGI app with the size and content-type checks."""

    def __init__(self, app: Callable, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_error(send, 413, f"request body over the limit of {self.max_body_bytes} bytes")
            return
        if scope["method"] in ("POST", "PUT", "PATCH") and (length is None or int(length) > 0):
            expected = FORM_TYPE if scope["path"].startswith(PAGE_PREFIX) else JSON_TYPE
            given = headers.get("content-type", "").split(";")[0].strip().lower()
            if given != expected:
                await send_error(send, 415, f"content type must be {expected}, got {given or 'none'}")
                return
        received = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_error(send, 413, f"request body over the limit of {self.max_body_bytes} bytes")
