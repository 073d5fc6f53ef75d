"""The point-in-time snapshot: one row per active customer as of T, every feature group joined on ``customer_id``.

The whole snapshot is one Ibis expression, executed once in the engine the dataset lives in
(DuckDB, PostgreSQL, or any backend Ibis compiles to); pandas only receives the final frame. It is
built from ``data.cut(T)``, so nothing dated on or after T can reach a feature. (The one shortcut,
:func:`shared_history`: the gaps between order days and the lines' whole-history tables, computed
once into temporary tables for the snapshot, its BG/NBD summary and every other snapshot of a
training set, are filtered by date: a gap dated before T involves only orders before T, and so do
a first purchase before T and a purchase's reorder before T.) The ``btyd_*`` figures are the one group computed outside the
query: the engine aggregates each customer's orders before T, a modified BG/NBD is fitted in Python
on a stratified sample of those customers (a few tenths of a second), and its figures for every
customer are joined onto the frame.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import ibis.expr.types as ir
import pandas as pd

from features.btyd import BTYDParams, btyd_features
from features.complaints import complaint_features
from features.contacts import contact_features
from features.dataset import CRMDataset, DataError
from features.lines import LineHistory, line_features, line_history, purchase_days, purchase_lines
from features.orders import order_features, order_gaps
from features.receivables import receivable_features
from features.registry import BTYD, BTYD_HORIZON_DAYS, BTYD_NO_ORDER_HORIZONS, DESCRIPTIVE, FEATURES, PointInTime, model_features
from features.tiers import tier_features


def as_date(value: date | datetime | str | pd.Timestamp) -> date:
    """A calendar day from a date, a datetime, a pandas Timestamp or an ISO string.

    Args:
        value: the day in any of those forms.

    Returns:
        The ``datetime.date``.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError) as err:
        raise DataError(f"{value!r} is not a date (use YYYY-MM-DD)") from err


def snapshot_columns(data: CRMDataset) -> list[str]:
    """The columns of a snapshot of ``data``, in order.

    Args:
        data: the CRM dataset.

    Returns:
        ``customer_id``, ``as_of``, the descriptive customer columns present, then the model features.
    """
    master = set(data.table("customers").columns) if data.has("customers") else set()
    descriptive = [c for c in DESCRIPTIVE if c in master]
    return ["customer_id", "as_of", *descriptive, *(f for f in model_features(data) if f not in descriptive)]


@dataclass(frozen=True)
class SharedHistory:
    """Tables independent of T that every snapshot of a run reads, filtered by date (see :func:`shared_history`).

    Attributes:
        gaps: :func:`features.orders.order_gaps` of the whole history.
        lines: :func:`features.lines.line_history` of the whole history (None without order lines).
    """

    gaps: ir.Table
    lines: LineHistory | None = None


def snapshot_expr(data: CRMDataset, as_of: date, active_days: int = 365, shared: SharedHistory | None = None) -> ir.Table:
    """The snapshot at ``as_of`` as one unexecuted Ibis expression (without the ``as_of`` column).

    Args:
        data: the CRM dataset (its tables may extend past ``as_of``; they are cut here).
        as_of: T; only data dated strictly before T is used.
        active_days: population = customers with an order in this many days before T.
        shared: :func:`shared_history` of ``data``, when shared by many snapshots; default: each
            snapshot computes its own from ``data.cut(as_of)``.

    Returns:
        One row per active customer: ``customer_id``, descriptive columns, features.
    """
    at = PointInTime(as_of)
    known = data.cut(as_of)
    gaps = order_gaps(known.table("orders")) if shared is None else shared.gaps
    orders = order_features(known, at, active_days, gaps)
    population = orders.select("customer_id")
    groups = [orders, tier_features(known, orders)]
    if known.has("order_lines"):
        groups.append(line_features(known, at, population, gaps, None if shared is None else shared.lines))
    if known.has("complaints"):
        groups.append(complaint_features(known, at, population))
    if known.has("invoices") and "paid_at" in known.table("invoices").columns:
        groups.append(receivable_features(known, at, population))
    if known.has("contacts"):
        groups.append(contact_features(known, at, population))
    snapshot = groups[0]
    for group in groups[1:]:
        snapshot = snapshot.join(group, "customer_id")
    return snapshot.select(*(c for c in snapshot_columns(data) if c not in ("as_of", *BTYD)))


def add_btyd_features(
    frame: pd.DataFrame, data: CRMDataset, as_of: date, gaps: ir.Table | None = None, start: BTYDParams | None = None
) -> tuple[pd.DataFrame, BTYDParams | None]:
    """Join the ``btyd_*`` figures of each customer onto an executed snapshot (when the data can feed them).

    The modified BG/NBD (penalizer 0.1, time in weeks, repeat order days) is fitted on a stratified
    sample of every customer with orders before T (:data:`~features.btyd.FIT_SAMPLE_SIZE`), not
    only the snapshot's population, and gives each customer the expected orders and the chance of
    no order in the next :data:`~features.registry.BTYD_HORIZON_DAYS` days, the chance of being
    alive, and the chance of no order at the :data:`~features.registry.BTYD_NO_ORDER_HORIZONS`.

    Args:
        frame: the engine's result of :func:`snapshot_expr` at ``as_of`` (with ``customer_id``).
        data: the CRM dataset.
        as_of: T; only orders dated strictly before T are read.
        gaps: :func:`features.orders.order_gaps` of ``data``'s orders, when already computed.
        start: the parameters fitted at a neighbouring date, to start the fit from.

    Returns:
        ``frame`` with the ``btyd_*`` columns of :func:`features.registry.model_features` added
        (missing where a customer has no order before T; ``frame`` itself when the data feed none),
        and the fitted parameters (None without a fit).
    """
    wanted = [name for name in model_features(data) if name in BTYD]
    if not wanted:
        return frame, None
    out = frame.copy()
    ids = out["customer_id"].astype(str)
    if ids.empty:
        for name in wanted:
            out[name] = pd.Series(dtype="float64")
        return out, None
    orders = data.cut(as_of).table("orders")
    figures = btyd_features(
        orders, as_of, BTYD_HORIZON_DAYS, customers=ids.tolist(), no_order_horizons=BTYD_NO_ORDER_HORIZONS, gaps=gaps, start=start
    )
    for name in wanted:
        out[name] = figures[name].to_numpy(dtype="float64", na_value=float("nan"))
    return out, figures.attrs.get("params")


