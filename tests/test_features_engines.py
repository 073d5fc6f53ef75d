"""The same features on DuckDB and on PostgreSQL: one set of Ibis expressions, two engines, equal snapshots.

PostgreSQL gets a fresh schema per test (dropped afterwards, see ``conftest.pg_url``); in CI an
unreachable server fails the test instead of skipping it.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from test_features_values import T as TINY_T
from test_features_values import rhythm_orders, tiny_tables

from features.dataset import open_dataset, write_dataset
from features.labels import build_training_set
from features.sample_data import generate_sample
from features.snapshot import build_snapshot

pytestmark = pytest.mark.postgres


def _both(frames: dict[str, pd.DataFrame], tmp_path: Path, pg_url: str):
    duck_path = tmp_path / "crm.duckdb"
    write_dataset(duck_path, frames)
    write_dataset(pg_url, frames)
    return open_dataset(duck_path, validate=False), open_dataset(pg_url, validate=False)


def _assert_same(duck: pd.DataFrame, pg: pd.DataFrame) -> None:
    assert list(duck.columns) == list(pg.columns)
    pd.testing.assert_frame_equal(
        duck.sort_values("customer_id", ignore_index=True),
        pg.sort_values("customer_id", ignore_index=True),
        check_exact=False,
        rtol=1e-9,
        atol=1e-9,
    )


def test_tiny_tables_give_the_same_snapshot(tmp_path: Path, pg_url: str) -> None:
    duck, pg = _both(tiny_tables(), tmp_path, pg_url)
    assert pg.kind == "postgres"
    _assert_same(build_snapshot(duck, TINY_T), build_snapshot(pg, TINY_T))


def test_rhythm_edge_cases_give_the_same_snapshot(tmp_path: Path, pg_url: str) -> None:
    duck, pg = _both({"orders": rhythm_orders()}, tmp_path, pg_url)
    _assert_same(build_snapshot(duck, TINY_T), build_snapshot(pg, TINY_T))
    short_history = TINY_T - timedelta(days=100)  # the data start 266 days before it: no season last year
    snapshot = build_snapshot(duck, short_history)
    assert snapshot["orders_same_season_last_year"].isna().all() and snapshot["silence_percentile"].notna().any()
    _assert_same(snapshot, build_snapshot(pg, short_history))


def test_generated_sample_gives_the_same_snapshots_and_labels(tmp_path: Path, pg_url: str) -> None:
    duck, pg = _both(generate_sample(300, years=2, seed=5), tmp_path, pg_url)
    snapshot = build_snapshot(duck, date(2025, 7, 15))
    assert len(snapshot) > 100 and snapshot["abc_class"].nunique() == 3
    _assert_same(snapshot, build_snapshot(pg, date(2025, 7, 15)))
    dates = [date(2025, 1, 1), date(2025, 9, 1)]
    _assert_same(build_training_set(duck, dates=dates), build_training_set(pg, dates=dates))
