"""The CRM data contract: every kind of bad input gets a clear message, quarantine loses nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.dataset import CRMDataset, DataError, open_dataset, validate_frames, write_dataset

AS_OF = date(2024, 6, 1)


def good_tables() -> dict[str, pd.DataFrame]:
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "name": ["Acme Ltd", "Bolt GmbH", "Cask & Co"],
                "channel": ["direct", "agent", "retail"],
                "settlement_terms": ["credit", "cash", "prepaid"],
                "credit_limit": [5000.0, None, None],
                "created_at": ["2023-01-05", "2023-02-01", "2023-03-01"],
            }
        ),
        "orders": pd.DataFrame(
            {
                "order_id": ["o1", "o2", "o3", "o4"],
                "customer_id": ["c1", "c1", "c2", "c3"],
                "order_date": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"],
                "amount": [100.0, -20.0, 50.0, 75.5],
            }
        ),
        "order_lines": pd.DataFrame(
            {
                "order_id": ["o1", "o1", "o2", "o3", "o4"],
                "product_id": ["p1", "p2", "p1", "p3", "p1"],
                "quantity": [2.0, 1.0, -1.0, 5.0, 3.0],
                "amount": [60.0, 40.0, -20.0, 50.0, 75.5],
                "category": ["tea", "coffee", "tea", None, "tea"],
            }
        ),
        "complaints": pd.DataFrame(
            {
                "complaint_id": ["k1"],
                "customer_id": ["c1"],
                "opened_at": ["2024-02-03"],
                "resolved_at": [None],
                "severity": ["high"],
                "category": ["delivery"],
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": ["i1", "i2"],
                "customer_id": ["c1", "c2"],
                "issued_at": ["2024-01-01", "2024-03-01"],
                "due_at": ["2024-01-31", "2024-03-01"],
                "amount": [100.0, 50.0],
                "paid_at": ["2024-02-10", None],
            }
        ),
        "contacts": pd.DataFrame({"customer_id": ["c1", "c3"], "contacted_at": ["2024-01-15", "2024-03-15"], "kind": ["call", "visit"]}),
        "customer_history": pd.DataFrame(
            {
                "customer_id": ["c1", "c1", "c2", "c2"],
                "column": ["credit_limit", "credit_limit", "settlement_terms", "segment"],
                "value": ["3000", "5000", "cash", "wholesale"],
                "valid_from": ["2023-01-05", "2024-03-01", "2023-02-01", "2023-02-01"],
            }
        ),
    }


def test_good_tables_pass_with_contract_types() -> None:
    clean, report = validate_frames(good_tables(), as_of=AS_OF)
    assert report.problems == []
    assert report.rows_read == report.rows_loaded
    assert pd.api.types.is_datetime64_any_dtype(clean["orders"]["order_date"])
    assert clean["orders"]["amount"].dtype == "float64"


def _error(tables: dict[str, pd.DataFrame]) -> str:
    with pytest.raises(DataError) as info:
        validate_frames(tables, as_of=AS_OF, source="crm")
    return str(info.value)


def test_missing_required_column_names_table_and_column() -> None:
    tables = good_tables()
    tables["orders"] = tables["orders"].drop(columns=["order_date"])
    msg = _error(tables)
    assert "table orders is missing required column(s) order_date" in msg
    assert "order_id, customer_id, amount" in msg  # says what it has


def test_missing_orders_table() -> None:
    tables = good_tables()
    del tables["orders"]
    assert "has no orders table" in _error(tables)


def test_unparseable_date() -> None:
    tables = good_tables()
    tables["orders"].loc[2, "order_date"] = "31/02/2024x"
    msg = _error(tables)
    assert "table orders, column order_date: 1 row(s) with a date that cannot be parsed" in msg
    assert "order_id=o3" in msg and "31/02/2024x" in msg


def test_negative_invoice_amount() -> None:
    tables = good_tables()
    tables["invoices"].loc[0, "amount"] = -5.0
    msg = _error(tables)
    assert "table invoices, column amount: 1 row(s) negative" in msg
    assert "invoice_id=i1" in msg


def test_due_date_before_issue_date() -> None:
    tables = good_tables()
    tables["invoices"].loc[1, "due_at"] = "2024-02-01"
    msg = _error(tables)
    assert "table invoices, column due_at: 1 row(s) with due_at before issued_at" in msg
    assert "invoice_id=i2" in msg


def test_order_for_unknown_customer() -> None:
    tables = good_tables()
    tables["orders"].loc[3, "customer_id"] = "c99"
    msg = _error(tables)
    assert "table orders, column customer_id: 1 row(s) for a customer that is not in the customers table" in msg
    assert "c99" in msg


def test_duplicated_id() -> None:
    tables = good_tables()
    tables["orders"].loc[1, "order_id"] = "o1"
    msg = _error(tables)
    assert "table orders, column order_id: 2 row(s) with a duplicated id" in msg


def test_order_line_of_an_unknown_order() -> None:
    tables = good_tables()
    tables["order_lines"].loc[4, "order_id"] = "o99"
    msg = _error(tables)
    assert "table order_lines, column order_id: 1 row(s) for an order that is not in the orders table" in msg
    assert "order_id=o99" in msg


def test_order_line_taking_goods_back_on_a_sale() -> None:
    tables = good_tables()
    tables["order_lines"].loc[3, ["quantity", "amount"]] = [-5.0, -50.0]
    msg = _error(tables)
    assert "table order_lines, column quantity: 1 row(s) negative on an order that is not a return" in msg
    assert "book returns as their own negative order" in msg


def test_order_line_amount_against_its_quantity() -> None:
    tables = good_tables()
    tables["order_lines"].loc[0, "amount"] = -60.0
    msg = _error(tables)
    assert "table order_lines, column amount: 1 row(s) of the opposite sign to the quantity" in msg


def test_order_line_without_product_or_with_a_word_for_quantity() -> None:
    tables = good_tables()
    tables["order_lines"].loc[1, "product_id"] = None
    tables["order_lines"]["quantity"] = tables["order_lines"]["quantity"].astype(object)
    tables["order_lines"].loc[2, "quantity"] = "a few"
    msg = _error(tables)
    assert "table order_lines, column product_id: 1 row(s) empty (the column is required)" in msg
    assert "table order_lines, column quantity: 1 row(s) with a value that is not a number" in msg


def test_date_in_the_future_of_as_of() -> None:
    tables = good_tables()
    tables["contacts"].loc[1, "contacted_at"] = "2024-07-01"
    msg = _error(tables)
    assert "table contacts, column contacted_at: 1 row(s) dated after 2024-06-01" in msg


def test_value_outside_choices() -> None:
    tables = good_tables()
    tables["complaints"].loc[0, "severity"] = "urgent"
    msg = _error(tables)
    assert "table complaints, column severity: 1 row(s) with a value that is not one of low, medium, high" in msg


def test_message_tells_what_to_do() -> None:
    tables = good_tables()
    tables["orders"]["amount"] = ["12,50 EUR", "-20", "50", "75.5"]
    msg = _error(tables)
    assert "column amount: 1 row(s) with a value that is not a number" in msg
    assert "--on-error quarantine" in msg


def test_customer_history_missing_column_names_table_and_column() -> None:
    tables = good_tables()
    tables["customer_history"] = tables["customer_history"].drop(columns=["valid_from"])
    assert "table customer_history is missing required column(s) valid_from" in _error(tables)


def test_customer_history_of_an_attribute_that_does_not_change() -> None:
    tables = good_tables()
    tables["customer_history"].loc[3, "column"] = "name"
    msg = _error(tables)
    assert "table customer_history, column column: 1 row(s) with a value that is not one of credit_limit, settlement_terms, segment, channel, region" in msg
    assert "customer_id=c2" in msg and "column=name" in msg


def test_customer_history_unparseable_valid_from() -> None:
    tables = good_tables()
    tables["customer_history"].loc[1, "valid_from"] = "since March"
    msg = _error(tables)
    assert "table customer_history, column valid_from: 1 row(s) with a date that cannot be parsed" in msg
    assert "since March" in msg


def test_customer_history_twice_on_one_day() -> None:
    tables = good_tables()
    tables["customer_history"].loc[0, "valid_from"] = "2024-03-01"
    msg = _error(tables)
    assert "table customer_history, column valid_from: 2 row(s) with the same customer_id, column, valid_from as another row" in msg


def test_customer_history_value_must_fit_its_attribute() -> None:
    tables = good_tables()
    tables["customer_history"].loc[0, "value"] = "lots"
    tables["customer_history"].loc[2, "value"] = "barter"
    msg = _error(tables)
    assert "table customer_history, column value: 1 row(s) with a credit_limit that is not a number of 0 or more" in msg
    assert "table customer_history, column value: 1 row(s) with a settlement_terms that is not one of cash, prepaid, credit" in msg


def test_customer_history_of_an_unknown_customer() -> None:
    tables = good_tables()
    tables["customer_history"].loc[3, "customer_id"] = "c99"
    assert "table customer_history, column customer_id: 1 row(s) for a customer that is not in the customers table" in _error(tables)


def test_customer_history_bad_rows_are_quarantined(tmp_path: Path) -> None:
    tables = good_tables()
    tables["customer_history"].loc[0, "valid_from"] = "2024-03-01"
    tables["customer_history"].loc[2, "column"] = "mood"
    write_dataset(tmp_path / "crm", tables, file_format="csv")
    ds = open_dataset(tmp_path / "crm", as_of=AS_OF, on_error="quarantine", max_quarantined_share=1.0)  # 3 of 4 rows are bad
    assert ds.table("customer_history").count().execute() == 1
    quarantined = pd.read_csv(tmp_path / "crm" / "quarantine" / "customer_history.csv")
    assert len(quarantined) == 3 and quarantined["problem"].str.contains("valid_from|column").all()


def _all_bad() -> dict[str, pd.DataFrame]:
    tables = good_tables()
    tables["orders"] = pd.concat(
        [
            tables["orders"],
            pd.DataFrame(
                {
                    "order_id": ["o5", "o6", "o1", "o7"],
                    "customer_id": ["c99", "c2", "c3", "c1"],
                    "order_date": ["2024-01-09", "not a date", "2024-01-10", "2030-01-01"],
                    "amount": [1.0, 2.0, 3.0, 4.0],
                }
            ),
        ],
        ignore_index=True,
    )
    tables["invoices"].loc[0, "amount"] = -1.0
    tables["invoices"].loc[1, "due_at"] = "2023-12-31"
    return tables


def test_quarantine_keeps_every_row(tmp_path: Path) -> None:
    tables = _all_bad()
    clean, report = validate_frames(tables, as_of=AS_OF, on_error="quarantine", quarantine_dir=tmp_path / "q", max_quarantined_share=1.0)
    for name, frame in tables.items():
        written = pd.read_csv(report.quarantine_files[name]) if name in report.quarantine_files else pd.DataFrame()
        assert len(clean[name]) + len(written) == len(frame), name
        assert report.rows_read[name] == len(frame)
    quarantined = pd.read_csv(report.quarantine_files["orders"])
    assert set(quarantined["order_id"]) == {"o1", "o5", "o6", "o7"}  # both duplicates of o1 go
    assert quarantined["problem"].str.len().gt(0).all()
    assert report.quarantined == {"orders": 5, "order_lines": 2, "invoices": 2}  # o1's lines go with it


def test_quarantine_through_open_dataset_uses_only_good_rows(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    for name, frame in _all_bad().items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    with pytest.raises(DataError, match="table orders"):
        open_dataset(folder, as_of=AS_OF)
    ds = open_dataset(folder, as_of=AS_OF, on_error="quarantine", max_quarantined_share=1.0)
    assert ds.table("orders").count().execute() == 3
    assert (folder / "quarantine" / "orders.csv").exists()
    assert ds.report is not None and ds.report.quarantined["orders"] == 5


@pytest.mark.parametrize("target", ["folder_parquet", "folder_csv", "duckdb", "postgres"])
def test_every_store_reads_back_the_same(target: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    location: str | Path
    fmt = "csv" if target == "folder_csv" else "parquet"
    if target.startswith("folder"):
        location = tmp_path / "crm"
    elif target == "duckdb":
        location = tmp_path / "crm.duckdb"
    else:
        location = request.getfixturevalue("pg_url")
    write_dataset(location, good_tables(), file_format=fmt)  # type: ignore[arg-type]
    ds = open_dataset(location, as_of=AS_OF)
    reference = CRMDataset.from_frames(good_tables(), as_of=AS_OF)
    assert set(ds.tables) == set(reference.tables)
    assert ds.fingerprint() == reference.fingerprint()
    for name, order in (("invoices", ["invoice_id"]), ("order_lines", ["order_id", "product_id"]), ("customer_history", ["customer_id", "column", "valid_from"])):
        got = ds.table(name).to_pandas().sort_values(order).reset_index(drop=True)
        want = reference.table(name).to_pandas().sort_values(order).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_cli_reports_bad_rows_without_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    write_dataset(folder, _all_bad(), file_format="csv")
    churn = Path(sys.executable).with_name("churn")
    failed = subprocess.run([churn, "validate", "--data", str(folder), "--as-of", "2024-06-01"], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    assert "table orders, column customer_id" in failed.stderr
    ok = subprocess.run(
        [churn, "validate", "--data", str(folder), "--as-of", "2024-06-01", "--on-error", "quarantine", "--max-quarantined-share", "1", "--copy-to", str(tmp_path / "clean.duckdb")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert (folder / "quarantine" / "orders.csv").exists()
    clean = open_dataset(tmp_path / "clean.duckdb", as_of=AS_OF)
    assert clean.table("orders").count().execute() == 3
