"""Recency, frequency and value: what the orders say about a customer as of T.

An order is a row with a positive amount; a return (negative amount) is not an order but is
deducted from revenue and counted in the returns share. Rows with a zero amount count as neither.
The usual gap between orders is taken over distinct order days, so two orders on one day are
one visit, not a gap of zero.

The rhythm columns compare the customer with its own past: the current silence against the gaps
it has had (``silence_percentile``), its last gap against its usual one (``last_gap_ratio``), how
much its order sizes vary (``order_value_cv_365d``), how often it orders (``order_rate_365d``), and
its orders in the same 90-day season a year ago (``orders_same_season_last_year``), which is
missing for every customer while the data do not reach back to that season's first day (the
oldest order of any customer is after T - 365 days), so that "no data" never reads as "no orders".
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import (
    FEATURES,
    PointInTime,
    attach,
    days_between,
    model_features,
    ratio,
    trend,
)

Aggregate = Callable[[ir.Table, PointInTime], ir.Scalar]

SEASON_DAYS = 90
"""The season of ``orders_same_season_last_year``: the 90 days from the same date a year before T."""
RATE_PER_DAYS = 30
"""``order_rate_365d`` counts order days per 30 days (about a month)."""


def _is_order(o: ir.Table) -> ir.BooleanColumn:
    return o.amount > 0


def _orders_within(o: ir.Table, at: PointInTime, days: int) -> ir.IntegerScalar:
    # rows, not order ids: the id is a required key, and not reading it saves a string column
    return o.count(where=_is_order(o) & at.within(o.order_date, days))


def _sum_within(value: ir.NumericColumn, where: ir.BooleanColumn) -> ir.FloatingScalar:
    return value.sum(where=where).coalesce(0.0).cast(dt.float64)


def active_customers(orders: ir.Table, at: PointInTime, active_days: int) -> ir.Table:
    """The snapshot population: customers with an order in the ``active_days`` days before T.

    Args:
        orders: the orders table, already cut at T.
        at: the as-of date.
        active_days: the activity window in days (365 by default elsewhere).

    Returns:
        A one-column table of distinct ``customer_id``.
    """
    return orders.filter(_is_order(orders), at.within(orders.order_date, active_days)).select("customer_id").distinct()


# per-customer aggregates over the orders before T


def days_since_last_order(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days from the last order to T."""
    return at.days_since(o.order_date.max(where=_is_order(o)))


