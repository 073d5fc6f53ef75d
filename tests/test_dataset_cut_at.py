"""Opening the data as of T: nothing dated on or after T is read, validation included.

A malformed row dated after T (an amount that is not a number, a duplicated order id) must not
stop the features or the training as of T; the same row dated before T is still reported, and a
date the engine cannot parse always reaches validation. Every store is checked: a CSV folder
(all text), a DuckDB file and PostgreSQL (typed columns), and PostgreSQL with text columns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from test_contract import good_tables

from features.dataset import CRMDataset, DataError, _split_pg_url, data_end_date, open_dataset, write_dataset
from features.sample_data import generate_sample
from features.snapshot import build_snapshot

CHURN = Path(sys.executable).with_name("churn")
END = date(2025, 12, 31)
T = date(2025, 9, 1)
AFTER_T = "2025-10-15"
BEFORE_T = "2025-03-10"


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return generate_sample(300, years=2, seed=4, end=END)


def _order(order_id: str, customer_id: str, day: str, amount: str) -> pd.DataFrame:
    return pd.DataFrame({"order_id": [order_id], "customer_id": [customer_id], "order_date": [day], "amount": [amount]})


def _csv_folder(tables: dict[str, pd.DataFrame], folder: Path, extra_orders: pd.DataFrame) -> Path:
    """``tables`` as a CSV folder, with ``extra_orders`` (text, possibly malformed) appended to orders.csv."""
    write_dataset(folder, tables, file_format="csv")
    extra_orders.to_csv(folder / "orders.csv", mode="a", header=False, index=False)
    return folder


def _with_order(sample: dict[str, pd.DataFrame], extra: pd.DataFrame) -> pd.DataFrame:
    """The orders.csv columns in their order, the extra rows filled out."""
    return extra.reindex(columns=list(sample["orders"].columns))


def _churn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHURN, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def test_features_as_of_ignore_a_malformed_order_after_it(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    customer = str(sample["orders"]["customer_id"].iloc[0])
    folder = _csv_folder(sample, tmp_path / "crm", _with_order(sample, _order("BAD1", customer, AFTER_T, "abc")))
    out = tmp_path / "snapshot.csv"
    done = _churn("features", "--data", str(folder), "--as-of", T.isoformat(), "--out", str(out))
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(out)
    want = build_snapshot(CRMDataset.from_frames(sample, as_of=END), T)
    assert len(got) == len(want) > 100
    assert list(got.columns) == list(want.columns)
    assert sorted(got["customer_id"].astype(str)) == sorted(want["customer_id"])


def test_features_as_of_report_the_same_order_before_it(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    customer = str(sample["orders"]["customer_id"].iloc[0])
    folder = _csv_folder(sample, tmp_path / "crm", _with_order(sample, _order("BAD1", customer, BEFORE_T, "abc")))
    done = _churn("features", "--data", str(folder), "--as-of", T.isoformat(), "--out", str(tmp_path / "s.csv"))
    assert done.returncode == 2
    assert "table orders, column amount: 1 row(s) with a value that is not a number" in done.stderr
    assert "order_id=BAD1" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_as_of_ignores_malformed_and_duplicated_orders_after_it(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    customer = str(sample["orders"]["customer_id"].iloc[0])
    taken = str(sample["orders"]["order_id"].iloc[0])
    extra = pd.concat([_order("BAD1", customer, AFTER_T, "abc"), _order(taken, customer, AFTER_T, "10")])
    folder = _csv_folder(sample, tmp_path / "crm", _with_order(sample, extra))
    env = {
        "CHURN_TRACKING_URI": f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}",
        "CHURN_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    done = _churn("train", "--data", str(folder), "--as-of", T.isoformat(), "--trials", "1", "--timeout", "10", env=env)
    assert done.returncode == 0, done.stderr
    failed = _churn("train", "--data", str(folder), "--trials", "1", "--timeout", "10", env=env)
    assert failed.returncode == 2
    assert "table orders, column amount" in failed.stderr and "table orders, column order_id" in failed.stderr


def _orders_with(tables: dict[str, pd.DataFrame], *extra: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = dict(tables)
    out["orders"] = pd.concat([tables["orders"], *extra], ignore_index=True)
    return out


AS_OF = date(2024, 5, 1)  # within good_tables(): o4 (2024-04-01) is before it


@pytest.mark.parametrize("store", ["duckdb", "postgres"])
def test_duplicated_order_id_after_cut_at_is_not_read(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location = tmp_path / "crm.duckdb" if store == "duckdb" else request.getfixturevalue("pg_url")
    write_dataset(location, _orders_with(good_tables(), _order("o1", "c1", "2024-05-20", "30")))
    ds = open_dataset(location, as_of=AS_OF, cut_at=AS_OF)
    assert sorted(ds.table("orders").order_id.execute()) == ["o1", "o2", "o3", "o4"]
    assert ds.report is not None and ds.report.rows_read["orders"] == 4
    ds.close()
    with pytest.raises(DataError, match=r"table orders, column order_id: 2 row\(s\) with a duplicated id"):
        open_dataset(location, as_of=date(2024, 6, 1), cut_at=date(2024, 6, 1))


@pytest.mark.parametrize("store", ["duckdb", "postgres"])
def test_a_malformed_line_of_an_order_after_cut_at_is_not_read(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location = tmp_path / "crm.duckdb" if store == "duckdb" else request.getfixturevalue("pg_url")
    tables = _orders_with(good_tables(), _order("o8", "c1", "2024-05-20", "30"))
    late_line = pd.DataFrame({"order_id": ["o8"], "product_id": [None], "quantity": ["lots"], "amount": [30.0], "category": ["tea"]})
    tables["order_lines"] = pd.concat([tables["order_lines"], late_line], ignore_index=True)
    write_dataset(location, tables)
    ds = open_dataset(location, as_of=AS_OF, cut_at=AS_OF)
    assert ds.report is not None and ds.report.rows_read["order_lines"] == len(good_tables()["order_lines"])
    assert sorted(ds.table("order_lines").order_id.execute()) == ["o1", "o1", "o2", "o3", "o4"]
    ds.close()
    with pytest.raises(DataError, match=r"table order_lines, column product_id: 1 row\(s\) empty"):
        open_dataset(location, as_of=date(2024, 6, 1), cut_at=date(2024, 6, 1))


def test_unparseable_date_reaches_validation_from_a_csv_folder(tmp_path: Path) -> None:
    folder = _csv_folder(good_tables(), tmp_path / "crm", _order("o9", "c1", "2024-13-45", "5"))
    with pytest.raises(DataError, match="table orders, column order_date: 1 row\\(s\\) with a date that cannot be parsed"):
        open_dataset(folder, as_of=AS_OF, cut_at=AS_OF)


def _postgres_text_tables(pg_url: str, tables: dict[str, pd.DataFrame]) -> None:
    """Write ``tables`` to PostgreSQL with every column as text, the way a raw export lands."""
    url, schema = _split_pg_url(pg_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for name, frame in tables.items():
            columns = ", ".join(f'"{c}" text' for c in frame.columns)
            conn.execute(f'CREATE TABLE "{schema}"."{name}" ({columns})')
            marks = ", ".join(["%s"] * len(frame.columns))
            rows = [tuple(None if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)]
            conn.cursor().executemany(f'INSERT INTO "{schema}"."{name}" VALUES ({marks})', rows)


@pytest.mark.postgres
def test_postgres_text_columns_are_cut_in_the_query(pg_url: str) -> None:
    later = [_order("o8", "c1", "2024-05-02", "abc"), _order("o9", "c1", "2024-06-30 08:00:00", "1")]
    _postgres_text_tables(pg_url, _orders_with(good_tables(), *later))
    ds = open_dataset(pg_url, as_of=AS_OF, cut_at=AS_OF)
    assert sorted(ds.table("orders").order_id.execute()) == ["o1", "o2", "o3", "o4"]
    ds.close()
    with pytest.raises(DataError, match="table orders, column amount: 1 row\\(s\\) with a value that is not a number"):
        open_dataset(pg_url, as_of=date(2024, 6, 1), cut_at=date(2024, 6, 1))


@pytest.mark.postgres
def test_postgres_text_date_the_engine_cannot_parse_reaches_validation(pg_url: str) -> None:
    _postgres_text_tables(pg_url, _orders_with(good_tables(), _order("o9", "c1", "2024-02-30", "5")))
    with pytest.raises(DataError, match="table orders, column order_date: 1 row\\(s\\) with a date that cannot be parsed"):
        open_dataset(pg_url, as_of=AS_OF, cut_at=AS_OF)


def test_cut_at_reads_what_was_known_then(tmp_path: Path) -> None:
    tables = good_tables()
    tables["customers"].loc[2, "created_at"] = None  # no creation date: kept
    tables["customers"] = pd.concat(
        [tables["customers"], pd.DataFrame({"customer_id": ["c4"], "created_at": ["2024-05-01"]})], ignore_index=True
    )
    tables["complaints"].loc[0, "resolved_at"] = "2024-05-03"
    write_dataset(tmp_path / "crm", tables, file_format="csv")
    ds = open_dataset(tmp_path / "crm", as_of=date(2024, 6, 1), cut_at=AS_OF)
    assert ds.as_of == AS_OF and ds.location == str(tmp_path / "crm")
    assert sorted(ds.table("customers").customer_id.execute()) == ["c1", "c2", "c3"]
    assert ds.table("complaints").resolved_at.execute().isna().all()  # resolved after T: open at T
    assert ds.report is not None and ds.report.rows_read["customers"] == 3


def test_data_end_date_skips_dates_the_engine_cannot_read(tmp_path: Path) -> None:
    folder = _csv_folder(good_tables(), tmp_path / "crm", _order("o9", "c1", "someday", "5"))
    assert data_end_date(folder) == date(2024, 4, 2)


def test_a_malformed_history_row_after_cut_at_is_not_read(tmp_path: Path) -> None:
    tables = good_tables()
    later = pd.DataFrame({"customer_id": ["c1"], "column": ["credit_limit"], "value": ["lots"], "valid_from": ["2024-05-10"]})
    tables["customer_history"] = pd.concat([tables["customer_history"], later], ignore_index=True)
    write_dataset(tmp_path / "crm", tables, file_format="csv")
    ds = open_dataset(tmp_path / "crm", as_of=date(2024, 6, 1), cut_at=AS_OF)
    assert ds.table("customer_history").count().execute() == 4
    limits = ds.table("customers").to_pandas().set_index("customer_id")["credit_limit"]
    assert limits["c1"] == 5000.0 and pd.isna(limits["c2"])  # c2's limit has no history: unknown
    with pytest.raises(DataError, match="table customer_history, column value: 1 row\\(s\\) with a credit_limit that is not a number"):
        open_dataset(tmp_path / "crm", as_of=date(2024, 6, 1), cut_at=date(2024, 6, 1))
