"""Our own tables in the dataset's store: the batch runs (``risk_scores``), and beside them the actions,
drift figures and outcome reports. Each table is appended to, never overwritten; a folder dataset keeps
``<name>.parquet``. The batch run (:mod:`serving.batch`), the service, drift and outcomes read and
write them here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.dataset import connect, location_kind
from serving.store import close as disconnect
from serving.store import is_lock_error

RISK_SCORES = "risk_scores"
FOLDER_FILE = "risk_scores.parquet"
LOCK_WAIT_S = 30.0


class ScoringError(RuntimeError):
    """A batch run that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class RunStamp:
    """Which batch run a set of risk scores came from.

    Attributes:
        scored_at: when the run scored (UTC, naive).
        as_of: the as-of date of its features.
        model_name: registered model name.
        model_version: registered model version.
    """

    scored_at: datetime
    as_of: date
    model_name: str
    model_version: str


def connect_store(location: str, *, read_only: bool) -> ibis.BaseBackend:
    """A connection to the store, waiting a while for a DuckDB file another process holds."""

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return connect(location, read_only=read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as err:
            if not is_lock_error(err) or time.monotonic() > deadline:
                raise ScoringError(f"{location} is in use by another process ({err}); try again when it is free") from None
            time.sleep(0.2)


def read_rows(location: str | Path, name: str, types: dict[str, str]) -> pd.DataFrame:
    """Every row of one of our tables in the store (a folder keeps ``<name>.parquet``), as :func:`append_rows` wrote them.

    Args:
        location: the dataset location (folder, .duckdb file or postgresql:// URL).
        name: the table (our own constant).
        types: its columns, for the empty frame when nothing was stored yet.

    Returns:
        The rows; no rows, with the ``types`` columns, when the table does not exist.
    """
    if location_kind(location) == "folder":
        path = Path(location) / f"{name}.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=list(types))
    con = connect_store(str(location), read_only=True)
    try:
        return con.table(name).to_pandas() if name in con.list_tables() else pd.DataFrame(columns=list(types))
    finally:
        disconnect(con)


def append_rows(location: str | Path, name: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    """Append rows to a table of the store with the columns ``types`` (created on first use; a folder keeps ``<name>.parquet``).

    Args:
        location: the dataset location (folder, .duckdb file or postgresql:// URL).
        name: the table (our own constant).
        frame: rows with exactly the ``types`` columns.
        types: column to its kind (columns added later come last: an older table gains them).
    """

    if location_kind(location) == "folder":
        _append_parquet(Path(location) / f"{name}.parquet", frame, types)
        return
    con = connect_store(str(location), read_only=False)
    try:
        if name not in con.list_tables():
            con.create_table(name, schema=ibis.schema(types))
        else:
            _add_new_columns(con, location, name, types, list(con.table(name).columns))
        con.insert(name, frame)
    finally:
        disconnect(con)


def _add_new_columns(con: ibis.BaseBackend, location: str | Path, name: str, types: dict[str, str], have: list[str]) -> None:
    """Give a table written by an earlier version the columns added since (empty for its old runs).

    Raises:
        ScoringError: the table's columns are not an earlier version's (not a prefix of today's).
    """
    wanted = list(types)
    if have == wanted:
        return
    if have != wanted[: len(have)]:
        raise ScoringError(f"the {name} table in {location} has the columns {have}, not {wanted}: rename it to keep its history, and score again")
    sql = {"string": "TEXT", "float64": "DOUBLE PRECISION", "boolean": "BOOLEAN", "date": "DATE", "int64": "BIGINT", "timestamp": "TIMESTAMP"}
    for column in wanted[len(have):]:
        con.raw_sql(f"ALTER TABLE {name} ADD COLUMN {column} {sql[types[column]]}")  # our own constant names


def _arrow_schema(types: dict[str, str]) -> Any:
    kinds = {
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
        "string": pa.string(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "boolean": pa.bool_(),
    }
    return pa.schema([(col, kinds[kind]) for col, kind in types.items()])


def _append_parquet(path: Path, frame: pd.DataFrame, types: dict[str, str]) -> None:
    schema = _arrow_schema(types)
    new = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if path.exists():
        old = pq.read_table(path)
        if old.schema.names != schema.names[: old.num_columns]:
            raise ScoringError(f"{path} has the columns {old.schema.names}, not {schema.names}: rename it to keep its history, and score again")
        for i in range(old.num_columns, len(schema)):
            old = old.append_column(schema.field(i), pa.nulls(old.num_rows, schema.field(i).type))
        new = pa.concat_tables([old.cast(schema), new])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(new, tmp)
    os.replace(tmp, path)


def latest_run(location: str | Path) -> RunStamp | None:
    """The newest batch run in the store, without reading its rows.

    Args:
        location: the dataset location.

    Returns:
        Its stamp, or None when no run was stored.
    """

    if location_kind(location) == "folder":
        path = Path(location) / FOLDER_FILE
        if not path.exists():
            return None

        table = pq.read_table(path, columns=["scored_at", "as_of", "model_name", "model_version"])
        if table.num_rows == 0:
            return None
        newest = pc.max(table["scored_at"])
        top = table.filter(pc.equal(table["scored_at"], newest)).slice(0, 1).to_pylist()[0]
        return RunStamp(top["scored_at"], top["as_of"], top["model_name"], top["model_version"])
    con = connect_store(str(location), read_only=True)
    try:
        if RISK_SCORES not in con.list_tables():
            return None
        t = con.table(RISK_SCORES)
        newest = t.order_by(t.scored_at.desc()).select("scored_at", "as_of", "model_name", "model_version").limit(1).to_pandas()
    finally:
        disconnect(con)
    if newest.empty:
        return None
    row = newest.iloc[0]
    return RunStamp(pd.Timestamp(row["scored_at"]).to_pydatetime(), pd.Timestamp(row["as_of"]).date(), str(row["model_name"]), str(row["model_version"]))


def read_run(location: str | Path, stamp: RunStamp | None = None) -> pd.DataFrame | None:
    """The rows of one batch run (the newest by default).

    Args:
        location: the dataset location.
        stamp: which run; None for the newest.

    Returns:
        The rows ranked as stored, or None when the store holds no run.
    """

    stamp = stamp or latest_run(location)
    if stamp is None:
        return None
    when = pd.Timestamp(stamp.scored_at)
    if location_kind(location) == "folder":
        frame = pq.read_table(Path(location) / FOLDER_FILE, filters=[("scored_at", "=", when.to_pydatetime())]).to_pandas()
    else:
        con = connect_store(str(location), read_only=True)
        try:
            t = con.table(RISK_SCORES)
            frame = t.filter(t.scored_at == ibis.literal(when.to_pydatetime(), type="timestamp")).to_pandas()
        finally:
            disconnect(con)
    frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    return frame


def run_history(location: str | Path) -> pd.DataFrame:
    """Every stored batch run: stamp and row count, newest first.

    Args:
        location: the dataset location.

    Returns:
        Columns scored_at, as_of, model_name, model_version, customers.
    """

    keys = ["scored_at", "as_of", "model_name", "model_version"]
    if location_kind(location) == "folder":
        path = Path(location) / FOLDER_FILE
        if not path.exists():
            return pd.DataFrame(columns=[*keys, "customers"])
        frame = pd.read_parquet(path, columns=keys)
    else:
        con = connect_store(str(location), read_only=True)
        try:
            if RISK_SCORES not in con.list_tables():
                return pd.DataFrame(columns=[*keys, "customers"])
            frame = con.table(RISK_SCORES).select(*keys).to_pandas()
        finally:
            disconnect(con)
    counts = frame.groupby(keys, dropna=False).size().rename("customers").reset_index()
    return counts.sort_values("scored_at", ascending=False, ignore_index=True)
