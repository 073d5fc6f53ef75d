"""Dates as CRM exports write them: day or month first decided per column, said or refused, one reader for all."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features.dataset import DataError, data_end_date, open_dataset, validate_frames
from features.dates import read_dates
from features.importer import import_transactions

AS_OF = date(2025, 1, 1)


def _read(values: list[str | None], dayfirst: bool | None = None, notes: list[str] | None = None) -> list[date | None]:
    days = read_dates(pd.Series(values, dtype="string"), label="table t, column d", setting="--dayfirst or --monthfirst", dayfirst=dayfirst, notes=notes)
    return [None if pd.isna(v) else v.date() for v in days]


def test_day_first_column_is_read_day_first_throughout_and_said() -> None:
    notes: list[str] = []
    got = _read(["03/04/2024", "25/04/2024 10:15", "1.5.24", None, ""], notes=notes)
    assert got == [date(2024, 4, 3), date(2024, 4, 25), date(2024, 5, 1), None, None]
    assert notes == ["table t, column d: dates read day first, as '25/04/2024 10:15' shows (--dayfirst or --monthfirst to say otherwise)"]


def test_month_first_column_is_read_month_first() -> None:
    notes: list[str] = []
    assert _read(["03/04/2024", "04/25/2024"], notes=notes) == [date(2024, 3, 4), date(2024, 4, 25)]
    assert "month first" in notes[0] and "'04/25/2024'" in notes[0]


def test_a_column_no_row_decides_is_refused_naming_column_and_setting() -> None:
    with pytest.raises(DataError, match=r"table t, column d: dates like '03/04/2024' could be day or month first .* say --dayfirst or --monthfirst"):
        _read(["03/04/2024", "05/06/2024"])
    assert _read(["03/04/2024", "05/06/2024"], dayfirst=True) == [date(2024, 4, 3), date(2024, 6, 5)]
    assert _read(["03/04/2024", "05/06/2024"], dayfirst=False) == [date(2024, 3, 4), date(2024, 5, 6)]


def test_a_column_mixing_both_orders_is_refused() -> None:
    with pytest.raises(DataError, match=r"mix day first \(e\.g\. '25/04/2024'\) and month first \(e\.g\. '04/25/2024'\)"):
        _read(["25/04/2024", "04/25/2024"])
    assert _read(["25/04/2024", "04/25/2024"], dayfirst=True) == [date(2024, 4, 25), None]


def test_iso_year_first_spelled_and_two_digit_years() -> None:
    got = _read(["2024-04-03", "2024-04-03T23:30:00", "2024/04/03", "03-Apr-2024", "3 April 2024", "20240403", "31/12/99", "2024-02-30", "soon"])
    assert got == [date(2024, 4, 3)] * 6 + [date(1999, 12, 31), None, None]


def test_mixed_time_zones_are_read_as_the_day_written() -> None:
    notes: list[str] = []
    got = _read(["2024-04-03T23:30:00+08:00", "2024-04-04T01:00:00-05:00", "2024-04-05 10:00Z", "2024-04-06"], notes=notes)
    assert got == [date(2024, 4, 3), date(2024, 4, 4), date(2024, 4, 5), date(2024, 4, 6)]
    assert "time zones dropped" in notes[0]


def _invoices_day_first(n: int = 80, seed: int = 3) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Invoices due 30 days after issue, exported as dd/mm/yyyy; and the true dates."""
    rng = np.random.default_rng(seed)
    issued = [date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 300, n)]
    truth = pd.DataFrame({"invoice_id": [f"i{i}" for i in range(n)], "issued_at": issued, "due_at": [d + timedelta(days=30) for d in issued]})
    invoices = truth.assign(
        customer_id="c1", amount=100.0,
        issued_at=[d.strftime("%d/%m/%Y") for d in truth["issued_at"]], due_at=[d.strftime("%d/%m/%Y") for d in truth["due_at"]],
    )
    orders = pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"], "order_date": ["15/03/2024"], "amount": [10.0]})
    return {"customers": pd.DataFrame({"customer_id": ["c1"]}), "orders": orders, "invoices": invoices}, truth


