"""The service's ASGI middlewares on a tiny Starlette app: key check, JSON bodies, body limit, route labels."""

from __future__ import annotations

import warnings

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from serving.middleware import ApiKeyMiddleware, BodyLimitMiddleware, JsonBodyMiddleware, key_matches, route_template

KEY = "s3cret-Schlüssel-钥匙"


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body), "content_type": request.headers.get("content-type"), "path": request.url.path})


async def hello(request: Request) -> Response:
    return PlainTextResponse("ok")


def inner_app() -> Starlette:
    page = Starlette(routes=[Route("/", hello), Route("/api/customers/{customer_id:path}", echo), Mount("/static", app=Starlette())])
    return Starlette(routes=[Route("/predict", echo, methods=["POST"]), Route("/healthz", hello), Mount("/ui", app=page)])


def _headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


# ---- the key


@pytest.mark.parametrize(
    ("pairs", "ok"),
    [
        ((("Authorization", f"Bearer {KEY}"),), True),
        ((("X-API-Key", KEY),), True),
        ((("Authorization", "Bearer wrong"), ("X-API-Key", KEY)), True),
        ((("X-API-Key", KEY), ("Authorization", "Bearer wrong")), True),
        ((("X-API-Key", "wrong"), ("Authorization", f"Bearer {KEY}")), True),
        ((("Authorization", f"bearer   {KEY}  "),), True),
        ((("Authorization", KEY),), False),
        ((("Authorization", f"Basic {KEY}"),), False),
        ((("X-API-Key", KEY[:-1]),), False),
        ((("X-API-Key", ""),), False),
        ((), False),
    ],
    ids=["bearer", "x-api-key", "wrong-bearer-right-x", "right-x-wrong-bearer", "wrong-x-right-bearer", "spacing", "no-scheme", "basic", "prefix", "empty", "none"],
)
def test_either_header_carries_the_key_whatever_the_other_says(pairs: tuple[tuple[str, str], ...], ok: bool) -> None:
    assert key_matches(_headers(*pairs), KEY.encode()) is ok


def test_no_configured_key_matches_nothing() -> None:
    assert not key_matches(_headers(("X-API-Key", "")), b"")
    assert not key_matches(_headers(("X-API-Key", "x")), None)


def test_the_key_middleware_guards_all_but_the_open_paths() -> None:
    client = TestClient(ApiKeyMiddleware(inner_app(), key=KEY))
    assert client.get("/healthz").status_code == 200
    assert client.get("/ui/").status_code == 200
    refused = client.post("/predict", json={})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert "X-API-Key" in refused.json()["error"]
    utf8 = {"X-API-Key": KEY.encode()}  # a client sends a non-ASCII key UTF-8 encoded
    assert client.post("/predict", json={}, headers=utf8).status_code == 200
    assert client.get("/ui/api/customers/C1", headers={"Authorization": "Bearer wrong", **utf8}).status_code == 200


def test_json_bodies_are_read_whatever_the_declared_type() -> None:
    client = TestClient(JsonBodyMiddleware(inner_app()))
    answer = client.post("/predict", content=b'{"a": 1}', headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.json()["content_type"] == "application/json"


# ---- the body limit


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_the_body_limit(chunked: bool) -> None:
    client = TestClient(BodyLimitMiddleware(inner_app(), max_bytes=1000))

    def send(size: int) -> Response:
        body = b"x" * size
        return client.post("/predict", content=iter([body[:10], body[10:]]) if chunked else body)

    assert send(1000).json()["length"] == 1000, "a body at the limit reaches the app whole"
    refused = send(1001)
    assert refused.status_code == 413 and "1,000 bytes" in refused.json()["error"]


def test_a_malformed_content_length_is_refused() -> None:
    client = TestClient(BodyLimitMiddleware(inner_app(), max_bytes=1000))
    assert client.post("/predict", content=b"{}", headers={"Content-Length": "abc"}).status_code in (400, 413)


# ---- route labels


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/predict", "/predict"),
        ("GET", "/predict", "/predict"),
        ("GET", "/ui/api/customers/C000123", "/ui/api/customers/{customer_id}"),
        ("GET", "/ui/api/customers/a/b", "/ui/api/customers/{customer_id}"),
        ("GET", "/ui/static/app.js", "/ui/static/{path}"),
        ("GET", "/ui/", "/ui/"),
        ("GET", "/ui/nope", None),
        ("GET", "/C000123", None),
    ],
)
def test_route_template(method: str, path: str, template: str | None) -> None:
    app = inner_app()
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    assert route_template(app.routes, scope) == template
