"""Churn labels and the training set: snapshots at as-of dates over the history, each with its label.

A customer active at T (an order in the ``active_days`` before T) is lost (``churned = 1``) when it
places no order (a positive amount) in [T, T + H). A label is used only once it has matured: T + H
must not pass the end of the data (the day after the newest order, or the given ``as_of``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from features.dataset import CRMDataset, DataError
from features.registry import attach
from features.snapshot import SharedHistory, add_btyd_features, as_date, shared_history, snapshot_columns, snapshot_expr, to_snapshot_frame

Freq = Literal["auto", "monthly", "biweekly", "weekly"]
WARMUP_DAYS = 90
"""History needed before the first snapshot on a long history."""
SHORT_WARMUP_DAYS = 14
"""History needed before the first snapshot on a short history."""
SHORT_HISTORY_DAYS = 365
"""A history whose matured part (first order to the latest matured as-of date) is shorter than this is short."""


def churned(data: CRMDataset, as_of: date, horizon_days: int, customers: ir.Table) -> ir.Table:
    """Label each customer: 1 when it places no order in [T, T + H).

    Args:
        data: the CRM dataset (not cut at T: the label looks ahead).
        as_of: T.
        horizon_days: H.
        customers: the population, one row per ``customer_id``.

    Returns:
        ``customers`` with an integer ``churned`` column.
    """
    orders = data.table("orders")
    start = ibis.literal(as_of, type=dt.date)
    end = ibis.literal(as_of + timedelta(days=horizon_days), type=dt.date)
    ordered = (
        orders.filter(orders.amount > 0, orders.order_date >= start, orders.order_date < end)
        .select("customer_id")
        .distinct()
        .mutate(ordered_again=ibis.literal(1))
    )
    joined = attach(customers, ordered)
    return joined.mutate(churned=ibis.ifelse(joined.ordered_again.isnull(), 1, 0).cast(dt.int64)).drop("ordered_again")


def snapshot_dates(
    start: date,
    end: date,
    horizon_days: int = 90,
    freq: Freq = "auto",
    min_snapshots: int = 12,
) -> list[date]:
    """The as-of dates whose labels have matured, oldest first.

    The latest date is ``end - H``; earlier ones step back by calendar months ("monthly"), 14 days
    ("biweekly") or 7 days ("weekly") while enough history remains before them: 90 days of warm-up,
    or 28 days on a short history (less than :data:`SHORT_HISTORY_DAYS` from the first order to
    ``end - H``), where waiting 90 days would leave almost nothing to learn from. "auto" takes
    weekly dates on a short history; otherwise monthly dates, or biweekly, then weekly, when monthly
    gives fewer than ``min_snapshots``. When the history is too short even for the warm-up, the
    single latest date is used.

    Args:
        start: the day of the oldest order.
        end: the end of the data (exclusive): the day after the newest order, or the as-of date.
        horizon_days: H.
        freq: "auto", "monthly", "biweekly" or "weekly".
        min_snapshots: the fewest snapshots "auto" is content with.

    Returns:
        The as-of dates.

    Raises:
        DataError: when no label can mature (the history is not longer than the horizon).
    """
    if freq not in ("auto", "monthly", "biweekly", "weekly"):
        raise DataError(f"freq must be auto, monthly, biweekly or weekly, not {freq!r}")
    if horizon_days < 1:
        raise DataError(f"horizon_days must be at least 1, not {horizon_days}")
    latest = end - timedelta(days=horizon_days)
    if latest <= start:
        raise DataError(
            f"no churn label can mature: the order history runs from {start} to {end} "
            f"({(end - start).days} days), not longer than the {horizon_days}-day horizon. "
            "Give more history, or a shorter horizon (--horizon)."
        )
    short = (latest - start).days < SHORT_HISTORY_DAYS
    earliest = start + timedelta(days=SHORT_WARMUP_DAYS if short else WARMUP_DAYS)
    if latest < earliest:
        return [latest]

    def dates(step: str) -> list[date]:
        out: list[date] = []
        k = 0
        while True:
            if step == "monthly":
                t = (pd.Timestamp(latest) - pd.DateOffset(months=k)).date()
            else:
                t = latest - timedelta(days=k * (14 if step == "biweekly" else 7))
            if t < earliest:
                return out[::-1]
            out.append(t)
            k += 1

    if freq != "auto":
        return dates(freq)
    if short:
        return dates("weekly")
    for step in ("monthly", "biweekly", "weekly"):
        found = dates(step)
        if len(found) >= min_snapshots:
            return found
    return found


def labelled_snapshot_expr(
    data: CRMDataset, as_of: date, horizon_days: int = 90, active_days: int = 365, shared: SharedHistory | None = None
) -> ir.Table:
    """The snapshot at T with its ``churned`` label, as one unexecuted expression.

    Args:
        data: the CRM dataset, reaching at least to T + H.
        as_of: T.
        horizon_days: H.
        active_days: the activity window defining the population.
        shared: :func:`features.snapshot.shared_history` of ``data``, when shared by many snapshots.

    Returns:
        The snapshot columns (without ``as_of``) and ``churned``.
    """
    snapshot = snapshot_expr(data, as_of, active_days, shared)
    return churned(data, as_of, horizon_days, snapshot)


def build_training_set(
    data: CRMDataset,
    horizon_days: int = 90,
    as_of: date | None = None,
    active_days: int = 365,
    freq: Freq = "auto",
    min_snapshots: int = 12,
    progress: Callable[[int, int, date], None] | None = None,
    dates: Sequence[date] | None = None,
) -> pd.DataFrame:
    """Labelled snapshots at as-of dates over the history, stacked, for time-ordered training.

    Args:
        data: the CRM dataset.
        horizon_days: H; churned = no order in [T, T + H).
        as_of: cut the data here first, so that every label matures before it; default: the end
            of the data (the day after the newest order).
        active_days: population = customers with an order in this many days before T.
        freq: "auto" (monthly, finer when monthly gives too few dates, weekly on a short history),
            "monthly", "biweekly" or "weekly".
        min_snapshots: with "auto", go finer than monthly when monthly gives fewer snapshots.
        progress: called as ``progress(i, n, T)`` after the i-th of n snapshots (1-based).
        dates: explicit as-of dates instead of ``freq`` (backtests, benchmarks); each label must
            mature by the end of the data.

    Returns:
        The snapshots (see :func:`features.snapshot.build_snapshot`) stacked, oldest first, each
        row with its ``as_of`` and the integer label ``churned``.

    Raises:
        DataError: when no label can mature, or a given date's label cannot.
    """
    if active_days < 1:
        raise DataError(f"active_days must be at least 1, not {active_days}")
    if as_of is not None:
        as_of = as_date(as_of)
        data = data.cut(as_of)
    end = as_of or data.end_date()
    data.end_date()  # a clear error when no order is left before as_of
    if dates is None:
        dates = snapshot_dates(data.start_date(), end, horizon_days, freq, min_snapshots)
    dates = sorted({as_date(t) for t in dates})
    if not dates:
        raise DataError("no as-of dates were given for the training set")
    immature = [t for t in dates if t + timedelta(days=horizon_days) > end]
    if immature:
        raise DataError(
            f"the churn label at {immature[0]} has not matured: T + {horizon_days} days must not pass "
            f"the end of the data ({end}); use an as-of date on or before {end - timedelta(days=horizon_days)}"
        )
    columns = [*snapshot_columns(data), "churned"]
    frames = []
    params = None
    with shared_history(data, dates[0]) as shared:
        gaps = None if shared is None else shared.gaps
        for i, t in enumerate(dates, start=1):
            frame, fitted = add_btyd_features(labelled_snapshot_expr(data, t, horizon_days, active_days, shared).to_pandas(), data, t, gaps, params)
            params = fitted or params
            frame = to_snapshot_frame(frame, t, columns)
            frame["churned"] = frame["churned"].astype("int64")
            frames.append(frame)
            if progress is not None:
                progress(i, len(dates), t)
    return pd.concat(frames, ignore_index=True)
