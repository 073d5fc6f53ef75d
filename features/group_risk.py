"""Partial churn: per customer and product group it buys regularly, the rows a model scores and the label it learns.

A customer that keeps ordering may still move a product group to a competitor. A group is one the
customer *buys regularly* at T when it bought it in at least
:data:`~features.lines.REGULAR_QUARTERS` of the four 90-day quarters before T ([T - 360, T)); its row says how the customer has bought that group (the
group's own recency and rhythm, its share of the customer's spend, its trend) next to the
customer's own recency. The group has *stopped* (``stopped = 1``) when the customer buys nothing of
it in [T, T + H). Product groups are the lines' categories, or the products themselves when the
lines carry none (:func:`features.lines.group_column`). Everything runs in the engine, from the data
cut at T; the label alone looks ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from features.dataset import CRMDataset, DataError
from features.labels import snapshot_dates
from features.lines import QUARTER_DAYS, REGULAR_QUARTERS, purchase_lines
from features.registry import GROUP_FEATURES, PointInTime, ratio, trend
from features.snapshot import as_date

LABEL = "stopped"
STAYED = "customer_stayed"
"""1 when the customer ordered anything in [T, T + H): a stopped group is then partial churn, not the whole customer leaving."""
KEYS = ("customer_id", "product_group")


def group_rows_expr(data: CRMDataset, as_of: date, active_days: int = 365) -> ir.Table:
    """The rows at T: one per active customer and product group it buys regularly, with :data:`GROUP_FEATURES`.

    Args:
        data: the CRM dataset with ``order_lines`` (cut here at T).
        as_of: T; only data dated strictly before it is used.
        active_days: the customer is active when it ordered in this many days before T.

    Returns:
        ``customer_id``, ``product_group``, ``group_revenue_365d`` (its net purchases of the last 365 days, for the
        value at risk) and the features.
    """
    at = PointInTime(as_of)
    known = data.cut(as_of)
    orders = known.table("orders")
    customers = orders.filter(orders.amount > 0).group_by("customer_id").aggregate(customer_last=orders.order_date.max())
    customers = customers.filter(at.days_since(customers.customer_last) <= active_days)
    bought = purchase_lines(known)
    window = bought.filter(at.within(bought.order_date, 365))
    quarters = [at.between(window.order_date, (k + 1) * QUARTER_DAYS, k * QUARTER_DAYS) for k in range(4)]
    per = window.group_by("customer_id", product_group=window.group).aggregate(
        last=window.order_date.max(),
        quarters=sum((ibis.ifelse(q.any(), 1, 0) for q in quarters), ibis.literal(0, type=dt.int64)),
        order_days=window.order_date.nunique(),
        revenue=window.amount.sum().cast(dt.float64),
        revenue_90d=window.amount.sum(where=quarters[0]).coalesce(0.0).cast(dt.float64),
        revenue_prev_90d=window.amount.sum(where=quarters[1]).coalesce(0.0).cast(dt.float64),
        products_90d=window.product_id.nunique(where=quarters[0]),
    )
    per = per.mutate(customer_revenue=per.revenue.sum().over(ibis.window(group_by=per.customer_id)))
    regular = per.filter(per.quarters >= REGULAR_QUARTERS)
    regular = regular.mutate(regular_groups=regular.count().over(ibis.window(group_by=regular.customer_id)))
    rows = regular.inner_join(customers, regular.customer_id == customers.customer_id)
    usual_gap = ratio(ibis.literal(365.0), rows.order_days)
    days_since = at.days_since(rows.last)
    return rows.select(
        customer_id=rows.customer_id,
        product_group=rows.product_group,
        group_revenue_365d=rows.revenue,
        group_days_since_last=days_since,
        group_overdue_ratio=ratio(days_since, usual_gap),
        group_quarters_bought=rows.quarters.cast(dt.float64),
        group_order_days_365d=rows.order_days.cast(dt.float64),
        group_share_365d=ratio(rows.revenue, rows.customer_revenue),
        group_revenue_trend_90d=trend(rows.revenue_90d, rows.revenue_prev_90d),
        group_products_90d=rows.products_90d.cast(dt.float64),
        customer_days_since_last_order=at.days_since(rows.customer_last),
        customer_regular_groups=rows.regular_groups.cast(dt.float64),
    )


def stopped(data: CRMDataset, as_of: date, horizon_days: int, rows: ir.Table) -> ir.Table:
    """Label each row: 1 when the customer buys nothing of the group in [T, T + H).

    Args:
        data: the CRM dataset (not cut at T: the label looks ahead).
        as_of: T.
        horizon_days: H.
        rows: :func:`group_rows_expr` at T.

    Returns:
        ``rows`` with the integer :data:`LABEL` and :data:`STAYED` columns.
    """
    ahead = purchase_lines(data.cut(as_of + timedelta(days=horizon_days)))
    ahead = ahead.filter(ahead.order_date >= ibis.literal(as_of, type=dt.date))
    bought = ahead.select(_customer="customer_id", _group="group").distinct().mutate(_again=ibis.literal(1))
    stayed = ahead.select(_buyer="customer_id").distinct().mutate(_stayed=ibis.literal(1))
    joined = rows.left_join(bought, (rows.customer_id == bought._customer) & (rows.product_group == bought._group))
    joined = joined.left_join(stayed, joined.customer_id == stayed._buyer)
    label = ibis.ifelse(joined._again.isnull(), 1, 0).cast(dt.int64)
    return joined.select(*rows.columns, **{LABEL: label, STAYED: ibis.ifelse(joined._stayed.isnull(), 0, 1).cast(dt.int64)})


def build_group_rows(data: CRMDataset, as_of: date, active_days: int = 365) -> pd.DataFrame:
    """The rows at T, executed and typed, sorted by customer and group (for scoring)."""
    as_of = as_date(as_of)
    return _typed(group_rows_expr(data, as_of, active_days).to_pandas(), as_of)


def build_group_training_set(
    data: CRMDataset,
    horizon_days: int = 90,
    as_of: date | None = None,
    active_days: int = 365,
    dates: Sequence[date] | None = None,
    progress: Callable[[int, int, date], None] | None = None,
) -> pd.DataFrame:
    """Labelled group rows at the as-of dates of the customer training set, stacked oldest first.

    Args:
        data: the CRM dataset with ``order_lines``.
        horizon_days: H.
        as_of: cut here first (every label matures before it); default: the end of the data.
        active_days: the activity window.
        dates: explicit as-of dates; default: :func:`features.labels.snapshot_dates`.
        progress: called as ``progress(i, n, T)`` after each date.

    Returns:
        The rows with ``as_of`` and :data:`LABEL`.
    """
    if not data.has("order_lines"):
        raise DataError(f"the dataset at {data.source} has no order_lines table: partial churn needs the products of each order")
    end = as_of or data.end_date()
    known = data.cut(end) if as_of is not None else data
    chosen = list(dates) if dates is not None else snapshot_dates(known.start_date(), end, horizon_days)
    frames = []
    for i, t in enumerate(chosen, start=1):
        if t + timedelta(days=horizon_days) > end:
            raise DataError(f"the partial-churn label at {t} has not matured: it needs data up to {t + timedelta(days=horizon_days)}")
        rows = stopped(known, t, horizon_days, group_rows_expr(known, t, active_days))
        frames.append(_typed(rows.to_pandas(), t))
        if progress is not None:
            progress(i, len(chosen), t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _typed(frame: pd.DataFrame, as_of: date) -> pd.DataFrame:
    out = frame.copy()
    out.insert(2, "as_of", pd.Series(pd.Timestamp(as_of), index=out.index).astype("datetime64[us]"))
    out["customer_id"] = out["customer_id"].astype("str")
    out["product_group"] = out["product_group"].astype("str")
    for name in (*GROUP_FEATURES, "group_revenue_365d"):
        out[name] = pd.to_numeric(out[name]).astype("float64")
    return out.sort_values(list(KEYS), ignore_index=True)
