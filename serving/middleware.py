"""ASGI middlewares of the service: the API key check, JSON-only request bodies, metrics by route.

The key is required on every path but the health and metrics endpoints, as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a missing or wrong key gets a 401.
``/metrics`` is labelled by route template (``/ui/api/customers/{customer_id}``), never by the
raw path, and every path no route serves shares the label ``unmatched``: the open endpoint shows
no customer id and does not grow with random paths.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, ClassVar

from bentoml._internal.server.http import instruments
from starlette.routing import BaseRoute, Match, Mount

from churn.settings import load_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"
RAW_PATH = "churn.raw_path"
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


def presented_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Every API key a request carries, from ``Authorization: Bearer`` and ``X-API-Key``, as sent (bytes).

    Args:
        headers: the raw ASGI headers.

    Returns:
        The keys, in header order (empty when none).
    """
    found: list[bytes] = []
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                found.append(token.strip())
        elif lname == b"x-api-key" and value.strip():
            found.append(value.strip())
    return found


def key_matches(headers: list[tuple[bytes, bytes]], key: bytes | None) -> bool:
    """Whether any key the request carries is ``key`` (compared in constant time, as bytes).

    Either header may carry the key; a wrong value in the other one does not matter. A key with
    non-ASCII characters matches when the client sends it UTF-8 encoded.

    Args:
        headers: the raw ASGI headers.
        key: the service's key, UTF-8 encoded (None or empty: nothing matches).

    Returns:
        True when a presented key is the service's.
    """
    if not key:
        return False
    matched = False
    for given in presented_keys(headers):
        matched |= hmac.compare_digest(given, key)
    return matched


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
        if not key_matches(scope.get("headers", []), self._key):
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


class BodyLimitMiddleware:
    """413 for a request body over the limit, before the app reads or parses any of it.

    A declared ``Content-Length`` over the limit is refused at once; a body sent without one
    (chunked) is read here up to the limit and handed on, or refused as soon as it passes it.

    Attributes:
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes if max_bytes is not None else load_settings().max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit() or int(declared) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, send: Send) -> None:
        message = f"the request body is larger than {self.max_bytes:,} bytes (CHURN_MAX_BODY_BYTES): send fewer customers per request"
        await send_json(send, 413, {"error": message, "detail": []}, [(b"connection", b"close")])


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _settings_key() -> str | None:
    return load_settings().resolved_api_key()


def route_template(routes: list[BaseRoute], scope: Scope) -> str | None:
    """The template of the route that serves a request (``/ui/api/customers/{customer_id}``).

    Args:
        routes: the app's routes (mounts are followed into their own routes).
        scope: the request's ASGI scope.

    Returns:
        The template, or None when no route serves the path (a wrong method still names its route).
    """
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            if not route.routes:
                return route.path + "/{path}"
            inner = route_template(route.routes, {**scope, **child})
            if inner is not None:
                return route.path + inner
            continue
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", str(getattr(route, "path", UNMATCHED)))
    return None


class _RestorePath:
    """Give the inner app the request's own path back (the metrics middleware saw the template)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if RAW_PATH in scope:
            scope = {k: v for k, v in scope.items() if k != RAW_PATH} | {"path": scope[RAW_PATH]}
        await self.app(scope, receive, send)


class RouteLabelledMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics with the route template as the ``endpoint`` label.

    BentoML labels by ``scope["path"]``: one series per customer id looked up and per random path
    tried. This middleware shows it the template instead (``unmatched`` when no route serves the
    path) and hands the real path on to the app.
    """

    def __init__(self, app: ASGIApp, namespace: str = "bentoml_runner", skip_paths: Sequence[str] = ("/metrics", "/healthz", "/livez", "/readyz")) -> None:
        super().__init__(_RestorePath(app), namespace=namespace, skip_paths=skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router = scope.get("app")
        if scope["type"] == "http" and router is not None:
            template = route_template(list(getattr(router, "routes", [])), scope) or UNMATCHED
            scope = {**scope, "path": template, RAW_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


def label_metrics_by_route() -> None:
    """Make the service's app use :class:`RouteLabelledMetrics` (BentoML imports the class when it builds the app)."""
    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics  # type: ignore[misc]
