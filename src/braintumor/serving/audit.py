"""Request ids: every answer can be traced to its line in the prediction log.

`RequestIdMiddleware` gives each HTTP request an id, the caller's `X-Request-ID` when it is
usable (printable ASCII, at most 128 characters) or else a new uuid4 hex, keeps it in the ASGI
scope (`request_id_of`) and returns it in the `X-Request-ID` response header. The service
copies it into each `Upload` of the request, its answer's `request_id` and the log line, with
the rest of the `AuditTrail`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from braintumor.serving.uploads import Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
SCOPE_KEY = "braintumor.request_id"
_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")


def new_request_id() -> str:
    """A fresh request id: a uuid4 as 32 hex digits."""
    return uuid.uuid4().hex


def accepted_request_id(value: str | bytes | None) -> str | None:
    """`value` (surrounding spaces removed) when it can serve as a request id: 1 to 128
    printable ASCII characters; None otherwise."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if not 0 < len(value) <= MAX_REQUEST_ID_LENGTH:
        return None
    if not all(" " <= char <= "~" for char in value):
        return None
    return value


def request_id_for(scope: Scope) -> str:
    """The id `RequestIdMiddleware` gives a request: the caller's usable X-Request-ID, else
    a new one."""
    for name, value in scope.get("headers", []):
        if name.lower() == _HEADER:
            accepted = accepted_request_id(value)
            if accepted is not None:
                return accepted
            break
    return new_request_id()


def request_id_of(scope: Scope) -> str | None:
    """The id `RequestIdMiddleware` gave this request (None: it did not see the request)."""
    return scope.get(SCOPE_KEY)


class RequestIdMiddleware:
    """Pure ASGI middleware: an id for every HTTP request (`request_id_for`), kept in the
    scope under `SCOPE_KEY` and sent back in the `X-Request-ID` response header (refusals
    by middlewares inside it included). A request that already has an id (an outer
    RequestIdMiddleware gave it one) keeps it."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        request_id = request_id_for(scope)
        scope[SCOPE_KEY] = request_id
        header = (_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


@dataclass(frozen=True)
class AuditTrail:
    """What the prediction log records about one upload besides the answer itself."""

    request_id: str
    input_sha256: str  # of the upload's bytes as received
    received_at: float  # time.perf_counter() when the upload was in hand

    def latency_ms(self, now: float | None = None) -> float:
        """Milliseconds from the upload in hand to `now` (default: this moment)."""
        return 1000.0 * ((time.perf_counter() if now is None else now) - self.received_at)
