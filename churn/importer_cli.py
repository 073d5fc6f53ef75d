"""`churn import`: a transactions export (CSV, Parquet, Excel) to the CRM data contract.

Registered by :mod:`churn.cli` as ``app.command("import")(import_command)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from churn.output import RedactingConsole
from features.dataset import write_dataset
from features.errors import DataError
from features.importer import ImportReport, import_transactions

_err = RedactingConsole(stderr=True)
_out = RedactingConsole()


def import_command(
    transactions: Annotated[Path, typer.Option("--transactions", "-t", help="Transactions file: .csv, .parquet or .xlsx, one row per invoice line.")],
    customer_col: Annotated[str, typer.Option("--customer-col", help="Column with the customer id.")],
    date_col: Annotated[str, typer.Option("--date-col", help="Column with the date (or date and time) of the line.")],
    out_path: Annotated[str, typer.Option("--out", "-o", help="Target: a folder, a .duckdb file or a postgresql:// URL.")],
    amount_col: Annotated[str | None, typer.Option("--amount-col", help="Column with the line amount (or give --quantity-col and --price-col).")] = None,
    order_col: Annotated[str | None, typer.Option("--order-col", help="Column with the invoice/order number; without it, one order per customer and day.")] = None,
    quantity_col: Annotated[str | None, typer.Option("--quantity-col", help="Column with the units (negative on returns).")] = None,
    price_col: Annotated[str | None, typer.Option("--price-col", help="Column with the unit price.")] = None,
    country_col: Annotated[str | None, typer.Option("--country-col", help="Column with the customer's country or region (becomes customers.region).")] = None,
    product_col: Annotated[str | None, typer.Option("--product-col", help="Column with the product (stock code, SKU): keeps the lines as the order_lines table.")] = None,
    category_col: Annotated[str | None, typer.Option("--category-col", help="Column with the line's product group (with --product-col).")] = None,
    sheet: Annotated[str | None, typer.Option("--sheet", help="Excel sheet name (default: the first sheet).")] = None,
    date_format: Annotated[str | None, typer.Option("--date-format", help="strptime format of the dates, e.g. %d/%m/%Y %H:%M (default: detected).")] = None,
    dayfirst: Annotated[bool | None, typer.Option("--dayfirst/--monthfirst", help="Dates like 03/04/2011 are day (or month) first; default: as the rows tell (25/04/2011 is day first).")] = None,
    cancel_prefix: Annotated[str, typer.Option("--cancel-prefix", help="Order ids starting with this mark cancellations ('' for none).")] = "C",
    file_format: Annotated[str, typer.Option("--format", help="For a folder target: parquet or csv.")] = "parquet",
    encoding: Annotated[str | None, typer.Option("--encoding", help="Text encoding of a CSV file, e.g. gbk or gb18030 (Chinese Windows exports), cp1252 (default: UTF-8).")] = None,
) -> None:
    """Import a transactions export as the orders and customers tables (and order_lines), and report what was dropped and why.

    Example: churn import --transactions online_retail.xlsx --customer-col CustomerID --date-col InvoiceDate
    --order-col InvoiceNo --quantity-col Quantity --price-col UnitPrice --country-col Country --product-col StockCode --out data/retail.duckdb
    """
    try:
        if file_format not in ("parquet", "csv"):
            raise DataError(f"--format must be parquet or csv, not {file_format!r}")
        started = time.perf_counter()
        result = import_transactions(
            transactions,
            customer_col=customer_col,
            date_col=date_col,
            amount_col=amount_col,
            order_col=order_col,
            quantity_col=quantity_col,
            price_col=price_col,
            country_col=country_col,
            product_col=product_col,
            category_col=category_col,
            sheet=sheet,
            date_format=date_format,
            dayfirst=dayfirst,
            cancel_prefix=cancel_prefix or None,
            encoding=encoding,
        )
        if result.orders.empty:
            raise DataError(f"no line of {transactions} could be used: see the reasons above")
        counts = write_dataset(out_path, result.frames(), file_format=file_format)  # type: ignore[arg-type]
    except DataError as err:
        _err.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    _print_report(result.report, f"{transactions.name} imported in {time.perf_counter() - started:.1f} s", out_path, counts)


def _print_report(report: ImportReport, title: str, out_path: str, counts: dict[str, int]) -> None:
    """Show what the import read, used and dropped, its notes, and what was written where."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("detail", overflow="fold", max_width=60)
    for item, n, detail in report.rows():
        table.add_row(item, f"{n:,}", detail)
    _out.print(table)
    for note in report.notes:
        _out.print(f"note: {note}", highlight=False)
    _out.print(f"written to {out_path}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), highlight=False)
