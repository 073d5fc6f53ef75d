"""The transactions import: file formats, aggregation, returns, dropped lines and clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from churn.importer_cli import import_command
from features.dataset import CRMDataset, DataError, open_dataset
from features.importer import BAD_DATE, NO_CUSTOMER, ONLINE_RETAIL_COLUMNS, ZERO_AMOUNT, import_transactions, normalise_ids

REAL_SLICE = Path(__file__).resolve().parent / "data" / "online_retail_head.parquet"
"""The first 10,000 lines of the UCI Online Retail log (see tests/data/README.md)."""


def _lines() -> pd.DataFrame:
    """Ten invoice lines: two invoices of customer 1, a cancellation, a line without customer, a free sample."""
    return pd.DataFrame(
        {
            "Invoice": ["A1", "A1", "A2", "C9", "A3", "A4", "A4", "A5", "A6", "A7"],
            "Customer": [1.0, 1.0, 1.0, 1.0, 2.0, None, None, 2.0, 3.0, 3.0],
            "When": ["2024-01-05 09:10", "2024-01-05 09:10", "2024-02-01 14:00", "2024-02-03 10:00", "2024-01-20 08:00",
                     "2024-01-21 08:00", "2024-01-21 08:00", "2024-03-01 11:00", "2024-03-02 12:00", "2024-03-09 12:00"],
            "Qty": [2, 1, 5, -1, 10, 3, 1, 4, 1, 2],
            "Price": [10.0, 5.0, 2.0, 10.0, 1.5, 1.0, 1.0, 0.0, 7.0, 7.0],
            "Country": ["France", "France", "France", "France", "Spain", "Spain", "Spain", "Spain", "Italy", "Spain"],
        }
    )


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_excel(path, index=False, sheet_name="lines")
    return path


def _synthetic_kwargs() -> dict[str, str]:
    return {"customer_col": "Customer", "date_col": "When", "order_col": "Invoice", "quantity_col": "Qty", "price_col": "Price", "country_col": "Country"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_invoice_lines_become_orders_in_every_format(tmp_path: Path, suffix: str) -> None:
    path = _write(_lines(), tmp_path / f"lines{suffix}")
    result = import_transactions(path, **_synthetic_kwargs())
    orders = result.orders.set_index("order_id")
    assert sorted(orders.index) == ["A1", "A2", "A3", "A6", "A7", "C9"]
    assert orders.loc["A1", "amount"] == pytest.approx(25.0)
    assert orders.loc["A1", "customer_id"] == "1"
    assert orders.loc["A1", "order_date"] == pd.Timestamp("2024-01-05")
    assert orders.loc["C9", "amount"] == pytest.approx(-10.0)
    report = result.report
    assert report.lines_read == 10
    assert report.dropped == {NO_CUSTOMER: 2, ZERO_AMOUNT: 1}
    assert report.lines_used == 7 and report.balanced
    assert report.orders == 6 and report.returns == 1 and report.customers == 3
    customers = result.customers.set_index("customer_id")
    assert customers.loc["1", "created_at"] == pd.Timestamp("2024-01-05")
    assert customers.loc["3", "region"] in ("Italy", "Spain")
    assert customers.loc["1", "region"] == "France"
    CRMDataset.from_frames(result.frames(), as_of=pd.Timestamp("2024-12-31").date())


def test_without_order_column_one_order_per_customer_and_day_with_returns_apart(tmp_path: Path) -> None:
    lines = pd.DataFrame(
        {
            "cust": ["7", "7", "7", "8"],
            "day": ["03/01/2024", "03/01/2024", "03/01/2024", "15/01/2024"],
            "amount": ["1.234,50", "10,00", "-5,00", "7,25"],
        }
    )
    path = tmp_path / "ledger.csv"
    lines.to_csv(path, index=False, sep=";")
    result = import_transactions(path, customer_col="cust", date_col="day", amount_col="amount")
    orders = result.orders.set_index("order_id")
    assert orders.loc["7/2024-01-03", "amount"] == pytest.approx(1244.5)
    assert orders.loc["7/2024-01-03/return", "amount"] == pytest.approx(-5.0)
    assert orders.loc["8/2024-01-15", "order_date"] == pd.Timestamp("2024-01-15")
    assert result.report.balanced and result.report.lines_used == 4


def test_customer_ids_exported_as_floats_become_integers() -> None:
    ids = normalise_ids(pd.Series(["12346.0", " 12347 ", "", None, "AB-1"]))
    assert ids.tolist()[:2] == ["12346", "12347"]
    assert ids.isna().tolist()[2:4] == [True, True]
    assert normalise_ids(pd.Series([12346.0, None])).tolist()[0] == "12346"


def test_a_few_unparseable_dates_are_dropped_and_counted(tmp_path: Path) -> None:
    lines = pd.concat([_lines()] * 4, ignore_index=True)
    lines["Invoice"] = [f"{inv}-{i // 10}" for i, inv in enumerate(lines["Invoice"])]
    lines.loc[4, "When"] = "not a date"
    path = _write(lines, tmp_path / "lines.csv")
    result = import_transactions(path, **_synthetic_kwargs(), max_bad_share=0.05)
    assert result.report.dropped[BAD_DATE] == 1
    assert "'not a date'" in result.report.examples[BAD_DATE][0]
    assert result.report.balanced


def test_missing_column_names_it_and_lists_the_file_columns(tmp_path: Path) -> None:
    path = _write(_lines().drop(columns="Price"), tmp_path / "lines.parquet")
    with pytest.raises(DataError) as err:
        import_transactions(path, **{**_synthetic_kwargs(), "customer_col": "customer"})
    message = str(err.value)
    assert "'Price' (--price-col)" in message
    assert "did you mean 'Customer'" in message
    assert "'Invoice', 'Customer', 'When', 'Qty', 'Country'" in message


def test_unparseable_date_column_is_an_error_with_examples(tmp_path: Path) -> None:
    lines = _lines().assign(When=["soon", "later", "tomorrow", "never", "x", "y", "z", "w", "v", "u"])
    path = _write(lines, tmp_path / "lines.xlsx")
    with pytest.raises(DataError, match=r"date column 'When' cannot be read as dates \(e\.g\. 'soon', 'later', 'tomorrow'\)"):
        import_transactions(path, **_synthetic_kwargs())


def test_amount_needs_a_column_or_quantity_and_price(tmp_path: Path) -> None:
    path = _write(_lines(), tmp_path / "lines.csv")
    with pytest.raises(DataError, match="--amount-col, or both --quantity-col and --price-col"):
        import_transactions(path, customer_col="Customer", date_col="When", quantity_col="Qty")


def test_unknown_file_type_and_missing_sheet(tmp_path: Path) -> None:
    odd = tmp_path / "lines.json"
    odd.write_text("{}")
    with pytest.raises(DataError, match="unknown file type .json"):
        import_transactions(odd, **_synthetic_kwargs())
    book = _write(_lines(), tmp_path / "lines.xlsx")
    with pytest.raises(DataError, match="has no sheet 'Sheet9'; it has 'lines'"):
        import_transactions(book, **_synthetic_kwargs(), sheet="Sheet9")


@pytest.fixture(scope="module")
def real_slice() -> Path:
    return REAL_SLICE


def test_real_slice_counts_add_up(real_slice: Path) -> None:
    raw = pd.read_parquet(real_slice)
    result = import_transactions(real_slice, **ONLINE_RETAIL_COLUMNS)
    report = result.report
    assert report.lines_read == 10_000 and report.balanced
    assert report.dropped[NO_CUSTOMER] == int(raw["CustomerID"].isna().sum())
    with_customer = raw.dropna(subset=["CustomerID"])
    kept = with_customer[with_customer["Quantity"] * with_customer["UnitPrice"] != 0]
    assert report.orders == kept["InvoiceNo"].nunique()
    assert report.returns == kept.loc[kept["InvoiceNo"].str.startswith("C"), "InvoiceNo"].nunique()
    assert result.orders["amount"].sum() == pytest.approx((kept["Quantity"] * kept["UnitPrice"]).sum(), rel=1e-9)
    assert result.orders["customer_id"].str.fullmatch(r"\d{5}").all()
    assert result.orders["order_id"].is_unique


def test_real_slice_through_the_cli_and_back(real_slice: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("import")(import_command)
    app.command("noop")(lambda: None)
    target = tmp_path / "retail"
    args = ["import", "--transactions", str(real_slice), "--out", str(target)]
    for key, col in ONLINE_RETAIL_COLUMNS.items():
        args += [f"--{key.replace('_', '-')}", col]
    run = CliRunner().invoke(app, args)
    said = " ".join(run.output.split())
    assert run.exit_code == 0, said
    assert "lines read" in said and "no customer id" in said
    ds = open_dataset(target)
    assert ds.table("orders").count().execute() > 0


def test_real_malformed_copies_fail_clearly_through_the_cli(real_slice: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("import")(import_command)
    app.command("noop")(lambda: None)
    raw = pd.read_parquet(real_slice)
    no_customer = tmp_path / "no_customer.csv"
    raw.drop(columns="CustomerID").to_csv(no_customer, index=False)
    bad_dates = tmp_path / "bad_dates.csv"
    raw.assign(InvoiceDate=raw["InvoiceDate"].dt.strftime("week %W of %Y")).to_csv(bad_dates, index=False)
    base = ["--date-col", "InvoiceDate", "--order-col", "InvoiceNo", "--quantity-col", "Quantity", "--price-col", "UnitPrice", "--out", str(tmp_path / "x")]
    run = CliRunner().invoke(app, ["import", "-t", str(no_customer), "--customer-col", "CustomerID", *base])
    said = " ".join(run.output.split())
    assert run.exit_code == 2, said
    assert "no column 'CustomerID'" in said and "'InvoiceNo', 'StockCode'" in said
    assert "Traceback" not in said
    run = CliRunner().invoke(app, ["import", "-t", str(bad_dates), "--customer-col", "CustomerID", *base])
    said = " ".join(run.output.split())
    assert run.exit_code == 2, said
    assert "date column 'InvoiceDate' cannot be read as dates (e.g. 'week 48 of 2010'" in said