def to_snapshot_frame(frame: pd.DataFrame, as_of: date, columns: list[str]) -> pd.DataFrame:
    """Give an executed snapshot its final types and order: float64 numbers, text categories, sorted ids.

    Args:
        frame: the engine's result.
        as_of: T, added as the ``as_of`` column.
        columns: the column order (from :func:`snapshot_columns`, plus any extra columns at the end).

    Returns:
        The snapshot frame.
    """
    out = frame.copy()
    out.insert(1, "as_of", pd.Series(pd.Timestamp(as_of), index=out.index).astype("datetime64[us]"))
    for col in out.columns:
        if col in ("customer_id", "as_of"):
            continue
        spec = FEATURES.get(col)
        if spec is not None and spec.kind == "numeric":
            out[col] = pd.to_numeric(out[col]).astype("float64")
        elif spec is not None or col in DESCRIPTIVE:
            out[col] = out[col].astype("str")
    out["customer_id"] = out["customer_id"].astype("str")
    extra = [c for c in out.columns if c not in columns]
    return out[[*columns, *extra]].sort_values("customer_id", ignore_index=True)


def build_snapshot(data: CRMDataset, as_of: date, active_days: int = 365) -> pd.DataFrame:
    """One row per active customer as of T, with the descriptive columns and every available feature.

    Args:
        data: the CRM dataset.
        as_of: T; only data dated strictly before T is used.
        active_days: population = customers with an order in this many days before T.

    Returns:
        ``customer_id``, ``as_of``, the descriptive columns the customers table has (``region``,
        ``segment``, ``channel``, ``settlement_terms``, ``account_manager``) and the features of
        :func:`features.registry.model_features`, sorted by ``customer_id``.
    """
    if active_days < 1:
        raise DataError(f"active_days must be at least 1, not {active_days}")
    as_of = as_date(as_of)
    with shared_history(data, as_of) as shared:
        frame, _ = add_btyd_features(snapshot_expr(data, as_of, active_days, shared).to_pandas(), data, as_of, shared.gaps if shared else None)
    return to_snapshot_frame(frame, as_of, snapshot_columns(data))


@contextmanager
def shared_history(data: CRMDataset, earliest: date | None = None) -> Iterator[SharedHistory | None]:
    """The tables independent of T, computed once into temporary tables for every query that needs them.

    The gaps between order days (a window over the whole order history) and, with order lines,
    the purchase lines joined to their orders, each customer's first purchase of each product and
    the reorder votes of each product and day are the costliest parts of a snapshot and do not depend on T: each is filtered by date in the
    snapshot query, the BTYD summary and every snapshot of a training set.

    Args:
        data: the CRM dataset.
        earliest: the earliest as-of date the tables will serve; the purchase lines kept are those
            of the 365 days before it and later (default: every line).

    Yields:
        The temporary tables (dropped afterwards), or None when the engine will not create them
        (each query then computes its own).
    """
    prefix = f"churn_shared_{uuid.uuid4().hex[:12]}"
    created: list[str | ir.CachedTable] = []

    def keep(name: str, expr: ir.Table) -> ir.Table:
        if data.kind == "spark":  # Spark has no temporary tables: a cached view (released by _drop) does the same
            table = expr.cache()
            created.append(table)
            return table
        table = data.con.create_table(f"{prefix}_{name}", expr, temp=True)
        created.append(f"{prefix}_{name}")
        return table

    try:
        gaps = keep("gaps", order_gaps(data.table("orders")))
        lines = None
        if data.has("order_lines"):
            every = purchase_lines(data.cut(data.end_date()))
            history = line_history(every, keep("purchase_days", purchase_days(every, gaps)))
            first, votes = keep("first_purchases", history.first_purchases), keep("reorder_votes", history.reorder_votes)
            _drop(data, [created.pop(1)])  # the purchase days: the snapshots read the two small tables made from them
            window = every if earliest is None else every.filter(PointInTime(earliest).within(every.order_date, 365))
            lines = LineHistory(keep("purchase_lines", window), first, votes)
    except Exception:  # noqa: BLE001 - an engine without temporary tables is only slower
        _drop(data, created)
        yield None
        return
    try:
        yield SharedHistory(gaps=gaps, lines=lines)
    finally:
        _drop(data, created)


def _drop(data: CRMDataset, names: list[str | ir.CachedTable]) -> None:
    for name in names:
        if isinstance(name, ir.CachedTable):
            name.release()
        else:
            data.con.drop_table(name, force=True)


