"""The service's refusals: an HTTP status, a message that names the problem, and the field."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Sequence


class ServiceError(Exception):
    """A request the service refuses: status (4xx), message, field (the request field at fault,
    e.g. "body.answer" or "query.k", or None)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def payload(self) -> dict[str, str]:
        """The JSON body of the error response."""
        return {"detail": self.message} | ({"field": self.field} if self.field else {})


def not_found(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(404, message, field)


def invalid(message: str, field: str) -> ServiceError:
    return ServiceError(422, message, field)


def conflict(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(409, message, field)


Send = Callable[[dict[str, Any]], Awaitable[None]]  # an ASGI send


async def send_error(send: Send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A JSON error response {"detail": message}, sent from ASGI middleware."""
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
