"""Where a CRM dataset lives, and how to read and write it.

A *location* is one of:

- a folder of CSV or Parquet files, one per table, named after the table (``orders.csv``);
- a DuckDB database file (``data/crm.duckdb``, the embedded default);
- a SQL database URL, PostgreSQL first (``postgresql://user@host:5432/db?schema=crm``).

:func:`open_dataset` returns a :class:`CRMDataset` whose tables are Ibis expressions on the
database engine, normalised to the contract's types, so that features run inside the engine.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import duckdb
import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import pandera.errors as pae
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql as pg_sql

from features.contract import ID_COLUMNS, MUTABLE_ATTRIBUTES, REQUIRED_TABLES, TABLES, row_schema
from features.csvfiles import check_unique_names, decode_failure, ragged_row, sniff_csv, utf8_copy
from features.dates import read_dates
from features.errors import DataError as DataError  # re-exported: the error every reader of CRM data raises

OnError = Literal["fail", "quarantine"]
LocationKind = Literal["folder", "duckdb", "postgres", "spark"]
Engine = Literal["auto", "spark"]
"""Which engine runs the features: ``auto`` (the store's own: DuckDB for a folder or file, PostgreSQL for its URL) or ``spark``."""

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

DAYFIRST_SETTING = "--dayfirst or --monthfirst (CHURN_DAYFIRST=true or false)"
"""How a user says the day/month order of dates like 03/04/2024, for messages."""
ENCODING_SETTING = "--encoding (CHURN_ENCODING)"
"""How a user says the text encoding of a folder's CSV files, for messages."""
MAX_QUARANTINED_SHARE = 0.5
"""Above this share of a table's rows in quarantine, validation stops instead of going on with the rest."""


def location_kind(location: str | Path) -> LocationKind:
    """Tell a folder, a DuckDB file and a database URL apart.

    Args:
        location: the dataset location.

    Returns:
        "folder", "duckdb" or "postgres".
    """
    text = str(location)
    if re.match(r"^postgres(ql)?(\+\w+)?://", text):
        return "postgres"
    if "://" in text:
        raise DataError(f"unsupported database URL {text!r}: use postgresql://..., a .duckdb file or a folder")
    path = Path(text)
    if path.suffix in (".duckdb", ".db", ".ddb"):
        return "duckdb"
    if path.is_file():
        raise DataError(f"{text} is a file but not a DuckDB database: give a folder of CSV/Parquet files, a .duckdb file or a postgresql:// URL")
    return "folder"


def _split_pg_url(url: str) -> tuple[str, str | None]:
    """Separate our ``schema`` query parameter from a PostgreSQL URL; a system schema is refused."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", [None])[0]
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise DataError(f"schema {schema!r} in the database URL is not a plain SQL name")
    if schema is not None and (schema.lower().startswith("pg_") or schema.lower() == "information_schema"):
        raise DataError(f"schema {schema!r} in the database URL is a PostgreSQL system schema: CRM tables go in a schema of their own (?schema=crm)")
    scheme = "postgresql"
    clean = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query, doseq=True), parts.fragment))
    return clean, schema


def dataset_name(location: str | Path) -> str:
    """A readable name for a dataset location: the file's or folder's stem, or ``<database>.<schema>``.

    Args:
        location: a folder, a .duckdb file, a postgresql:// URL (its password is never part of the name) or ``:memory:``.

    Returns:
        The name (``crm`` for ``data/crm.duckdb``).
    """
    if str(location) == ":memory:":
        return "in-memory"
    if location_kind(location) == "postgres":
        url, schema = _split_pg_url(str(location))
        return f"{urlsplit(url).path.strip('/')}.{schema or 'public'}"
    return Path(location).stem or "dataset"


def connect(location: str | Path, *, read_only: bool = False) -> ibis.BaseBackend:
    """An Ibis connection to the engine behind ``location`` (in-memory DuckDB for a folder).

    A PostgreSQL schema must exist (reading needs only SELECT; the writers create it); the
    connection's search path is set to it.

    Raises:
        DataError: the database cannot be reached or the schema does not exist (the message never shows a password).
    """
    kind = location_kind(location)
    if kind == "postgres":
        url, schema = _split_pg_url(str(location))
        try:
            con = ibis.connect(url)
        except psycopg.Error as err:
            raise DataError(f"cannot connect to the database at {url}: {_first_line(err)}") from None
        if schema:
            _use_schema(con, url, schema)
        return con
    if kind == "duckdb":
        path = Path(location)
        if read_only and not path.exists():
            raise DataError(f"no DuckDB database at {path}: run `churn generate --out {path}` or give another --data")
        path.parent.mkdir(parents=True, exist_ok=True)
        return ibis.duckdb.connect(str(path), read_only=read_only)
    return ibis.duckdb.connect()


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _use_schema(con: ibis.BaseBackend, url: str, schema: str) -> None:
    """Point the connection's search path at ``schema``, which must exist."""
    with con.con.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cur.fetchone() is None:
            con.disconnect()
            raise DataError(f"no schema {schema!r} in the database at {url}: write the data there first (churn generate or churn validate --copy-to), or check ?schema=")
        cur.execute(pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(schema)))


def _folder_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in TABLES:
        for ext in (".parquet", ".csv"):
            candidate = folder / f"{name}{ext}"
            if candidate.exists():
                if name in found:
                    raise DataError(f"table {name} is in {folder} twice ({found[name].name} and {candidate.name}): keep one")
                found[name] = candidate
    return found


def _normalise(table: ibis.Table, name: str) -> ibis.Table:
    """Select the contract's columns with the contract's types (ids as strings, dates as dates)."""
    spec = TABLES[name]
    exprs = {}
    for col in spec.columns:
        if col not in table.columns:
            continue
        c = table[col]
        if col in ID_COLUMNS:
            exprs[col] = c.cast(dt.string)
        elif col in spec.dates:
            exprs[col] = c.cast(dt.date) if not c.type().is_string() else c.cast(dt.timestamp).cast(dt.date)
        elif col in spec.numbers:
            exprs[col] = c.cast(dt.float64)
        else:
            exprs[col] = c.cast(dt.string)
    return table.select(**exprs)


