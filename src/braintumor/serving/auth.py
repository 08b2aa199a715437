"""Optional API-key authentication for the service (keys: `ServingConfig.api_keys`).

With keys configured, every HTTP request must carry one of them, as `X-API-Key: <key>` or
`Authorization: Bearer <key>`, except the paths in `OPEN_PATHS`: the health probes, the
Prometheus metrics and the web page itself (whose calls to /explain and /metadata then need
the key: the page asks for it). Anything else gets a 401
`{"error": "unauthorized", "detail": ...}` before its body is read. Keys are compared in
constant time (`hmac.compare_digest` of their sha256 digests, so not even their length leaks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Collection, Iterable

from braintumor.serving.uploads import Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
UNAUTHORIZED = "unauthorized"
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/livez", "/metrics"})
_API_KEY = API_KEY_HEADER.lower().encode("latin-1")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: its X-API-Key header, else its `Authorization: Bearer`
    token; None when it carries neither."""
    bearer = None
    for name, value in headers:
        name = name.lower()
        if name == _API_KEY:
            return value.decode("latin-1").strip() or None
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


class ApiKeyMiddleware:
    """Pure ASGI middleware: 401 for HTTP requests without one of `keys` (see the module
    doc). Other ASGI traffic (lifespan) passes; the service has no websockets."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        keys: Collection[str],
        open_paths: Collection[str] = OPEN_PATHS,
    ) -> None:
        if not keys:
            raise ValueError("ApiKeyMiddleware needs at least one key")
        self.app = app
        self._digests = tuple(_digest(key) for key in keys)
        self.open_paths = frozenset(open_paths)

    def is_valid(self, key: str) -> bool:
        """Whether `key` is one of the keys; every key is compared, in constant time."""
        presented = _digest(key)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(presented, digest)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.open_paths
            or scope["method"] == "OPTIONS"  # CORS preflights carry no credentials
        ):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope.get("headers", []))
        if key is None:
            detail = (
                f"this service needs an API key: send it as '{API_KEY_HEADER}: <key>' or "
                "'Authorization: Bearer <key>'"
            )
            await _refuse(send, detail)
        elif not self.is_valid(key):
            await _refuse(send, "the API key is not valid")
        else:
            await self.app(scope, receive, send)


async def _refuse(send: Send, detail: str) -> None:
    body = json.dumps({"error": UNAUTHORIZED, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="braintumor"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