def days_since_first_order(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days from the first order to T (tenure)."""
    return at.days_since(o.order_date.min(where=_is_order(o)))


def orders_30d(o: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Orders in the 30 days before T."""
    return _orders_within(o, at, 30)


def orders_90d(o: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Orders in the 90 days before T."""
    return _orders_within(o, at, 90)


def orders_180d(o: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Orders in the 180 days before T."""
    return _orders_within(o, at, 180)


def orders_365d(o: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Orders in the 365 days before T."""
    return _orders_within(o, at, 365)


def revenue_90d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Net revenue (orders less returns) in the 90 days before T."""
    return _sum_within(o.amount, at.within(o.order_date, 90))


def revenue_180d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Net revenue in the 180 days before T."""
    return _sum_within(o.amount, at.within(o.order_date, 180))


def revenue_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Net revenue in the 365 days before T."""
    return _sum_within(o.amount, at.within(o.order_date, 365))


def revenue_prev_180d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Net revenue in [T - 360 days, T - 180 days)."""
    return _sum_within(o.amount, at.between(o.order_date, 360, 180))


def ordered_value_90d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Value of orders (returns not deducted) in the 90 days before T."""
    return _sum_within(o.amount, _is_order(o) & at.within(o.order_date, 90))


def ordered_value_180d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Value of orders (returns not deducted) in the 180 days before T."""
    return _sum_within(o.amount, _is_order(o) & at.within(o.order_date, 180))


def ordered_value_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Value of orders (returns not deducted) in the 365 days before T."""
    return _sum_within(o.amount, _is_order(o) & at.within(o.order_date, 365))


def returned_value_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Value of returns in the 365 days before T, as a positive number."""
    return _sum_within(-o.amount, (o.amount < 0) & at.within(o.order_date, 365))


def orders_365d_to_275d_ago(o: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Orders in [T - 365 days, T - 275 days): the 90 days from the same date a year before T."""
    return o.count(where=_is_order(o) & at.between(o.order_date, 365, 365 - SEASON_DAYS))


def order_value_sd_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Sample standard deviation of the order values in the 365 days before T; missing with fewer than two orders."""
    return o.amount.std(where=_is_order(o) & at.within(o.order_date, 365)).cast(dt.float64)


def margin_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Gross margin in the 365 days before T; missing when no row in the window has a margin."""
    return o.margin.sum(where=at.within(o.order_date, 365)).cast(dt.float64)


def margin_base_365d(o: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Net revenue of the rows with a known margin in the 365 days before T."""
    return o.amount.sum(where=o.margin.notnull() & at.within(o.order_date, 365)).cast(dt.float64)


HISTORY: tuple[Aggregate, ...] = (days_since_last_order, days_since_first_order)
"""Aggregates over every order before T."""

YEAR: tuple[Aggregate, ...] = (
    orders_30d,
    orders_90d,
    orders_180d,
    orders_365d,
    revenue_90d,
    revenue_180d,
    revenue_365d,
    revenue_prev_180d,
    ordered_value_90d,
    ordered_value_180d,
    ordered_value_365d,
    returned_value_365d,
    orders_365d_to_275d_ago,
)
"""Counts and sums over the orders of the 365 days before T (read from those rows only); 0 without rows."""
YEAR_SPREAD: tuple[Aggregate, ...] = (order_value_sd_365d,)
"""Aggregates over the same rows that stay missing where they are undefined."""
MARGIN_AGGREGATES: tuple[Aggregate, ...] = (margin_365d, margin_base_365d)


def days_since_oldest_order(h: ir.Table) -> ir.FloatingColumn:
    """Days from the oldest order in the data (any customer's) to T: how far back the history reaches.

    Args:
        h: the per-customer history aggregates of every customer with orders before T.

    Returns:
        The same number on every row.
    """
    return h.days_since_first_order.max().over()


def order_gaps(orders: ir.Table) -> ir.Table:
    """Days between consecutive order days of each customer, dated by the later order.

    A gap dated before T involves only orders before T, so the gaps of the whole history can be
    computed once and filtered by date for every snapshot (see :func:`known_gaps`).

    Args:
        orders: an orders table (cut at T or not).

    Returns:
        ``customer_id``, ``order_date`` (of the later order) and ``gap`` in days (always > 0).
    """
    placed = orders.filter(_is_order(orders)).select("customer_id", "order_date")
    previous = placed.order_date.lag().over(ibis.window(group_by=placed.customer_id, order_by=placed.order_date))
    # a second order on the same day gives a gap of 0: dropping those leaves the gaps between order days
    return placed.mutate(gap=days_between(previous, placed.order_date)).filter(ibis._.gap > 0)


def known_gaps(gaps: ir.Table, history: ir.Table, at: PointInTime) -> ir.Table:
    """The gaps dated before T, each with its customer's days since the last order.

    Args:
        gaps: :func:`order_gaps` of the orders (any later gaps are filtered out here).
        history: per customer, ``days_since_last_order`` (the :data:`HISTORY` aggregates).
        at: the as-of date.

    Returns:
        ``customer_id``, ``order_date``, ``gap`` and ``days_since_last_order``; a customer with one
        order day before T has no row.
    """
    known = gaps.filter(gaps.order_date < at.t)
    return known.join(history.select("customer_id", "days_since_last_order"), "customer_id")


def median_gap_days(g: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """The customer's usual gap between orders: the median of the gaps between its order days before T."""
    return g.gap.median().cast(dt.float64)


def gap_count(g: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Gaps between order days before T (order days less one)."""
    return g.gap.count()


def gaps_shorter_than_silence(g: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Gaps before T shorter than the current silence (the days since the last order)."""
    return g.gap.count(where=g.gap < g.days_since_last_order)


def last_gap_days(g: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """The last gap between order days before T: the one dated on the last order day."""
    return g.gap.max(where=at.days_since(g.order_date) == g.days_since_last_order).cast(dt.float64)


def gaps_365d(g: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Gaps dated in the 365 days before T: the order days in that window other than the customer's first."""
    return g.gap.count(where=at.within(g.order_date, 365))


GAPS: tuple[Aggregate, ...] = (median_gap_days, gap_count, gaps_shorter_than_silence, last_gap_days, gaps_365d)
"""Aggregates over :func:`known_gaps`; customers with fewer than two order days before T get none."""


# derived from the aggregates


def overdue_ratio(c: ir.Table) -> ir.FloatingColumn:
    """Days since the last order over the usual gap; above 1 means later than usual."""
    return ratio(c.days_since_last_order, c.median_gap_days)


def orders_trend_90d(c: ir.Table) -> ir.FloatingColumn:
    """Trend of the order count, last 90 days against the 90 days before."""
    return trend(c.orders_90d, c.orders_180d - c.orders_90d)


def revenue_trend_90d(c: ir.Table) -> ir.FloatingColumn:
    """Trend of net revenue, last 90 days against the 90 days before."""
    return trend(c.revenue_90d, c.revenue_180d - c.revenue_90d)


def revenue_trend_180d(c: ir.Table) -> ir.FloatingColumn:
    """Trend of net revenue, last 180 days against the 180 days before."""
    return trend(c.revenue_180d, c.revenue_prev_180d)


def avg_order_value_365d(c: ir.Table) -> ir.FloatingColumn:
    """Average value of an order in the 365 days before T (returns not deducted)."""
    return ratio(c.ordered_value_365d, c.orders_365d)


def avg_order_value_trend_90d(c: ir.Table) -> ir.FloatingColumn:
    """Trend of the average order value, last 90 days against the 90 days before; missing without orders in both."""
    last = ratio(c.ordered_value_90d, c.orders_90d)
    previous = ratio(c.ordered_value_180d - c.ordered_value_90d, c.orders_180d - c.orders_90d)
    return trend(last, previous)


def returns_share_365d(c: ir.Table) -> ir.FloatingColumn:
    """Returned value over ordered value in the 365 days before T."""
    return ratio(c.returned_value_365d, c.ordered_value_365d)


def margin_rate_365d(c: ir.Table) -> ir.FloatingColumn:
    """Gross margin over the net revenue it was earned on, in the 365 days before T."""
    return ratio(c.margin_365d, c.margin_base_365d)


def silence_percentile(c: ir.Table) -> ir.FloatingColumn:
    """Share of the past gaps shorter than the current silence, smoothed: (shorter + 0.5) / (gaps + 1); missing without a gap."""
    return (c.gaps_shorter_than_silence.cast(dt.float64) + 0.5) / (c.gap_count.cast(dt.float64) + 1.0)


def last_gap_ratio(c: ir.Table) -> ir.FloatingColumn:
    """The last gap between order days over the usual (median) gap; above 1 means slowing down."""
    return ratio(c.last_gap_days, c.median_gap_days)


def order_value_cv_365d(c: ir.Table) -> ir.FloatingColumn:
    """Coefficient of variation of the order values in the 365 days before T: standard deviation / mean."""
    return ratio(c.order_value_sd_365d, avg_order_value_365d(c))


def order_days_365d(c: ir.Table) -> ir.IntegerColumn:
    """Distinct order days in the 365 days before T: one per gap dated there, plus the first order day if it is there."""
    first_in_window = ibis.ifelse(c.days_since_first_order <= 365, 1, 0)
    return c.gaps_365d.coalesce(0) + first_in_window


def order_rate_365d(c: ir.Table) -> ir.FloatingColumn:
    """Order days per 30 days over the 365 days before T, or since the first order when that is shorter."""
    return ratio(order_days_365d(c) * RATE_PER_DAYS, ibis.least(c.days_since_first_order, 365.0))


def orders_same_season_last_year(c: ir.Table) -> ir.IntegerColumn:
    """Orders in the 90 days from the same date a year before T; missing when the oldest order in the data is later."""
    return ibis.ifelse(c.days_since_oldest_order >= 365, c.orders_365d_to_275d_ago, ibis.null(dt.int64))


DERIVED: tuple[Callable[[ir.Table], ir.Column], ...] = (
    overdue_ratio,
    orders_trend_90d,
    revenue_trend_90d,
    revenue_trend_180d,
    avg_order_value_365d,
    avg_order_value_trend_90d,
    returns_share_365d,
    silence_percentile,
    last_gap_ratio,
    order_value_cv_365d,
    order_rate_365d,
    orders_same_season_last_year,
)
"""Columns computed from the aggregates of one customer."""


def order_features(known: CRMDataset, at: PointInTime, active_days: int, gaps: ir.Table | None = None) -> ir.Table:
    """The orders group of the snapshot, one row per active customer: its population.

    Every order before T is read once (for the first and last order, which also tell who is
    active), the orders of the 365 days before T once, and the gaps between order days once.

    Args:
        known: the dataset cut at T (nothing dated on or after T).
        at: the as-of date.
        active_days: population = customers with an order in this many days before T (the same
            customers as :func:`active_customers`, found without reading the orders again).
        gaps: :func:`order_gaps` computed once for many snapshots; default: from ``known``.

    Returns:
        ``customer_id`` and the orders group's features of the registry that the data can feed,
        one row per customer with an order in the ``active_days`` before T.
    """
    orders = known.table("orders")
    has_margin = "margin" in orders.columns
    year = orders.filter(at.within(orders.order_date, 365))
    year_aggregates = YEAR + YEAR_SPREAD + (MARGIN_AGGREGATES if has_margin else ())
    history = orders.group_by("customer_id").aggregate(**{f.__name__: f(orders, at) for f in HISTORY})
    history = history.mutate(days_since_oldest_order=days_since_oldest_order(history))
    population = history.filter(history.days_since_last_order <= active_days).select("customer_id")
    last_year = year.group_by("customer_id").aggregate(**{f.__name__: f(year, at) for f in year_aggregates})
    g = known_gaps(order_gaps(orders) if gaps is None else gaps, history, at)
    gap_aggregates = g.group_by("customer_id").aggregate(**{f.__name__: f(g, at) for f in GAPS})
    c = attach(attach(attach(population, history), last_year), gap_aggregates)
    c = c.mutate(**{f.__name__: c[f.__name__].coalesce(0) for f in YEAR})  # active, but not in the last 365 days
    derived = {f.__name__: f(c) for f in DERIVED}
    if has_margin:
        derived["margin_rate_365d"] = margin_rate_365d(c)
    c = c.mutate(**derived)
    return c.select("customer_id", *(name for name in model_features(known) if FEATURES[name].group == "orders"))