@dataclass
class CRMDataset:
    """An opened CRM dataset: an engine connection and its (normalised) tables.

    Attributes:
        location: where the data lives, as given.
        con: the Ibis backend the features run on.
        tables: the contract tables present, as Ibis expressions with contract types.
        kind: "folder", "duckdb", "postgres" or "spark" (Parquet files or catalog tables read through a SparkSession).
        report: what validation found, when the tables were validated.
        as_of: the date the tables were cut at (see :meth:`cut`), if any.
    """

    location: str
    con: ibis.BaseBackend
    tables: dict[str, ibis.Table]
    kind: LocationKind = "duckdb"
    report: ValidationReport | None = None
    as_of: date | None = None
    _end: date | None = field(default=None, repr=False)

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], *, validate: bool = True, as_of: date | None = None) -> CRMDataset:
        """An in-memory DuckDB dataset from pandas frames (tests, notebooks, imports).

        Args:
            frames: table name to frame; only contract table names are used.
            validate: check the rows against the contract first (fail on bad rows).
            as_of: dates after this day count as errors when validating.
        """
        con = ibis.duckdb.connect()
        report = None
        if validate:
            frames, report = validate_frames(frames, as_of=as_of, on_error="fail", source="frames")
        tables = {}
        for name, frame in frames.items():
            if name in TABLES:
                tables[name] = _normalise(con.create_table(name, _coerce_types(frame, name)), name)
        _check_required(tables, "frames")
        return cls(location=":memory:", con=con, tables=tables, kind="duckdb", report=report)

    def close(self) -> None:
        """Release the engine connection (a DuckDB file takes one configuration per process)."""
        try:
            self.con.disconnect()
        except Exception:  # noqa: BLE001 - closing twice or a backend without disconnect is fine
            pass

    @property
    def source(self) -> str:
        """The location, with the date the data was cut at: for messages."""
        return f"{self.location} (as of {self.as_of})" if self.as_of else self.location

    def has(self, name: str) -> bool:
        """Whether the optional table ``name`` is present."""
        return name in self.tables

    def table(self, name: str) -> ibis.Table:
        """The normalised table ``name``; a clear error when the dataset has none."""
        try:
            return self.tables[name]
        except KeyError:
            raise DataError(f"the dataset at {self.source} has no {name} table") from None

    def end_date(self) -> date:
        """The day after the newest order: the default as-of date ("today" for this data)."""
        if self._end is None:
            newest = self.table("orders").order_date.max().execute()
            if newest is None or pd.isna(newest):
                raise DataError(f"the orders table at {self.source} is empty: a model needs order history")
            self._end = pd.Timestamp(newest).date() + timedelta(days=1)
        return self._end

    def start_date(self) -> date:
        """The day of the oldest order."""
        oldest = self.table("orders").order_date.min().execute()
        return pd.Timestamp(oldest).date()

    def fingerprint(self) -> str:
        """A short hash of the data (row counts, date ranges and amount sums per table), computed in the engine."""
        parts = []
        for name in sorted(self.tables):
            t = self.tables[name]
            spec = TABLES[name]
            aggs = {"n": t.count()}
            for col in spec.dates:
                if col in t.columns:
                    aggs[f"{col}_min"] = t[col].min().cast(dt.string)
                    aggs[f"{col}_max"] = t[col].max().cast(dt.string)
            for col in spec.numbers:
                if col in t.columns:
                    aggs[f"{col}_sum"] = t[col].sum().round(2)
            row = t.aggregate(**aggs).to_pandas().iloc[0].to_dict()
            parts.append(f"{name}:{sorted((k, str(v)) for k, v in row.items())}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def cut(self, as_of: date) -> CRMDataset:
        """The dataset as it was known on ``as_of``: every row dated on or after it dropped.

        Orders, complaints, invoices, contacts and customer history dated on or after ``as_of``
        go, and the order lines of the orders that go; a complaint resolved or an invoice paid on or after ``as_of`` looks open or unpaid;
        customers created on or after ``as_of`` go. With a ``customer_history`` table, each
        changing attribute it covers takes the value valid on ``as_of`` (see :func:`attributes_as_of`).

        Args:
            as_of: T, the first day not known.

        Returns:
            The cut dataset (Ibis expressions on the same connection).
        """
        day = ibis.literal(as_of, type=dt.date)
        cut = {name: _rows_known_on(table, name, day) for name, table in self.tables.items()}
        if "order_lines" in cut:
            cut["order_lines"] = lines_known_on(self.tables["order_lines"], cut["orders"], day)
        if "customers" in cut and "customer_history" in cut:
            cut["customers"] = attributes_as_of(cut["customers"], cut["customer_history"], self.tables["customer_history"])
        known_at = min(as_of, self.as_of) if self.as_of else as_of
        return CRMDataset(location=self.location, con=self.con, tables=cut, kind=self.kind, report=self.report, as_of=known_at)

    def mutable_attributes_known(self) -> bool:
        """Whether the customer attributes that change (:data:`MUTABLE_ATTRIBUTES`) can be read as of a date.

        Returns:
            True when a ``customer_history`` table is present; otherwise the customers table
            holds only today's values, which a snapshot at a past date would see from the future.
        """
        return self.has("customer_history")

    def name(self) -> str:
        """A readable name for the dataset (for experiment names)."""
        return dataset_name(self.location)


# the later event that settles a row: on or after T it has not happened yet
_SETTLED_BY = {"complaints": "resolved_at", "invoices": "paid_at"}
_DECIMAL_COMMA = r"\s*[+-]?[0-9.\s']*,[0-9]+\s*"
_NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


def _rows_known_on(table: ibis.Table, name: str, day: ibis.Value) -> ibis.Table:
    """The rows of a normalised table dated before ``day``, with later settlements undone.

    A row without its own date is kept when that date is optional (a customer with no
    ``created_at``) and dropped when it is required.
    """
    spec = TABLES[name]
    column = spec.dated_by
    if column is None or column not in table.columns:
        return table
    own = table[column]
    known = table.filter(own < day) if column in spec.required else table.filter(own.isnull() | (own < day))
    settled = _SETTLED_BY.get(name)
    if settled is not None and settled in known.columns:
        known = known.mutate(**{settled: ibis.ifelse(known[settled] < day, known[settled], ibis.null(dt.date))})
    return known


def lines_known_on(lines: ibis.Table, known_orders: ibis.Table, day: ibis.Value) -> ibis.Table:
    """The order lines of the orders known on ``day``, each with its order's ``customer_id`` and ``order_date``.

    A line has no date of its own: it is known when its order is. The cut lines carry the order's
    customer and date, so that features read one table; lines already cut (they have
    ``order_date``) are filtered by it again.

    Args:
        lines: the normalised ``order_lines`` table, or lines already cut at a later day.
        known_orders: the orders table cut at ``day``.
        day: T, the first day not known.

    Returns:
        ``order_lines``' columns, then ``customer_id`` and ``order_date``.
    """
    if "order_date" in lines.columns:
        return lines.filter(lines.order_date < day)
    orders = known_orders.select(_line_order=known_orders.order_id, customer_id=known_orders.customer_id, order_date=known_orders.order_date)
    joined = lines.inner_join(orders, lines.order_id == orders._line_order)
    return joined.select(*lines.columns, "customer_id", "order_date")


def attributes_as_of(customers: ibis.Table, known_history: ibis.Table, history: ibis.Table) -> ibis.Table:
    """The customers with each changing attribute the history covers set to its value as of T.

    An attribute is covered when ``history`` has a row for it at all (which attributes a CRM keeps
    a history of is a property of the table, not of T). For a covered attribute, the value is the
    one of the customer's ``known_history`` row with the latest ``valid_from``, or NULL when the
    customer has none (unknown at T); an attribute the history does not cover keeps the
    customers table's value. Runs in the engine: a window for the latest row, a pivot by
    conditional aggregation and a left join.

    Args:
        customers: the normalised customers table (already cut to T).
        known_history: the ``customer_history`` rows valid from before T.
        history: the whole ``customer_history`` table (for which attributes it covers).

    Returns:
        ``customers`` with the same columns; ``credit_limit`` as float64.
    """
    attributes = [c for c in MUTABLE_ATTRIBUTES if c in customers.columns]
    if not attributes:
        return customers
    newest = ibis.row_number().over(group_by=[known_history.customer_id, known_history["column"]], order_by=ibis.desc(known_history.valid_from))
    latest = known_history.mutate(_newest=newest).filter(lambda t: t._newest == 0)
    pivot = latest.group_by(_history_customer=latest.customer_id).aggregate(
        **{f"_at_{c}": latest["value"].max(where=latest["column"] == c) for c in attributes}
    )
    coverage = history.aggregate(**{f"_covers_{c}": (history["column"] == c).any() for c in attributes})
    joined = customers.left_join(pivot, customers.customer_id == pivot._history_customer).cross_join(coverage)

    def as_of_value(column: str) -> ibis.Value:
        value = joined[f"_at_{column}"]
        if column == "credit_limit":
            text = value.strip()
            value = ibis.ifelse(text.re_search(_NUMBER), text.cast(dt.float64), ibis.null(dt.float64))
        return ibis.ifelse(joined[f"_covers_{column}"].fill_null(False), value, joined[column]).name(column)

    return joined.select(*(as_of_value(c) if c in attributes else joined[c] for c in customers.columns))


def _check_required(tables: Mapping[str, object], location: str) -> None:
    for name in REQUIRED_TABLES:
        if name not in tables:
            raise DataError(
                f"the dataset at {location} has no {name} table: it is the one table every model needs "
                f"(columns {', '.join(TABLES[name].required)})"
            )


def _read_raw_tables(location: str | Path, con: ibis.BaseBackend, encoding: str | None = None) -> dict[str, ibis.Table]:
    kind = location_kind(location)
    if kind == "folder":
        folder = Path(location)
        if not folder.is_dir():
            raise DataError(f"no dataset at {folder}: give a folder of CSV/Parquet files, a .duckdb file or a postgresql:// URL")
        out = {}
        for name, path in _folder_files(folder).items():
            if path.suffix == ".csv":
                out[name] = _read_csv_table(con, name, path, encoding)
            else:
                check_unique_names(path.name, list(pq.read_schema(path).names), f"table {name}")
                out[name] = con.read_parquet(str(path), table_name=f"raw_{name}")
        return out
    present = set(con.list_tables())
    return {name: con.table(name) for name in TABLES if name in present}


def _read_csv_table(con: ibis.BaseBackend, name: str, path: Path, encoding: str | None) -> ibis.Table:
    """A CSV file of a folder dataset as a table of text columns, read into the engine now.

    The file's header and delimiter are read first (in its encoding, UTF-8 by default); a file in
    another encoding is re-encoded for DuckDB. When the engine cannot read the file, the first row
    with more or fewer fields than the header, or the first bytes that are not text, are named.

    Raises:
        DataError: the file is not text in its encoding, names a column twice, or has a row that does not fit the header.
    """
    label = f"table {name}"
    shape = sniff_csv(path, encoding=encoding, setting=ENCODING_SETTING, label=label)
    with tempfile.TemporaryDirectory(prefix="churn-csv-") as tmp:
        source = path if shape.encoding == "utf-8-sig" else utf8_copy(shape, Path(tmp) / path.name, ENCODING_SETTING, label)
        try:
            stored = con.read_csv(str(source), table_name=f"raw_{name}_file", all_varchar=True, header=True, delim=shape.delimiter, quote='"')
            return con.create_table(f"raw_{name}", stored, overwrite=True)
        except duckdb.Error as err:
            found = decode_failure(shape, ENCODING_SETTING, label) or ragged_row(shape, label)
            if found is not None:
                raise found from None
            raise DataError(f"{label}: {path} cannot be read as CSV: {str(err).splitlines()[0]}") from None


def read_raw_frames(location: str | Path, *, encoding: str | None = None) -> dict[str, pd.DataFrame]:
    """Every contract table at ``location`` as it is stored (no type coercion), for validation and copying.

    Args:
        location: a folder, a .duckdb file or a postgresql:// URL.
        encoding: the text encoding of a folder's CSV files (None: UTF-8).
    """
    kind = location_kind(location)
    con = connect(location, read_only=(kind == "duckdb"))
    raw = _read_raw_tables(location, con, encoding)
    _check_required(raw, str(location))
    return {name: t.to_pandas() for name, t in raw.items()}


def open_dataset(
    location: str | Path,
    *,
    validate: bool = True,
    on_error: OnError = "fail",
    as_of: date | None = None,
    quarantine_dir: Path | None = None,
    cut_at: date | None = None,
    dayfirst: bool | None = None,
    encoding: str | None = None,
    max_quarantined_share: float = MAX_QUARANTINED_SHARE,
    engine: Engine = "auto",
) -> CRMDataset:
    """Open a CRM dataset for feature computation.

    Args:
        location: a folder, a .duckdb file or a postgresql:// URL.
        validate: check every row against the contract (pulls the tables once).
        on_error: "fail" raises :class:`DataError` on bad rows; "quarantine" writes them to
            files next to the data and goes on with the good rows.
        as_of: dates after this day are errors ("in the future"); default: today.
        quarantine_dir: where quarantined rows go (default: next to the data).
        cut_at: read only what was known on this day: the engine's query keeps the rows dated
            before it (and the rows whose date it cannot parse, for validation to report), so a
            later row is neither read nor validated; the result is then :meth:`CRMDataset.cut`.
        dayfirst: how to read text dates like 03/04/2024 (None: as each column's rows tell).
        encoding: the text encoding of a folder's CSV files (None: UTF-8).
        max_quarantined_share: with quarantine, more bad rows than this share of a table stop it.
        engine: "spark" reads the tables through a SparkSession (see :func:`open_spark_dataset`; no row validation).

    Returns:
        The opened dataset.
    """
    if engine == "spark":
        return open_spark_dataset(location, cut_at=cut_at)
    kind = location_kind(location)
    con = connect(location, read_only=(kind == "duckdb"))
    raw = _read_raw_tables(location, con, encoding)
    _check_required(raw, str(location))
    if cut_at is not None:
        stored_orders = raw["orders"]
        raw = {name: _known_before(table, name, cut_at, kind) for name, table in raw.items()}
        if "order_lines" in raw:
            raw["order_lines"] = _lines_known_before(raw["order_lines"], stored_orders, cut_at, kind)
    report = None
    if validate or kind == "folder":
        frames = {name: t.to_pandas() for name, t in raw.items()}
        if validate:
            frames, report = validate_frames(
                frames, as_of=as_of, on_error=on_error, source=str(location),
                quarantine_dir=quarantine_dir or default_quarantine_dir(location), dayfirst=dayfirst,
                max_quarantined_share=max_quarantined_share,
            )
        # the engine reads text dates only as ISO: where a store keeps them as text, the frames read them
        if kind == "folder" or (report is not None and report.quarantined) or (report is not None and _has_text_dates(raw)):
            if kind == "duckdb":
                con = ibis.duckdb.connect()  # the file is read-only: clean rows go to memory
            raw = {
                name: con.create_table(f"clean_{name}", _coerce_types(frame, name, dayfirst=dayfirst), temp=(kind == "postgres"))
                for name, frame in frames.items()
            }
    tables = {name: _normalise(t, name) for name, t in raw.items()}
    dataset = CRMDataset(str(location), con, tables, kind, report)
    return dataset.cut(cut_at) if cut_at is not None else dataset


def open_spark_dataset(location: str | Path, *, cut_at: date | None = None) -> CRMDataset:
    """Open a CRM dataset on Spark: a folder of Parquet files, or a database of the session's catalog.

    The tables stay in Spark (nothing is pulled to this process); they are normalised to the
    contract's types like every other store. Rows are not validated one by one here, as that
    would bring every row to the driver: run ``churn validate`` on the export once, and the
    columns each table must have are checked.

    Args:
        location: the folder or the catalog database name.
        cut_at: read only what was known on this day (see :func:`open_dataset`).

    Returns:
        The opened dataset, of kind "spark".

    Raises:
        DataError: pyspark missing, no orders table, or a table without a required column.
    """
    from features.spark import connect_spark, read_tables

    con = connect_spark()
    raw = read_tables(con, str(location), list(TABLES))
    _check_required(raw, str(location))
    for name, table in raw.items():
        missing = [c for c in TABLES[name].required if c not in table.columns]
        if missing:
            raise DataError(f"table {name} at {location} is missing required column {', '.join(missing)} (rename or add it)")
    if cut_at is not None:
        stored_orders = raw["orders"]
        raw = {name: _known_before(table, name, cut_at, "spark") for name, table in raw.items()}
        if "order_lines" in raw:
            raw["order_lines"] = _lines_known_before(raw["order_lines"], stored_orders, cut_at, "spark")
    dataset = CRMDataset(str(location), con, {name: _normalise(t, name) for name, t in raw.items()}, "spark")
    return dataset.cut(cut_at) if cut_at is not None else dataset


def _has_text_dates(raw: Mapping[str, ibis.Table]) -> bool:
    """Whether a stored table keeps one of its contract date columns as text."""
    return any(table[col].type().is_string() for name, table in raw.items() for col in TABLES[name].dates if col in table.columns)


def _known_before(table: ibis.Table, name: str, cut_at: date, kind: LocationKind) -> ibis.Table:
    """The rows of a stored table dated before ``cut_at``, filtered in the engine's query.

    A row whose own date (:attr:`~features.contract.TableSpec.dated_by`) is empty or cannot be
    parsed by the engine is kept, so that validation reports it instead of it vanishing.

    Args:
        table: a table as stored (text columns from a CSV file, typed ones from a database).
        name: its contract table name.
        cut_at: the first day that is not known.
        kind: the store, which decides how text is parsed as a date.

    Returns:
        The filtered expression (``table`` itself when the table or its date column has no date).
    """
    column = TABLES[name].dated_by
    if column is None or column not in table.columns:
        return table
    day = _engine_date(table[column], kind)
    return table.filter(day.isnull() | (day < ibis.literal(cut_at, type=dt.date)))


def _lines_known_before(lines: ibis.Table, orders: ibis.Table, cut_at: date, kind: LocationKind) -> ibis.Table:
    """The stored order lines less those of an order dated on or after ``cut_at``, in the engine's query.

    Lines of a later order are neither read nor validated; a line whose order id matches no order
    is kept, so that validation reports it.

    Args:
        lines: the ``order_lines`` table as stored.
        orders: the ``orders`` table as stored, not cut.
        cut_at: the first day that is not known.
        kind: the store, which decides how text is parsed as a date.

    Returns:
        The filtered expression.
    """
    day = _engine_date(orders.order_date, kind)
    later = orders.filter(day >= ibis.literal(cut_at, type=dt.date)).select(_later=orders.order_id.cast(dt.string))
    return lines.filter(~lines.order_id.cast(dt.string).isin(later._later))


# a valid calendar day written as YYYY-MM-DD (leap days included), for engines without a try-cast
_ISO_DAY = (
    r"^([1-9][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
    r"|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)-02-29)([ T].*)?$"
)


def _engine_date(column: ibis.Value, kind: LocationKind) -> ibis.Value:
    """A stored date column as an engine date; NULL where the engine cannot read it as one.

    Text goes through DuckDB's try-cast; PostgreSQL has none, so there only a valid
    ``YYYY-MM-DD`` day (optionally with a time) is cast and anything else is NULL.
    """
    stored = column.type()
    if stored.is_date():
        return column
    if stored.is_timestamp():
        return column.cast(dt.date)
    if not stored.is_string():
        return ibis.null(dt.date)  # not a date type: leave the row to validation
    if kind != "postgres":
        return column.try_cast(dt.date)
    text = column.strip()
    return ibis.ifelse(text.re_search(_ISO_DAY), text.substr(0, 10).cast(dt.date), ibis.null(dt.date))


def data_end_date(location: str | Path, *, dayfirst: bool | None = None, encoding: str | None = None) -> date:
    """The day after the newest order stored at ``location``.

    Only the order dates are read (one aggregate in the engine; the distinct values when they are
    stored as text, read by :func:`features.dates.read_dates`, and a date that cannot be read is
    skipped), so a caller that opens the data with ``cut_at`` can still refuse an as-of date past
    the end of the data.

    Args:
        location: a folder, a .duckdb file or a postgresql:// URL.
        dayfirst: how to read text dates like 03/04/2024 (None: as the rows tell).
        encoding: the text encoding of a folder's CSV files (None: UTF-8).

    Returns:
        The day after the newest order.
    """
    kind = location_kind(location)
    con = connect(location, read_only=(kind == "duckdb"))
    try:
        raw = _read_raw_tables(location, con, encoding)
        _check_required(raw, str(location))
        if "order_date" not in raw["orders"].columns:
            raise DataError(f"table orders at {location} is missing required column order_date (rename or add it)")
        stored = raw["orders"].order_date
        if stored.type().is_string():
            text = raw["orders"].select("order_date").distinct().to_pandas()["order_date"]
            newest = read_dates(text, label="table orders, column order_date", setting=DAYFIRST_SETTING, dayfirst=dayfirst).max()
        else:
            newest = _engine_date(stored, kind).max().execute()
    finally:
        con.disconnect()
    if newest is None or pd.isna(newest):
        raise DataError(f"the orders table at {location} has no readable order date: a model needs order history")
    return pd.Timestamp(newest).date() + timedelta(days=1)


def default_quarantine_dir(location: str | Path) -> Path:
    """Next to the data: ``<folder>/quarantine``, ``<file>.quarantine/``, or ``./quarantine`` for a URL."""
    kind = location_kind(location)
    if kind == "folder":
        return Path(location) / "quarantine"
    if kind == "duckdb":
        path = Path(location)
        return path.with_name(path.name + ".quarantine")
    return Path("quarantine")


# ---------------------------------------------------------------------------------------------
# validation


@dataclass
class Problem:
    """One rule broken by some rows of one table."""

    table: str
    column: str
    rule: str
    rows: int
    examples: list[str]

    def __str__(self) -> str:
        ex = "; ".join(self.examples[:3])
        return f"table {self.table}, column {self.column}: {self.rows} row(s) {self.rule} (e.g. {ex})"


@dataclass
class ValidationReport:
    """What validation found: rows read, rows kept and the problems, per table, and how it read them (notes)."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_loaded: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    quarantine_files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> dict[str, int]:
        return {t: self.rows_read[t] - self.rows_loaded[t] for t in self.rows_read if self.rows_read[t] != self.rows_loaded[t]}


def _coerce_types(frame: pd.DataFrame, name: str, *, dayfirst: bool | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Contract types: values that do not parse become missing (caught by validation).

    Args:
        frame: one table as read.
        name: its contract name.
        dayfirst: how to read dates like 03/04/2024 (None: as the column's rows tell).
        notes: what was decided about the dates is appended here.

    Raises:
        DataError: a date column whose day and month cannot be told apart.
    """
    spec = TABLES[name]
    out = frame.copy()
    for col in out.columns:
        if col in spec.dates:
            out[col] = read_dates(out[col], label=f"table {name}, column {col}", setting=DAYFIRST_SETTING, dayfirst=dayfirst, notes=notes)
        elif col in spec.numbers:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        elif col in spec.columns:
            out[col] = _as_text(out[col])
    return out


def _as_text(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        # ids exported as floats (1234.0) read back as "1234"
        as_int = series.dropna()
        if (as_int == as_int.round()).all():
            return series.astype("Int64").astype("string")
    s = series.astype("string").str.strip()
    return s.mask(s == "", pd.NA)


def validate_frames(
    frames: Mapping[str, pd.DataFrame],
    *,
    as_of: date | None = None,
    on_error: OnError = "fail",
    source: str = "data",
    quarantine_dir: Path | None = None,
    dayfirst: bool | None = None,
    max_quarantined_share: float = MAX_QUARANTINED_SHARE,
) -> tuple[dict[str, pd.DataFrame], ValidationReport]:
    """Check CRM tables against the contract.

    Missing columns always fail (no row can be saved). Row problems (unparseable dates, negative
    invoice amounts, due dates before issue dates, unknown customers, duplicated ids or
    ``customer_history`` facts, dates in the future of ``as_of``, values outside a column's
    choices, history values that do not fit their attribute) fail with a message naming table,
    column, count and examples, or, with ``on_error="quarantine"``, go to
    ``quarantine_dir/<table>.csv`` with a ``problem`` column while the good rows go on.

    Args:
        frames: table name to raw frame.
        as_of: the latest allowed date (inclusive); default today.
        on_error: "fail" or "quarantine".
        source: the dataset's location, for messages.
        quarantine_dir: where bad rows are written in quarantine mode.
        dayfirst: how to read dates like 03/04/2024; None: as each column's rows tell (a column
            where they do not is refused, naming the setting).
        max_quarantined_share: in quarantine mode, a table with more than this share of bad rows
            stops validation (the file is more likely read wrong than its rows bad).

    Returns:
        The clean frames (contract types) and the report.
    """
    if on_error not in ("fail", "quarantine"):
        raise DataError(f"on_error must be 'fail' or 'quarantine', not {on_error!r}")
    limit = pd.Timestamp(as_of or date.today())
    report = ValidationReport()
    unknown = sorted(set(frames) - set(TABLES))
    frames = {n: f.reset_index(drop=True) for n, f in frames.items() if n in TABLES}
    _check_required(frames, source)
    _check_required_columns(frames, source)
    flags = _Flags(report)
    clean: dict[str, pd.DataFrame] = {}
    for name, raw in frames.items():
        clean[name] = _coerce_types(raw, name, dayfirst=dayfirst, notes=report.notes)
        report.rows_read[name] = len(raw)
        flags.start(name, raw.index)
        _flag_rows(flags, name, raw, clean[name], limit)
    _flag_across_tables(flags, clean, frames)
    if on_error == "quarantine":
        _refuse_mostly_bad(report, flags.bad, source, max_quarantined_share)
    if report.problems and on_error == "fail":
        lines = "\n  - ".join(str(p) for p in report.problems)
        raise DataError(
            f"{source}: {sum(p.rows for p in report.problems)} problem(s) in the CRM data:\n  - {lines}\n"
            "Fix the rows, or run with --on-error quarantine to set them aside in a file and go on with the rest."
        )
    for name, frame in clean.items():
        bad = flags.bad[name]
        if bad.any():
            report.quarantine_files[name] = _write_quarantine(frames[name].loc[bad], flags.reasons[name][bad], quarantine_dir or Path("quarantine"), name)
        clean[name] = frame.loc[~bad].reset_index(drop=True)
        report.rows_loaded[name] = len(clean[name])
    if unknown:
        report.problems.append(Problem(",".join(unknown), "-", "ignored: not a contract table", 0, []))
    return clean, report


def _check_required_columns(frames: Mapping[str, pd.DataFrame], source: str) -> None:
    """Every table has its required columns (no row can be saved otherwise)."""
    missing = []
    for name, frame in frames.items():
        absent = [c for c in TABLES[name].required if c not in frame.columns]
        if absent:
            missing.append(
                f"table {name} is missing required column(s) {', '.join(absent)} "
                f"(it has {', '.join(map(str, frame.columns)) or 'no columns'}; rename or add them)"
            )
    if missing:
        raise DataError(f"{source}: " + "; ".join(missing))


@dataclass
class _Flags:
    """The rows found bad so far, per table, with the reasons (for the quarantine file) and the report's problems."""

    report: ValidationReport
    bad: dict[str, pd.Series] = field(default_factory=dict)
    reasons: dict[str, pd.Series] = field(default_factory=dict)

    def start(self, name: str, index: pd.Index) -> None:
        self.bad[name] = pd.Series(False, index=index)
        self.reasons[name] = pd.Series("", index=index, dtype=object)

    def flag(self, name: str, column: str, rule: str, mask: pd.Series, frame: pd.DataFrame) -> None:
        """Mark the rows of ``mask`` as breaking ``rule`` on ``column``, with up to three examples from ``frame``."""
        mask = mask.fillna(False).astype(bool)
        n = int(mask.sum())
        if not n:
            return
        cols = list(dict.fromkeys(c for c in (TABLES[name].key, "customer_id", column) if c and c in frame.columns))
        examples = [", ".join(f"{c}={frame.at[i, c]!s}" for c in cols) for i in frame.index[mask][:3]]
        self.report.problems.append(Problem(name, column, rule, n, examples))
        self.bad[name] = self.bad[name] | mask
        reasons = self.reasons[name]
        self.reasons[name] = reasons.where(~mask, reasons.where(reasons == "", reasons + "; ") + f"{column}: {rule}")


def _flag_rows(flags: _Flags, name: str, raw: pd.DataFrame, typed: pd.DataFrame, limit: pd.Timestamp) -> None:
    """The rules one table's rows must keep on their own: dates, numbers, text, required values, unique ids, the row schema."""
    spec = TABLES[name]
    for col in spec.dates:
        if col in raw.columns:
            unparsed = typed[col].isna() & raw[col].notna() & (raw[col].astype("string").str.strip() != "")
            flags.flag(name, col, "with a date that cannot be parsed (use YYYY-MM-DD)", unparsed, raw)
            if col != "due_at":  # an invoice may fall due after today; every other date is an event
                flags.flag(name, col, f"dated after {limit.date()} (in the future of the as-of date)", typed[col] > limit, raw)
    for col in spec.numbers:
        if col in raw.columns:
            unparsed = typed[col].isna() & raw[col].notna() & (raw[col].astype("string").str.strip() != "")
            commas = raw.loc[unparsed, col].astype("string").str.fullmatch(_DECIMAL_COMMA).mean() > 0.5 if unparsed.any() else False
            flags.flag(name, col, "with a decimal comma (write 10.5, not 10,5)" if commas else "with a value that is not a number", unparsed, raw)
    for col in raw.columns:
        if pd.api.types.is_string_dtype(raw[col]) or raw[col].dtype == object:
            nul = raw[col].astype("string").str.contains("\x00", regex=False)
            flags.flag(name, str(col), "with a NUL character (\\x00), which databases cannot store: remove it", nul, raw)
    for col in spec.required:
        flags.flag(name, col, "empty (the column is required)", typed[col].isna() & ~flags.bad[name], raw)
    if spec.key:
        dup = typed[spec.key].notna() & typed[spec.key].duplicated(keep=False)
        flags.flag(name, spec.key, "with a duplicated id (ids must be unique)", dup, raw)
    if spec.unique:
        together = list(spec.unique)
        dup = typed[together].notna().all(axis=1) & typed.duplicated(subset=together, keep=False)
        flags.flag(name, spec.unique[-1], f"with the same {', '.join(together)} as another row (keep one)", dup, raw)
    schema = _row_schema_failures(typed, name)
    if name == "customer_history":
        schema += _history_value_failures(typed)
    for column, rule, mask in schema:
        flags.flag(name, column, rule, mask, raw)


def _flag_across_tables(flags: _Flags, clean: Mapping[str, pd.DataFrame], frames: Mapping[str, pd.DataFrame]) -> None:
    """The rules between tables: a line of a known order, a row of a known customer."""
    if "order_lines" in clean:
        orders = clean["orders"].loc[~flags.bad["orders"]]
        for column, rule, mask in _line_failures(clean["order_lines"], orders):
            flags.flag("order_lines", column, rule, mask, frames["order_lines"])
    if "customers" in clean:
        known = set(clean["customers"].loc[~flags.bad["customers"], "customer_id"].dropna())
        for name, frame in clean.items():
            if name != "customers" and "customer_id" in frame.columns:
                unknown = ~frame["customer_id"].isin(known) & frame["customer_id"].notna()
                flags.flag(name, "customer_id", "for a customer that is not in the customers table", unknown, frames[name])


def _write_quarantine(rows: pd.DataFrame, problems: pd.Series, folder: Path, name: str) -> Path:
    """The bad rows of one table as they were read, with a ``problem`` column, in ``folder/<name>.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    rows.assign(problem=problems).to_csv(path, index=False)
    return path


def _refuse_mostly_bad(report: ValidationReport, bad_masks: Mapping[str, pd.Series], source: str, max_share: float) -> None:
    """Stop when a table would lose more than ``max_share`` of its rows to quarantine, saying why.

    Raises:
        DataError: naming the table, the share and its most frequent problem.
    """
    for name, bad in bad_masks.items():
        n, total = int(bad.sum()), len(bad)
        if not total or n <= max_share * total:
            continue
        worst = max((p for p in report.problems if p.table == name), key=lambda p: p.rows)
        raise DataError(
            f"{source}: {n:,} of {total:,} rows of table {name} ({n / total:.0%}) would be quarantined, more than "
            f"{max_share:.0%}: the file is more likely read wrong than its rows bad, so nothing was loaded. Most often: {worst}. "
            f"Check the delimiter and the decimal point (10.5, not 10,5), the date order ({DAYFIRST_SETTING}) and the encoding "
            f"({ENCODING_SETTING}); if these rows really are bad, allow it with --max-quarantined-share (CHURN_MAX_QUARANTINED_SHARE)"
        )


def _line_failures(lines: pd.DataFrame, orders: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """An order line must belong to a known order, and only a return may take goods back.

    Args:
        lines: the typed ``order_lines`` rows.
        orders: the typed orders that passed validation.

    Returns:
        ``(column, rule, rows breaking it)`` for a line of an unknown order, a negative quantity on
        an order that is not a return (a positive amount), and an amount whose sign is not its
        quantity's.
    """
    order_amount = lines["order_id"].map(orders.drop_duplicates("order_id").set_index("order_id")["amount"])
    unknown = lines["order_id"].notna() & order_amount.isna()
    quantity, amount = lines["quantity"], lines["amount"]
    return [
        ("order_id", "for an order that is not in the orders table", unknown),
        ("quantity", "negative on an order that is not a return (its amount is positive): book returns as their own negative order", (quantity < 0) & (order_amount > 0)),
        ("amount", "of the opposite sign to the quantity", ((amount < 0) & (quantity > 0)) | ((amount > 0) & (quantity < 0))),
    ]


def _history_value_failures(history: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """A ``customer_history`` value must fit the attribute it sets, as the customers table's would.

    Args:
        history: the typed ``customer_history`` rows.

    Returns:
        ``(column, rule, rows breaking it)`` for a credit limit that is not a number of 0 or
        more and for a value outside the attribute's choices.
    """
    attribute, value = history["column"], history["value"]
    limit_ok = pd.to_numeric(value, errors="coerce").ge(0).fillna(False).astype(bool)
    out = [("value", "with a credit_limit that is not a number of 0 or more", (attribute == "credit_limit") & value.notna() & ~limit_ok)]
    for column, allowed in TABLES["customers"].choices.items():
        wrong = (attribute == column) & value.notna() & ~value.isin(allowed)
        out.append(("value", f"with a {column} that is not one of {', '.join(allowed)}", wrong))
    return out


def _row_schema_failures(typed: pd.DataFrame, name: str) -> list[tuple[str, str, pd.Series]]:
    """Run the pandera row schema and turn its failure cases into per-rule row masks."""
    schema = row_schema(TABLES[name], set(typed.columns))
    # required/unique are handled above with better messages; keep the value rules here
    for col in schema.columns.values():
        col.unique = False
        col.nullable = True
    try:
        schema.validate(typed, lazy=True)
        return []
    except pae.SchemaErrors as err:
        cases = err.failure_cases
    out = []
    for check, group in cases.groupby("check", sort=False):
        check = str(check)
        idx = group["index"].dropna().astype(int).unique()
        mask = pd.Series(False, index=typed.index)
        mask.loc[[i for i in idx if i in typed.index]] = True
        if " before " in check:  # a rule between two columns: name the first one
            out.append((check.split(" ")[0], f"with {check}", mask))
            continue
        column = str(group["column"].dropna().iloc[0])
        if check.startswith("isin"):
            allowed = ", ".join(TABLES[name].choices.get(column, ()))
            out.append((column, f"with a value that is not one of {allowed}", mask))
        elif check.startswith("greater_than_or_equal_to"):
            out.append((column, "negative (must be 0 or more; a credit note is a negative order)", mask))
        else:
            out.append((column, f"failing {check}", mask))
    return out


# ---------------------------------------------------------------------------------------------
# writing


def write_dataset(
    location: str | Path,
    data: Mapping[str, pd.DataFrame] | Iterable[Mapping[str, pd.DataFrame]],
    *,
    file_format: Literal["parquet", "csv"] = "parquet",
) -> dict[str, int]:
    """Write CRM tables to a folder, a DuckDB file or PostgreSQL, replacing tables of the same name.

    Args:
        location: target folder, .duckdb file or postgresql:// URL.
        data: one mapping of frames, or an iterable of such chunks (appended in order).
        file_format: for a folder, Parquet or CSV files.

    Returns:
        Rows written per table.
    """
    chunks: Iterator[Mapping[str, pd.DataFrame]] = iter([data]) if isinstance(data, Mapping) else iter(data)
    kind = location_kind(location)
    counts: dict[str, int] = {}
    writer: _FolderWriter | _DuckDBWriter | _PostgresWriter
    if kind == "folder":
        writer = _FolderWriter(Path(location), file_format)
    elif kind == "duckdb":
        writer = _DuckDBWriter(Path(location))
    else:
        writer = _PostgresWriter(str(location))
    try:
        for chunk in chunks:
            for name, frame in chunk.items():
                frame = _coerce_types(frame, name) if name in TABLES else frame
                writer.write(name, frame, first=name not in counts)
                counts[name] = counts.get(name, 0) + len(frame)
    finally:
        writer.close()
    return counts


class _FolderWriter:
    def __init__(self, folder: Path, file_format: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.fmt = folder, file_format
        self.writers: dict[str, Any] = {}  # pyarrow ParquetWriter per table

    def write(self, name: str, frame: pd.DataFrame, first: bool) -> None:
        path = self.folder / f"{name}.{self.fmt}"
        other = self.folder / f"{name}.{'csv' if self.fmt == 'parquet' else 'parquet'}"
        if first and other.exists():
            other.unlink()
        if self.fmt == "csv":
            out = frame.copy()
            for col in out.columns:
                if pd.api.types.is_datetime64_any_dtype(out[col]):
                    out[col] = out[col].dt.strftime("%Y-%m-%d")
            out.to_csv(path, index=False, mode="w" if first else "a", header=first)
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if first:
            self.writers[name] = pq.ParquetWriter(path, table.schema)
        self.writers[name].write_table(table.cast(self.writers[name].schema))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


class _DuckDBWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path))

    def write(self, name: str, frame: pd.DataFrame, first: bool) -> None:
        self.con.register("_chunk", frame)
        if first:
            self.con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _chunk')
        else:
            self.con.execute(f'INSERT INTO "{name}" SELECT * FROM _chunk')
        self.con.unregister("_chunk")

    def close(self) -> None:
        self.con.close()


class _PostgresWriter:
    """Tables into one PostgreSQL schema (created when missing), every identifier quoted by psycopg."""

    _TYPES = {"float64": "double precision", "int64": "bigint", "Int64": "bigint", "bool": "boolean"}

    def __init__(self, url: str) -> None:
        clean, schema = _split_pg_url(url)
        self.url = clean
        try:
            self.conn = psycopg.connect(clean.replace("postgresql+psycopg", "postgresql"), autocommit=False)
        except psycopg.Error as err:
            raise DataError(f"cannot connect to the database at {clean}: {_first_line(err)}") from None
        self.schema = schema or "public"
        self._run(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_sql.Identifier(self.schema)), what=f"creating schema {self.schema}")

    def _sql_type(self, series: pd.Series) -> pg_sql.SQL:
        if pd.api.types.is_datetime64_any_dtype(series):
            return pg_sql.SQL("date")
        return pg_sql.SQL(self._TYPES.get(str(series.dtype), "text"))

    def _run(self, statement: pg_sql.Composed, *, what: str) -> None:
        try:
            self.conn.execute(statement)
        except psycopg.Error as err:
            self.conn.rollback()
            raise DataError(f"{what} in the database at {self.url} failed: {_first_line(err)}") from None

    def write(self, name: str, frame: pd.DataFrame, first: bool) -> None:
        table = pg_sql.Identifier(self.schema, name)
        columns = pg_sql.SQL(", ").join(pg_sql.Identifier(str(c)) for c in frame.columns)
        if first:
            typed = pg_sql.SQL(", ").join(pg_sql.SQL("{} {}").format(pg_sql.Identifier(str(c)), self._sql_type(frame[c])) for c in frame.columns)
            self._run(pg_sql.SQL("DROP TABLE IF EXISTS {}").format(table), what=f"replacing table {name}")
            self._run(pg_sql.SQL("CREATE TABLE {} ({})").format(table, typed), what=f"creating table {name}")
        buf = io.StringIO()
        out = frame.copy()
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%d")
        out.to_csv(buf, index=False, header=False, na_rep="\\N")
        buf.seek(0)
        copy_sql = pg_sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(table, columns)
        try:
            with self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
                while data := buf.read(1 << 20):
                    copy.write(data)
        except psycopg.Error as err:
            self.conn.rollback()
            raise DataError(f"writing table {name} to the database at {self.url} failed: {_first_line(err)}") from None

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()
