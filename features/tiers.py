"""Customer classification (客户分类) within the snapshot population, and the customer-master attributes.

The cuts, all on 12-month net revenue (``revenue_365d``) unless said otherwise:

- ``abc_class``: customers ranked by revenue; A = the customers that make the top 80% of the
  population's revenue (the customer crossing 80% is still A), B = the next 15% (up to 95%),
  C = the rest, including customers with no positive net revenue. Customers with equal revenue get
  the same class.
- ``pyramid_tier``: by revenue rank among the population: platinum = top 1% of customers, gold = the
  next 4% (top 5%), iron = the next 15% (top 20%), lead = the other 80%. A customer is in the top p%
  when fewer than p% of the population have strictly more revenue, so the largest customer is
  platinum even in a small population; a customer without positive revenue is lead.
- RFM scores, 1 to 5 with 5 best: ``1 + floor(5 * r / n)``, r = customers strictly worse, n = the
  population; recency by ``days_since_last_order`` (fewer days is better), frequency by
  ``orders_365d``, monetary by ``revenue_365d``. Ties share the lower score, so a score of 5 needs at
  least 80% of the population strictly worse.
- ``lifecycle_stage``: new = first order less than 180 days before T; otherwise growing when
  ``revenue_trend_180d`` > 0.1 (the last 180 days bring roughly 22% more than the 180 before),
  declining when it is below -0.1 (or there was no net revenue in either half-year), else mature.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import DESCRIPTIVE, attach

ABC_CUTS: tuple[float, float] = (0.80, 0.95)
PYRAMID_CUTS: tuple[tuple[str, float], ...] = (("platinum", 0.01), ("gold", 0.05), ("iron", 0.20))
NEW_CUSTOMER_DAYS = 180
LIFECYCLE_TREND = 0.1


def abc_class(s: ir.Table) -> ir.StringColumn:
    """A, B or C by the customer's place in the cumulative 12-month revenue of the population."""
    revenue = ibis.greatest(s.revenue_365d, 0.0)
    total = revenue.sum().over()
    up_to_peers = revenue.sum().over(ibis.window(order_by=ibis.desc(s.revenue_365d), range=(None, 0)))
    peers = revenue.sum().over(ibis.window(group_by=s.revenue_365d))
    before = up_to_peers - peers
    return ibis.cases(
        (total <= 0, "C"),
        (before < ABC_CUTS[0] * total, "A"),
        (before < ABC_CUTS[1] * total, "B"),
        else_="C",
    )


def pyramid_tier(s: ir.Table) -> ir.StringColumn:
    """Platinum, gold, iron or lead by revenue rank (top 1% / 5% / 20% of customers)."""
    better = ibis.rank().over(ibis.window(order_by=ibis.desc(s.revenue_365d)))
    n = s.count().over()
    cases = [(s.revenue_365d <= 0, "lead")]
    cases += [(better < share * n, tier) for tier, share in PYRAMID_CUTS]
    return ibis.cases(*cases, else_="lead")


def _score(worse_first: ir.Value, s: ir.Table) -> ir.FloatingColumn:
    worse = ibis.rank().over(ibis.window(order_by=worse_first))
    return ((worse * 5) / s.count().over()).floor().cast(dt.float64) + 1.0


def rfm_recency_score(s: ir.Table) -> ir.FloatingColumn:
    """Recency quintile score, 5 = ordered most recently."""
    return _score(ibis.desc(s.days_since_last_order), s)


def rfm_frequency_score(s: ir.Table) -> ir.FloatingColumn:
    """Frequency quintile score, 5 = most orders in 365 days."""
    return _score(s.orders_365d, s)


def rfm_monetary_score(s: ir.Table) -> ir.FloatingColumn:
    """Monetary quintile score, 5 = highest 12-month revenue."""
    return _score(s.revenue_365d, s)


def lifecycle_stage(s: ir.Table) -> ir.StringColumn:
    """New, growing, mature or declining, from tenure and the half-year revenue trend."""
    return ibis.cases(
        (s.days_since_first_order < NEW_CUSTOMER_DAYS, "new"),
        (s.revenue_trend_180d > LIFECYCLE_TREND, "growing"),
        (s.revenue_trend_180d.isnull() | (s.revenue_trend_180d < -LIFECYCLE_TREND), "declining"),
        else_="mature",
    )


CLASSIFIERS = (abc_class, pyramid_tier, rfm_recency_score, rfm_frequency_score, rfm_monetary_score, lifecycle_stage)


def tier_features(known: CRMDataset, orders: ir.Table) -> ir.Table:
    """The classification columns and the customer-master attributes of the population.

    Args:
        known: the dataset cut at T.
        orders: the orders group (:func:`features.orders.order_features`), one row per population customer.

    Returns:
        ``customer_id``, ``abc_class``, ``pyramid_tier``, the RFM scores, ``lifecycle_stage`` and
        those of ``region``, ``segment``, ``channel``, ``settlement_terms``, ``account_manager`` the
        customers table has.
    """
    s = orders.select("customer_id", **{f.__name__: f(orders) for f in CLASSIFIERS})
    if not known.has("customers"):
        return s
    master = known.table("customers")
    attributes = [c for c in DESCRIPTIVE if c in master.columns]
    if not attributes:
        return s
    return attach(s, master.select("customer_id", *attributes))
