"""ASGI middlewares of the service: the API key check and JSON-only request bodies.

The key is required on every path but the health and metrics endpoints, as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a missing or wrong key gets a 401.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNAUTHORIZED = "missing or wrong API key: send the header 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


async def send_json(send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a whole JSON answer on a raw ASGI channel.

    Args:
        send: the ASGI send callable.
        status: HTTP status.
        payload: the JSON body.
        headers: extra headers.
    """
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key a request carries, from ``Authorization: Bearer`` or ``X-API-Key``.

    Args:
        headers: the raw ASGI headers.

    Returns:
        The key, or None.
    """
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lname == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    """401 for any request without the right key, except on the open paths.

    Attributes:
        OPEN_PATHS: exact paths served without a key (health and metrics).
        OPEN_PREFIXES: path prefixes served without a key (e.g. a page's static files).
    """

    # The page's shell and assets (serving/page.py) load without a key; its data under /ui/api/ needs one.
    OPEN_PATHS: ClassVar[frozenset[str]] = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/ui", "/ui/", "/ui/index.html"})
    OPEN_PREFIXES: ClassVar[tuple[str, ...]] = ("/ui/static/",)

    def __init__(self, app: ASGIApp, key: str | None = None, key_loader: Callable[[], str | None] | None = None) -> None:
        """Wrap ``app``.

        Args:
            app: the inner ASGI app.
            key: the API key; when None, ``key_loader`` is called once (in the server process).
            key_loader: where the key comes from (default: the settings, ``CHURN_API_KEY`` or its file).
        """
        self.app = app
        if key is None:
            loader = key_loader or _settings_key
            key = loader()
        self._key = key.encode() if key else None

    def is_open(self, path: str) -> bool:
        """Whether ``path`` is served without a key."""
        return path in self.OPEN_PATHS or any(path.startswith(p) for p in self.OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        given = presented_key(scope.get("headers", []))
        if self._key is None or given is None or not hmac.compare_digest(given.encode(), self._key):
            await send_json(send, 401, {"error": UNAUTHORIZED, "detail": []}, [(b"www-authenticate", b'Bearer realm="churn"')])
            return
        await self.app(scope, receive, send)


class JsonBodyMiddleware:
    """Parse the bodies of the API routes as JSON whatever content type the client declared.

    BentoML picks a parser by ``Content-Type``; a client that forgets the header (curl's default is
    a form) would otherwise get a misleading "field required", and a multipart body a 500.

    Attributes:
        routes: the POST paths whose bodies are JSON.
    """

    def __init__(self, app: ASGIApp, routes: tuple[str, ...] = ("/predict", "/risk_list", "/actions")) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in self.routes:
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _settings_key() -> str | None:
    from churn.settings import load_settings

    return load_settings().resolved_api_key()