def test_day_first_invoices_validate_with_their_true_dates() -> None:
    frames, truth = _invoices_day_first()
    clean, report = validate_frames(frames, as_of=AS_OF)
    assert report.problems == []
    got = clean["invoices"].set_index("invoice_id")
    want = truth.set_index("invoice_id")
    assert (got["issued_at"].dt.date == want["issued_at"]).all()
    assert (got["due_at"].dt.date == want["due_at"]).all()
    assert any("table invoices, column issued_at: dates read day first" in n for n in report.notes)


def test_importer_and_validation_read_a_column_alike(tmp_path: Path) -> None:
    frames, truth = _invoices_day_first(n=40, seed=5)
    ledger = tmp_path / "ledger.csv"
    pd.DataFrame({"customer": frames["invoices"]["invoice_id"], "when": frames["invoices"]["issued_at"], "amount": 1.0}).to_csv(ledger, index=False)
    imported = import_transactions(ledger, customer_col="customer", date_col="when", amount_col="amount")
    by_importer = imported.orders.set_index("customer_id")["order_date"].dt.date.sort_index()
    clean, _ = validate_frames({"orders": frames["invoices"].rename(columns={"invoice_id": "order_id", "issued_at": "order_date"})}, as_of=AS_OF)
    by_validation = clean["orders"].set_index("order_id")["order_date"].dt.date.sort_index()
    assert by_importer.tolist() == by_validation.tolist() == truth.set_index("invoice_id")["issued_at"].sort_index().tolist()
    assert any("day first" in n for n in imported.report.notes)
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("customer,when,amount\n1,03/04/2024,1\n2,05/06/2024,1\n")
    with pytest.raises(DataError, match=r"date column 'when': dates like '03/04/2024' could be day or month first .* --dayfirst or --monthfirst"):
        import_transactions(ambiguous, customer_col="customer", date_col="when", amount_col="amount")


def test_cli_refuses_an_undecided_column_and_reads_it_with_the_setting(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,customer_id,order_date,amount\no1,c1,03/04/2024,10\no2,c1,05/04/2024,5\n")
    refused = CliRunner().invoke(app, ["validate", "--data", str(folder), "--as-of", "2025-01-01"])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit)
    assert "table orders, column order_date: dates like '03/04/2024' could be day or month first" in said and "--dayfirst or --monthfirst" in said
    copy = tmp_path / "clean.duckdb"
    read = CliRunner().invoke(app, ["validate", "--data", str(folder), "--as-of", "2025-01-01", "--dayfirst", "--copy-to", str(copy)])
    assert read.exit_code == 0, read.output
    dates = open_dataset(copy).table("orders").order_date.to_pandas()
    assert sorted(d.date() for d in dates) == [date(2024, 4, 3), date(2024, 4, 5)]


def test_postgres_text_dates_day_first_are_read_by_the_same_rules(pg_url: str) -> None:
    url, schema = pg_url.split("?schema=")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".orders (order_id text, customer_id text, order_date text, amount double precision)')
        conn.execute(f"INSERT INTO \"{schema}\".orders VALUES ('o1', 'c1', '03/04/2024', 10), ('o2', 'c1', '25/04/2024', 5)")
    ds = open_dataset(pg_url, as_of=AS_OF)
    got = ds.table("orders").order_by("order_id").order_date.to_pandas()
    assert [d.date() for d in got] == [date(2024, 4, 3), date(2024, 4, 25)]
    assert ds.report is not None and any("day first" in n for n in ds.report.notes)


def test_the_end_of_day_first_data_is_read_by_the_same_rules(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,customer_id,order_date,amount\no1,c1,03/04/2024,10\no2,c1,25/03/2024,5\no3,c1,not a date,1\n")
    assert data_end_date(folder) == date(2024, 4, 4)
