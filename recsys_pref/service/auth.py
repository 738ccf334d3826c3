"""API keys: `Authorization: Bearer <key>` on every route but /healthz; a cookie for the page.

Keys come from RECSYS_PREF_API_KEYS (comma-separated) and/or a file (one key per line, `#`
comments); each must be at least MIN_KEY_LENGTH characters. The server refuses to start
without a key unless told `--insecure-no-auth`. Keys are compared in constant time.

The web page cannot send a header from a link or a form, so its login form (the one open page
besides /healthz) exchanges a key for a cookie holding HMAC-SHA256(key, PAGE_SALT): it opens
the page and the OpenAPI docs, never the JSON API, and the key itself is not sent again.
The cookie is HttpOnly and SameSite=Strict, so another site cannot make a browser post the
page's forms.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from recsys_pref.service.errors import send_error

API_KEYS_ENV = "RECSYS_PREF_API_KEYS"
MIN_KEY_LENGTH = 16
PAGE_COOKIE = "recsys_pref_page"
PAGE_SALT = b"recsys-pref page cookie v1"


def load_keys(keys_file: Path | None = None, environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The API keys from the environment and `keys_file`; ValueError naming a short key."""
    keys = [key.strip() for key in environ.get(API_KEYS_ENV, "").split(",")]
    if keys_file is not None:
        lines = Path(keys_file).read_text().splitlines()
        keys += [line.split("#", 1)[0].strip() for line in lines]
    keys = [key for key in keys if key]
    short = [index for index, key in enumerate(keys) if len(key) < MIN_KEY_LENGTH]
    if short:
        raise ValueError(f"API keys must be at least {MIN_KEY_LENGTH} characters; {len(short)} key(s) are shorter")
    return frozenset(keys)


def page_token(key: str) -> str:
    """The page cookie's value for `key`."""
    return hmac.new(key.encode(), PAGE_SALT, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeyCheck:
    """keys: the accepted API keys; None: no authentication (--insecure-no-auth)."""

    keys: frozenset[str] | None

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def _matches(self, given: str, accepted: frozenset[str] | set[str]) -> bool:
        found = False
        for key in accepted:  # every key compared, in constant time each
            found |= hmac.compare_digest(given.encode(), key.encode())
        return found

    def bearer(self, header: str | None) -> bool:
        """True if an `Authorization` header value carries an accepted key."""
        if self.keys is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and bool(given) and self._matches(given.strip(), self.keys)

    def key(self, given: str) -> bool:
        """True if `given` (a key typed into the page's login form) is accepted."""
        return self.keys is None or self._matches(given.strip(), self.keys)

    def cookie(self, value: str | None) -> bool:
        """True if the page cookie `value` was issued for an accepted key."""
        if self.keys is None:
            return True
        return bool(value) and self._matches(value, {page_token(key) for key in self.keys})


OPEN_PATHS = frozenset({"/healthz", "/", "/ui/login"})  # "/" shows the login form until the cookie is set
PAGE_PATHS = ("/ui/", "/docs", "/openapi.json", "/redoc")  # the page's cookie opens these too


def cookie_value(header: str | None, name: str = PAGE_COOKIE) -> str | None:
    """The value of cookie `name` in a Cookie header."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class AuthMiddleware:
    """401 with `WWW-Authenticate: Bearer` for a request without an accepted key (the page and
    the docs also accept the page cookie)."""

    def __init__(self, app: Callable, check: KeyCheck) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.check.enabled or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        allowed = self.check.bearer(headers.get("authorization"))
        if not allowed and scope["path"].startswith(PAGE_PATHS):
            allowed = self.check.cookie(cookie_value(headers.get("cookie")))
        if allowed:
            await self.app(scope, receive, send)
            return
        await send_error(send, 401, "missing or wrong API key: send Authorization: Bearer <key>",
                         [(b"www-authenticate", b"Bearer")])
