"""Shared fixtures: a real PostgreSQL schema per test session, no phoning home."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PG_BASE = os.environ.get("CHURN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_BASE, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as err:  # noqa: BLE001 - any failure means unreachable
        return str(err)


@pytest.fixture(scope="session")
def pg_url_factory() -> Iterator:
    """Make URLs of fresh PostgreSQL schemas (dropped at the end). In CI an unreachable server fails."""
    problem = _pg_reachable()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_BASE} is unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL at {PG_BASE} is unreachable: {problem}")
    import psycopg

    made: list[str] = []

    def make(prefix: str = "t") -> str:
        schema = f"churn_{prefix}_{uuid.uuid4().hex[:10]}"
        made.append(schema)
        return f"{PG_BASE}?schema={schema}"

    yield make
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture()
def pg_url(pg_url_factory) -> str:
    """A fresh PostgreSQL schema URL for one test."""
    return pg_url_factory()
