"""Map a transactions export (invoice lines from an ERP or web shop) to the CRM data contract.

A company that has nothing but its sales ledger still gets a model: :func:`import_transactions`
reads a CSV, Parquet or Excel file of invoice lines, aggregates the lines into one ``orders`` row
per order (per order id, or per customer and day when the export has no order column), turns
cancellations into negative orders (returns) and derives a minimal ``customers`` table. With a
product column it also keeps the lines themselves as the ``order_lines`` table (product, quantity,
amount, and the product group when the export has one), each line on the order it was summed into. Every line
read is either used or dropped for a named reason, and the report's counts add up.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import cast

import openpyxl
import pandas as pd
import pyarrow.parquet as pq

from features.csvfiles import check_unique_names, decode_failure, encoding_hint, ragged_row, sniff_csv
from features.dates import read_dates
from features.errors import DataError

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")

NO_CUSTOMER = "no customer id"
BAD_DATE = "date missing or unparseable"
NO_ORDER = "no order id"
BAD_AMOUNT = "amount missing or not a number"
ZERO_AMOUNT = "zero amount"
DROP_REASONS = (NO_CUSTOMER, BAD_DATE, NO_ORDER, BAD_AMOUNT, ZERO_AMOUNT)

ONLINE_RETAIL_COLUMNS = {
    "customer_col": "CustomerID",
    "date_col": "InvoiceDate",
    "order_col": "InvoiceNo",
    "quantity_col": "Quantity",
    "price_col": "UnitPrice",
    "country_col": "Country",
    "product_col": "StockCode",
}
"""The column mapping of the UCI "Online Retail" export (the README's `churn import` example)."""

_DECIMAL_COMMA = re.compile(r"^-?[\d.\s']*,\d+$")


@dataclass
class ImportReport:
    """What the import read, used and dropped.

    Attributes:
        source: the file read.
        lines_read: data lines in the file (sheet).
        lines_used: lines that went into an order.
        dropped: lines dropped per reason (only reasons that occurred), in the order the rules apply.
        examples: up to three examples of the dropped values per reason.
        orders: orders written (including returns).
        returns: orders with a negative amount (cancellations, credit notes, returns).
        customers: customers written.
        first_date: the earliest order date.
        last_date: the latest order date.
        notes: what else the reader should know (cancellations found, ambiguous date format ...).
    """

    source: str
    lines_read: int = 0
    lines_used: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    orders: int = 0
    returns: int = 0
    customers: int = 0
    first_date: date | None = None
    last_date: date | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lines_dropped(self) -> int:
        """All lines dropped, over every reason."""
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        """Whether lines read = lines used + lines dropped."""
        return self.lines_read == self.lines_used + self.lines_dropped

    def rows(self) -> list[tuple[str, int, str]]:
        """The report as (item, count, detail) rows, for a table.

        Returns:
            One row for lines read, one per drop reason, lines used, orders, returns and customers.
        """
        out: list[tuple[str, int, str]] = [("lines read", self.lines_read, self.source)]
        for reason, n in self.dropped.items():
            out.append((f"dropped: {reason}", n, "e.g. " + ", ".join(self.examples.get(reason, [])) if self.examples.get(reason) else ""))
        out.append(("lines used", self.lines_used, ""))
        span = f"{self.first_date} to {self.last_date}" if self.first_date else ""
        out.append(("orders", self.orders, span))
        out.append(("of which returns (negative amount)", self.returns, ""))
        out.append(("customers", self.customers, ""))
        return out


@dataclass
class ImportResult:
    """The contract tables made from a transactions file, and the report.

    Attributes:
        orders: ``order_id, customer_id, order_date, amount`` (one row per order; returns negative).
        customers: ``customer_id, created_at`` and ``region`` when a country column was given.
        report: what was read, used and dropped.
        order_lines: ``order_id, product_id, quantity, amount`` (and ``category``), one row per line
            used, when a product column was given; None otherwise.
    """

    orders: pd.DataFrame
    customers: pd.DataFrame
    report: ImportReport
    order_lines: pd.DataFrame | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables by contract name, for ``write_dataset`` or ``CRMDataset.from_frames``."""
        frames = {"orders": self.orders, "customers": self.customers}
        if self.order_lines is not None:
            frames["order_lines"] = self.order_lines
        return frames


def import_transactions(
    path: str | Path,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str | None = None,
    order_col: str | None = None,
    quantity_col: str | None = None,
    price_col: str | None = None,
    country_col: str | None = None,
    product_col: str | None = None,
    category_col: str | None = None,
    sheet: str | int | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    cancel_prefix: str | None = "C",
    max_bad_share: float = 0.05,
    encoding: str | None = None,
) -> ImportResult:
    """Read a transactions file and map it to the ``orders`` and ``customers`` tables.

    Lines are dropped, first matching rule wins, when they have no customer id, a missing or
    unparseable date, no order id (when an order column is given), a missing or non-numeric amount
    (or quantity or price), or an amount of zero. The remaining lines are summed per order id
    (or per customer, day and sign when there is no order column). A line with a negative amount or
    quantity, or on an order whose id starts with ``cancel_prefix``, counts negative (a return).

    Args:
        path: a .csv (any of , ; tab |; UTF-8 unless ``encoding`` says otherwise), .parquet or .xlsx file.
        customer_col: the customer id column (ids exported as numbers, 12346.0, become "12346").
        date_col: the date (or date and time) of the line.
        amount_col: the line amount; if absent, amount = quantity * price.
        order_col: the invoice or order number; if absent, one order per customer and day.
        quantity_col: units on the line (with ``price_col`` when there is no amount column).
        price_col: unit price.
        country_col: the customer's country or region (its most frequent value becomes ``region``).
        product_col: the product (stock code, SKU): keeps the lines as ``order_lines``; an order's
            negative lines (goods taken back on an invoice that nets positive) then become a return
            order of their own (``<order>/return``), so that every line sits on an order of its sign.
        category_col: the product group of the line (with ``product_col``).
        sheet: the Excel sheet name or position (default: the first).
        date_format: a strptime format such as ``%d/%m/%Y %H:%M``; default: detected.
        dayfirst: how to read dates like 03/04/2011 (None: as the rows tell, e.g. 25/04/2011 is day
            first, with a note in the report; a column where no row tells is refused).
        cancel_prefix: order ids starting with this mark cancellations (None: only negative
            quantities or amounts do). Ignored when every order id starts with it.
        max_bad_share: above this share of unparseable dates or amounts the import stops with an
            error (a wrong column or format) instead of dropping the lines.
        encoding: a CSV file's text encoding, such as gbk (None: UTF-8).

    Returns:
        The orders and customers frames and the report.

    Raises:
        DataError: the file cannot be read, a named column is missing, or a column cannot be parsed.
    """
    source = Path(path)
    cols = _Columns(customer_col, date_col, amount_col, order_col, quantity_col, price_col, country_col, product_col, category_col)
    flags = cols.flags()
    raw = read_transactions(source, columns=list(flags), flags=flags, sheet=sheet, encoding=encoding).reset_index(drop=True)
    report = ImportReport(source=str(source), lines_read=len(raw))
    lines = _usable_lines(raw, cols, report, date_format=date_format, dayfirst=dayfirst, max_bad_share=max_bad_share)
    if order_col is not None:
        cancelled = _cancellations(lines["order_ref"], cancel_prefix, report.notes)
        lines["amount"] = lines["amount"].where(~cancelled, -lines["amount"].abs())
    lines["order_id"] = _order_ids(lines, report.notes, split_returns=product_col is not None)
    orders = _aggregate_orders(lines, report.notes)
    customers = _customers_table(lines, orders)
    _count_result(report, orders, customers)
    return ImportResult(orders=orders, customers=customers, report=report, order_lines=_order_lines(lines) if product_col is not None else None)


@dataclass(frozen=True)
class _Columns:
    """The export's columns the import reads (None: not in the export), as named by the ``--*-col`` flags."""

    customer: str
    date: str
    amount: str | None
    order: str | None
    quantity: str | None
    price: str | None
    country: str | None
    product: str | None
    category: str | None

    def flags(self) -> dict[str, str]:
        """Each column to read (once, in flag order) to the flag that named it; refuses combinations that cannot work."""
        if self.amount is None and (self.quantity is None or self.price is None):
            raise DataError("say how to get the amount: give --amount-col, or both --quantity-col and --price-col")
        if self.category is not None and self.product is None:
            raise DataError("--category-col needs --product-col: the product group belongs to a line's product")
        wanted = {
            "--customer-col": self.customer,
            "--date-col": self.date,
            "--amount-col": self.amount,
            "--order-col": self.order,
            "--quantity-col": self.quantity,
            "--price-col": self.price,
            "--country-col": self.country,
            "--product-col": self.product,
            "--category-col": self.category,
        }
        return {v: k for k, v in wanted.items() if v is not None}


class _DropRules:
    """The reason each line is dropped for (first matching rule wins), counted in the report."""

    def __init__(self, report: ImportReport, index: pd.Index) -> None:
        self.report = report
        self.reason = pd.Series(pd.NA, index=index, dtype="object")

    def drop(self, mask: pd.Series, why: str, values: pd.Series) -> None:
        """Drop the lines in ``mask`` not dropped yet, for ``why``, with up to three of their ``values`` as examples."""
        mask = mask.fillna(False).astype(bool) & self.reason.isna()
        n = int(mask.sum())
        if n:
            self.reason[mask] = why
            self.report.dropped[why] = n
            self.report.examples[why] = [f"row {cast(int, i) + 1}: {_show(v)}" for i, v in values[mask].head(3).items()]  # the index is raw's RangeIndex


def _usable_lines(raw: pd.DataFrame, cols: _Columns, report: ImportReport, *, date_format: str | None, dayfirst: bool | None, max_bad_share: float) -> pd.DataFrame:
    """Parse ids, dates and amounts, drop the lines the rules say (counted in ``report``) and return the rest.

    Returns:
        The used lines: ``customer_id``, ``order_date``, ``amount``, and ``order_ref``, ``region``,
        ``product_id``, ``quantity``, ``category`` when the export has those columns.
    """
    rules = _DropRules(report, raw.index)
    customer = normalise_ids(raw[cols.customer])
    rules.drop(customer.isna(), NO_CUSTOMER, raw[cols.customer])
    order_date = _parse_date_column(raw[cols.date], cols.date, date_format, dayfirst, max_bad_share, report.notes)
    rules.drop(order_date.isna(), BAD_DATE, raw[cols.date])
    order = None
    if cols.order is not None:
        order = normalise_ids(raw[cols.order])
        rules.drop(order.isna(), NO_ORDER, raw[cols.order])
    amount, quantity, shown = _line_amounts(raw, cols, max_bad_share)
    rules.drop(amount.isna(), BAD_AMOUNT, shown)
    rules.drop(amount == 0, ZERO_AMOUNT, shown)

    used = rules.reason.isna()
    report.lines_used = int(used.sum())
    lines = pd.DataFrame({"customer_id": customer[used].astype("string"), "order_date": order_date[used], "amount": amount[used].astype("float64")})
    if order is not None:
        lines["order_ref"] = order[used]
    if cols.country is not None:
        lines["region"] = _text(raw.loc[used, cols.country])
    if cols.product is not None:
        lines["product_id"] = normalise_ids(raw.loc[used, cols.product]).fillna("(none)")
        lines["quantity"] = quantity[used].astype("float64") if quantity is not None else 1.0
        if cols.category is not None:
            lines["category"] = _text(raw.loc[used, cols.category])
    return lines


def _line_amounts(raw: pd.DataFrame, cols: _Columns, max_bad_share: float) -> tuple[pd.Series, pd.Series | None, pd.Series]:
    """Each line's amount (negative when its quantity is), its quantity (None without a quantity column) and the values to show when dropped."""
    if cols.amount is not None:
        amount = _parse_number_column(raw[cols.amount], cols.amount, max_bad_share)
        if cols.quantity is None:
            return amount, None, raw[cols.amount]
        quantity = _parse_number_column(raw[cols.quantity], cols.quantity, max_bad_share)
        return amount.where(~(quantity < 0), -amount.abs()), quantity, raw[cols.amount]
    assert cols.quantity is not None and cols.price is not None
    quantity = _parse_number_column(raw[cols.quantity], cols.quantity, max_bad_share)
    price = _parse_number_column(raw[cols.price], cols.price, max_bad_share)
    shown = raw[cols.quantity].astype("string").fillna("") + " x " + raw[cols.price].astype("string").fillna("")
    return quantity * price, quantity, shown


def _count_result(report: ImportReport, orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    """Fill in the report's counts of what was written, and check that every line read is accounted for."""
    report.orders = len(orders)
    report.returns = int((orders["amount"] < 0).sum())
    report.customers = len(customers)
    if len(orders):
        report.first_date = orders["order_date"].min().date()
        report.last_date = orders["order_date"].max().date()
    if not report.balanced:  # pragma: no cover - a bug, not a user error
        raise AssertionError(f"import counts do not add up: {report}")


def read_transactions(
    path: Path, *, columns: list[str], flags: dict[str, str] | None = None, sheet: str | int | None = None, encoding: str | None = None
) -> pd.DataFrame:
    """Read the named columns of a CSV, Parquet or Excel file, as stored (CSV as text).

    Args:
        path: the file.
        columns: the columns needed; a missing one is a :class:`DataError` listing the file's columns.
        flags: column name to the CLI flag that named it, for messages.
        sheet: Excel sheet name or position.
        encoding: a CSV file's text encoding (None: UTF-8; a file in another one is refused, naming ``--encoding``).

    Returns:
        A frame with exactly ``columns``.
    """
    if not path.exists():
        raise DataError(f"no file at {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder: give the transactions file itself (.csv, .parquet or .xlsx)")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, columns, flags, encoding)
    if suffix in PARQUET_SUFFIXES:
        try:
            header = list(pq.read_schema(path).names)
        except Exception as err:  # noqa: BLE001 - any pyarrow failure means a broken file
            raise DataError(f"{path} cannot be read as Parquet: {err}") from None
        check_unique_names(path.name, header, "--transactions")
        _check_columns(path, header, columns, flags)
        return pd.read_parquet(path, columns=columns)
    if suffix in EXCEL_SUFFIXES:
        try:
            frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, engine="openpyxl")
        except ValueError as err:
            if "not found" in str(err):
                names = openpyxl.load_workbook(path, read_only=True).sheetnames
                raise DataError(f"{path} has no sheet {sheet!r}; it has {', '.join(map(repr, names))}") from None
            raise DataError(f"{path} cannot be read as Excel: {err}") from None
        check_unique_names(path.name, _excel_header(path, sheet), "--transactions")
        frame.columns = [str(c) for c in frame.columns]
        _check_columns(path, list(frame.columns), columns, flags)
        return frame[columns]
    if suffix == ".xls":
        raise DataError(f"{path} is an old .xls workbook: save it as .xlsx or CSV and import that")
    raise DataError(f"{path}: unknown file type {suffix or '(none)'}; give a .csv, .parquet or .xlsx file")


def _excel_header(path: Path, sheet: str | int | None) -> list[str]:
    """The first row of a sheet as written (pandas renames a repeated name to ``name.1``)."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        sheets = book.worksheets
        ws = book[sheet] if isinstance(sheet, str) else sheets[sheet or 0]
        first = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
        return [str(v) for v in first if v is not None]
    finally:
        book.close()


def normalise_ids(series: pd.Series) -> pd.Series:
    """Ids as text: stripped, empty as missing, and numbers exported as floats (12346.0) as "12346".

    Args:
        series: ids as read (text, integers or floats).

    Returns:
        A string series with missing values as ``<NA>``.
    """
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            return series.astype("Int64").astype("string")
    text = series.astype("string").str.strip()
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.mask(text.isin(["", "nan", "NaN", "None", "NULL", "null"]), pd.NA)


def _check_columns(path: Path, header: list[str], columns: list[str], flags: dict[str, str] | None) -> None:
    missing = [c for c in columns if c not in header]
    if not missing:
        return
    parts = []
    for col in missing:
        same = [h for h in header if h.strip().lower() == col.strip().lower()]
        close = same or difflib.get_close_matches(col, header, n=1, cutoff=0.7)
        hints = [h for h in ((flags or {}).get(col), f"did you mean {close[0]!r}?" if close else None) if h]
        parts.append(f"{col!r}" + (f" ({'; '.join(hints)})" if hints else ""))
    raise DataError(f"{path} has no column {', '.join(parts)}. The file's columns are: {', '.join(map(repr, header))}")


def _read_csv(path: Path, columns: list[str], flags: dict[str, str] | None, encoding: str | None) -> pd.DataFrame:
    """The named columns of a CSV file as text, in its encoding (UTF-8 unless ``encoding`` says otherwise)."""
    label = "--transactions"
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    shape = sniff_csv(path, encoding=encoding, setting="--encoding", label=label)
    _check_columns(path, [h.strip() for h in shape.header], columns, flags)
    try:
        frame = pd.read_csv(path, sep=shape.delimiter, encoding=shape.encoding, dtype="string", skipinitialspace=True)
    except UnicodeDecodeError:
        raise decode_failure(shape, "--encoding", label) or DataError(f"{path} is not {shape.encoding} text: {encoding_hint('--encoding')}") from None
    except pd.errors.ParserError as err:
        raise ragged_row(shape, label) or DataError(f"{path} cannot be read as CSV: {err}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame[columns]


def _show(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return "(empty)"
    text = str(value).strip()
    return repr(text) if text else "(empty)"


def _text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(text == "", pd.NA)


def _parse_date_column(series: pd.Series, name: str, date_format: str | None, dayfirst: bool | None, max_bad_share: float, notes: list[str]) -> pd.Series:
    """Dates as day-precision ``datetime64``; unparseable values missing, too many of them an error."""
    present = series.dropna()
    if not pd.api.types.is_datetime64_any_dtype(series):
        present = present[present.astype("string").str.strip() != ""]
    if present.empty:
        raise DataError(f"date column {name!r} is empty")
    if date_format is not None:
        parsed = pd.to_datetime(series.astype("string").str.strip(), format=date_format, errors="coerce").astype("datetime64[us]").dt.normalize()
    else:
        parsed = read_dates(series, label=f"date column {name!r}", setting="--dayfirst or --monthfirst", dayfirst=dayfirst, notes=notes)
    bad = parsed.isna() & series.notna() & series.index.isin(present.index)
    how = f"with the format {date_format!r}: give the right format with --date-format" if date_format else "check --date-col, or give the format with --date-format (such as %d/%m/%Y %H:%M)"
    if bad.sum() > max_bad_share * len(present):
        examples = ", ".join(repr(str(v)) for v in series[bad].drop_duplicates().head(3))
        if bad.sum() == len(present):
            raise DataError(f"date column {name!r} cannot be read as dates (e.g. {examples}): {how}")
        raise DataError(f"date column {name!r}: {int(bad.sum()):,} of {len(present):,} values cannot be read as dates (e.g. {examples}): {how}")
    return parsed


def _parse_number_column(series: pd.Series, name: str, max_bad_share: float) -> pd.Series:
    """Numbers as float64 (decimal commas and currency signs understood); too many failures an error."""
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    text = series.astype("string").str.strip().str.replace(r"[£$€¥\s]", "", regex=True)
    text = text.mask(text == "", pd.NA)
    present = text.dropna()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() & text.notna()
    if bad.any() and present[bad[text.notna()]].str.match(_DECIMAL_COMMA).mean() > 0.5:
        swapped = text.str.replace(r"[.']", "", regex=True).str.replace(",", ".", regex=False)
        numbers = numbers.where(~bad, pd.to_numeric(swapped, errors="coerce"))
        bad = numbers.isna() & text.notna()
    if bad.sum() > max_bad_share * max(len(present), 1):
        examples = ", ".join(repr(v) for v in text[bad].drop_duplicates().head(3))
        raise DataError(f"column {name!r}: {int(bad.sum()):,} of {len(present):,} values are not numbers (e.g. {examples})")
    return numbers.astype("float64")


def _cancellations(order_ref: pd.Series, prefix: str | None, notes: list[str]) -> pd.Series:
    if not prefix or order_ref.empty:
        return pd.Series(False, index=order_ref.index)
    marked = order_ref.str.upper().str.startswith(prefix.upper()).fillna(False).astype(bool)
    if marked.all():
        notes.append(f"every order id starts with {prefix!r}: not read as cancellations")
        return pd.Series(False, index=order_ref.index)
    if marked.any():
        notes.append(f"{int(marked.sum()):,} lines on {order_ref[marked].nunique():,} orders starting with {prefix!r} read as cancellations (negative amounts)")
    return marked


def _order_ids(lines: pd.DataFrame, notes: list[str], *, split_returns: bool) -> pd.Series:
    """The order each line is summed into: its order id, made unique per customer, or the customer and day.

    Args:
        lines: the used lines (``customer_id``, ``order_date``, ``amount``, and ``order_ref`` when
            the export has an order column).
        notes: the report's notes, to say what was split.
        split_returns: give an order's negative lines an order of their own when the order nets
            positive (``<order>/return``), as the lines table needs.

    Returns:
        The order id of every line.
    """
    if "order_ref" not in lines.columns:
        day = lines["order_date"].dt.strftime("%Y-%m-%d")
        notes.append("no order column: one order per customer and day (returns separate)")
        return (lines["customer_id"] + "/" + day + (lines["amount"] < 0).map({True: "/return", False: ""})).astype("string")
    order_id = lines["order_ref"].astype("string")
    owners = lines.groupby("order_ref")["customer_id"].nunique()
    shared = owners[owners > 1].index
    if len(shared):
        mask = order_id.isin(shared)
        order_id[mask] = order_id[mask] + "/" + lines.loc[mask, "customer_id"]
        notes.append(f"{len(shared):,} order ids were used by more than one customer: split per customer (id/customer)")
    if split_returns:
        net = lines["amount"].groupby(order_id).transform("sum")
        taken_back = (lines["amount"] < 0) & (net > 0)
        if taken_back.any():
            order_id[taken_back] = order_id[taken_back] + "/return"
            notes.append(f"{int(taken_back.sum()):,} negative lines on orders that net positive: booked as a return order of their own (id/return)")
    return order_id


def _aggregate_orders(lines: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per order (``lines.order_id``): the lines' amounts summed, the earliest line date."""
    cols = ["order_id", "customer_id", "order_date", "amount"]
    if lines.empty:
        return pd.DataFrame({c: pd.Series(dtype="string" if c.endswith("_id") else ("datetime64[us]" if c == "order_date" else "float64")) for c in cols})
    orders = lines.groupby(["order_id", "customer_id"], sort=False, as_index=False).agg(
        order_date=("order_date", "min"), last_date=("order_date", "max"), amount=("amount", "sum")
    )
    spread = int((orders["last_date"] > orders["order_date"]).sum())
    if spread:
        notes.append(f"{spread:,} orders have lines on more than one day: dated by their first line")
    orders = orders[cols].sort_values(["order_date", "order_id"], kind="stable").reset_index(drop=True)
    orders["order_id"] = orders["order_id"].astype("string")
    orders["customer_id"] = orders["customer_id"].astype("string")
    orders["amount"] = orders["amount"].round(2)
    zero = int((orders["amount"] == 0).sum())
    if zero:
        notes.append(f"{zero:,} orders net to zero (cancelled in full on the same order): kept with amount 0")
    return orders


def _order_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """The ``order_lines`` table: one row per used line, on the order it was summed into."""
    cols = ["order_id", "product_id", "quantity", "amount", *(["category"] if "category" in lines.columns else [])]
    out = lines[cols].reset_index(drop=True)
    out["amount"] = out["amount"].round(2)
    return out


def _customers_table(lines: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """``customer_id``, ``created_at`` (first order) and ``region`` (most frequent country) per customer."""
    first = orders.groupby("customer_id", sort=True)["order_date"].min()
    customers = pd.DataFrame({"customer_id": first.index.astype("string"), "created_at": first.to_numpy()})
    if "region" in lines.columns:
        counts = lines.dropna(subset=["region"]).groupby(["customer_id", "region"], sort=True).size().reset_index(name="n")
        top = counts.sort_values(["customer_id", "n"], ascending=[True, False], kind="stable").drop_duplicates("customer_id")
        customers = customers.merge(top[["customer_id", "region"]], on="customer_id", how="left")
        customers["region"] = customers["region"].astype("string")
    return customers
