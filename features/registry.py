"""The model's feature set: every feature's name, group, kind, meaning and the data it needs.

Names carry their window and unit (``orders_90d``, ``days_since_last_order``). The one-line
descriptions are what the serving layer puts into plain-language reasons, so they are written for
an account manager, not for a data scientist.

Conventions used by several groups (also documented on each feature):

- T is the as-of date; "in the N days before T" means dated in [T - N days, T).
- An *order* is an orders row with a positive amount; a *return* is a row with a negative amount.
  Returns count in (net) revenue and in the returns share, never as orders.
- A *trend* compares the last window with the window of the same length before it:
  ``(last - previous) / (|last| + |previous|)``, from -1 (fell to nothing) through 0 (steady) to +1
  (rose from nothing); missing when both are zero.

This module also holds the few expression helpers every group shares (:class:`PointInTime`,
:func:`ratio`, :func:`trend`), so that a window is spelled the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

if TYPE_CHECKING:
    from features.dataset import CRMDataset

Group = Literal["orders", "lines", "complaints", "receivables", "contacts", "tiers", "btyd"]
Kind = Literal["numeric", "categorical"]

FEATURE_SET_VERSION = "1.3"
"""Raise the minor number when a feature is added, the major one when a definition changes."""


@dataclass(frozen=True)
class FeatureSpec:
    """One model feature.

    Attributes:
        name: the column name in a snapshot.
        group: the feature group (and module) that computes it.
        kind: "numeric" or "categorical".
        description: a one-line business meaning, used to write reasons ("days since the last order").
        table: the CRM table it is computed from.
        needs: further ``table.column`` inputs it needs (optional columns, other tables).
    """

    name: str
    group: Group
    kind: Kind
    description: str
    table: str
    needs: tuple[str, ...] = ()

    def available(self, columns: dict[str, set[str]]) -> bool:
        """Whether the data has what this feature needs.

        Args:
            columns: table name to its column names, for the tables present.

        Returns:
            True when ``table`` and every ``needs`` entry are present.
        """
        if self.table not in columns:
            return False
        for need in self.needs:
            table, _, column = need.partition(".")
            if table not in columns or (column and column not in columns[table]):
                return False
        return True


def _f(name: str, group: Group, description: str, table: str, *needs: str, kind: Kind = "numeric") -> FeatureSpec:
    return FeatureSpec(name, group, kind, description, table, tuple(needs))


_SPECS: tuple[FeatureSpec, ...] = (
    # orders: recency
    _f("days_since_last_order", "orders", "days since the last order", "orders"),
    _f("days_since_first_order", "orders", "days since the first order (how long the customer has bought)", "orders"),
    _f("median_gap_days", "orders", "the customer's usual number of days between orders (median gap)", "orders"),
    _f("overdue_ratio", "orders", "how late the next order is against the customer's own rhythm (days since last order / usual gap)", "orders"),
    # orders: frequency
    _f("orders_30d", "orders", "orders in the last 30 days", "orders"),
    _f("orders_90d", "orders", "orders in the last 90 days", "orders"),
    _f("orders_180d", "orders", "orders in the last 180 days", "orders"),
    _f("orders_365d", "orders", "orders in the last 365 days", "orders"),
    _f("orders_trend_90d", "orders", "change in the number of orders, last 90 days against the 90 days before", "orders"),
    # orders: value
    _f("revenue_90d", "orders", "net revenue in the last 90 days (returns deducted)", "orders"),
    _f("revenue_180d", "orders", "net revenue in the last 180 days (returns deducted)", "orders"),
    _f("revenue_365d", "orders", "net revenue in the last 365 days (returns deducted)", "orders"),
    _f("revenue_trend_90d", "orders", "change in revenue, last 90 days against the 90 days before", "orders"),
    _f("revenue_trend_180d", "orders", "change in revenue, last 180 days against the 180 days before", "orders"),
    _f("avg_order_value_365d", "orders", "average order value over the last 365 days", "orders"),
    _f("avg_order_value_trend_90d", "orders", "change in average order size, last 90 days against the 90 days before", "orders"),
    _f("returns_share_365d", "orders", "returns as a share of ordered value in the last 365 days", "orders"),
    _f("margin_365d", "orders", "gross margin earned in the last 365 days", "orders", "orders.margin"),
    _f("margin_rate_365d", "orders", "gross margin as a share of revenue in the last 365 days", "orders", "orders.margin"),
    # orders: rhythm, against the customer's own past
    _f("silence_percentile", "orders", "how unusual the current silence is for this customer (0.5 = typical, near 1 = longer than almost every gap between its orders so far)", "orders"),
    _f("last_gap_ratio", "orders", "the latest gap between orders against the customer's usual gap (above 1 = its rhythm is slowing, below 1 = speeding up)", "orders"),
    _f("order_value_cv_365d", "orders", "how irregular the customer's order sizes are over the last 365 days (spread against the average order; 0 = always the same)", "orders"),
    _f("orders_same_season_last_year", "orders", "orders in the same 90-day season a year ago (the 90 days from this date last year)", "orders"),
    _f("order_rate_365d", "orders", "how often the customer orders: order days per month over the last 365 days (or since its first order, if younger)", "orders"),
    # lines: what the customer buys (product groups are the lines' categories, or the products themselves)
    _f("products_90d", "lines", "distinct products bought in the last 90 days", "order_lines"),
    _f("products_prev_90d", "lines", "distinct products bought in the 90 days before that (180 to 90 days ago)", "order_lines"),
    _f("products_dropped_90d", "lines", "products bought 180 to 90 days ago and not in the last 90 days", "order_lines"),
    _f("products_365d", "lines", "distinct products bought in the last 365 days", "order_lines"),
    _f("products_new_90d", "lines", "products bought in the last 90 days for the first time", "order_lines"),
    _f("lines_per_order_365d", "lines", "products per order (order lines per order) over the last 365 days", "order_lines"),
    _f("group_share_shift_90d", "lines", "how far the spend moved between product groups, last 90 days against the 270 days before (0 = same mix, 1 = nothing in common)", "order_lines"),
    _f("regular_groups_lapsed_90d", "lines", "product groups bought regularly before (in two of the three quarters before the last 90 days) and not in the last 90 days", "order_lines"),
    _f("regular_groups_share_90d", "lines", "share of the last 90 days' spend in the product groups the customer bought regularly before", "order_lines"),
    _f("quantity_per_line_365d", "lines", "typical quantity on an order line over the last 365 days (median units: large for a trade buyer restocking, small for an occasional buyer)", "order_lines"),
    _f("unit_price_365d", "lines", "typical unit price of what the customer buys (median over its order lines of the last 365 days)", "order_lines"),
    _f("product_reach_365d", "lines", "how widely the customer's products sell: median number of customers who bought each of the products on its lines of the last 365 days", "order_lines"),
    _f("product_reorder_rate_365d", "lines", "how often the customers who buy its products order again within 90 days (its last 365 days' products, weighted by spend)", "order_lines"),
    # complaints
    _f("complaints_90d", "complaints", "complaints in the last 90 days", "complaints"),
    _f("complaints_365d", "complaints", "complaints in the last 365 days", "complaints"),
    _f("open_complaints", "complaints", "complaints still unresolved", "complaints", "complaints.resolved_at"),
    _f("high_severity_complaints_365d", "complaints", "high-severity complaints in the last 365 days", "complaints", "complaints.severity"),
    _f("days_since_last_complaint", "complaints", "days since the last complaint", "complaints"),
    _f("mean_resolution_days_365d", "complaints", "average days to resolve a complaint (complaints resolved in the last 365 days)", "complaints", "complaints.resolved_at"),
    _f("max_resolution_days_365d", "complaints", "longest days to resolve a complaint (complaints resolved in the last 365 days)", "complaints", "complaints.resolved_at"),
    _f("oldest_open_complaint_days", "complaints", "days the oldest unresolved complaint has been open", "complaints", "complaints.resolved_at"),
    # receivables
    _f("open_balance", "receivables", "unpaid invoice amount", "invoices", "invoices.paid_at"),
    _f("overdue_balance", "receivables", "unpaid invoice amount past its due date", "invoices", "invoices.paid_at"),
    _f("overdue_share", "receivables", "share of the unpaid amount that is past due", "invoices", "invoices.paid_at"),
    _f("max_days_past_due", "receivables", "days past due of the most overdue unpaid invoice", "invoices", "invoices.paid_at"),
    _f("weighted_days_past_due", "receivables", "days past due of the overdue amount, weighted by amount", "invoices", "invoices.paid_at"),
    _f("balance_0_30d", "receivables", "unpaid amount not due or up to 30 days past due", "invoices", "invoices.paid_at"),
    _f("balance_31_90d", "receivables", "unpaid amount 31 to 90 days past due", "invoices", "invoices.paid_at"),
    _f("balance_91_180d", "receivables", "unpaid amount 91 to 180 days past due", "invoices", "invoices.paid_at"),
    _f("balance_over_180d", "receivables", "unpaid amount more than 180 days past due (bad debt)", "invoices", "invoices.paid_at"),
    _f("late_paid_share_365d", "receivables", "share of invoices due in the last 365 days that were paid late or are still unpaid", "invoices", "invoices.paid_at"),
    _f("avg_days_to_pay_365d", "receivables", "average days from invoice to payment (invoices paid in the last 365 days)", "invoices", "invoices.paid_at"),
    _f("days_to_pay_change_90d", "receivables", "change in days to pay, last 90 days minus the 90 days before (days; positive = paying slower)", "invoices", "invoices.paid_at"),
    _f("balance_to_credit_limit", "receivables", "unpaid amount as a share of the credit limit", "invoices", "invoices.paid_at", "customers.credit_limit"),
    _f("debt_class", "receivables", "receivables class: no debt, short-term, long-term or bad debt", "invoices", "invoices.paid_at", kind="categorical"),
    # contacts
    _f("days_since_last_contact", "contacts", "days since the account manager last contacted the customer", "contacts"),
    _f("contacts_90d", "contacts", "account-manager contacts in the last 90 days", "contacts"),
    _f("contacts_365d", "contacts", "account-manager contacts in the last 365 days", "contacts"),
    # tiers
    _f("abc_class", "tiers", "ABC class by 12-month revenue (A = key account)", "orders", kind="categorical"),
    _f("pyramid_tier", "tiers", "customer pyramid tier by 12-month revenue (platinum, gold, iron, lead)", "orders", kind="categorical"),
    _f("rfm_recency_score", "tiers", "RFM recency score (1 to 5, 5 = ordered most recently)", "orders"),
    _f("rfm_frequency_score", "tiers", "RFM frequency score (1 to 5, 5 = orders most often)", "orders"),
    _f("rfm_monetary_score", "tiers", "RFM monetary score (1 to 5, 5 = highest revenue)", "orders"),
    _f("lifecycle_stage", "tiers", "lifecycle stage (new, growing, mature, declining)", "orders", kind="categorical"),
    _f("settlement_terms", "tiers", "settlement terms (cash, prepaid, credit)", "customers", "customers.settlement_terms", kind="categorical"),
    _f("channel", "tiers", "sales channel (direct, distributor, agent, retail)", "customers", "customers.channel", kind="categorical"),
    _f("region", "tiers", "region", "customers", "customers.region", kind="categorical"),
    _f("segment", "tiers", "customer segment", "customers", "customers.segment", kind="categorical"),
    # btyd: the buy-till-you-die model (modified BG/NBD) fitted on every customer's orders before T
    _f("btyd_expected_orders_90d", "btyd", "orders expected in the next 90 days by the buy-till-you-die model", "orders"),
    _f("btyd_p_alive", "btyd", "chance the customer is still buying, by the buy-till-you-die model", "orders"),
    _f("btyd_p_no_order_30d", "btyd", "chance of no order in the next 30 days by the buy-till-you-die model", "orders"),
    _f("btyd_p_no_order_90d", "btyd", "chance of no order in the next 90 days by the buy-till-you-die model", "orders"),
    _f("btyd_p_no_order_180d", "btyd", "chance of no order in the next 180 days by the buy-till-you-die model", "orders"),
)

FEATURES: dict[str, FeatureSpec] = {spec.name: spec for spec in _SPECS}

_GROUP_SPECS: tuple[FeatureSpec, ...] = (
    # partial churn: one row per customer and product group it buys regularly (features.group_risk)
    _f("group_days_since_last", "lines", "days since the customer last bought this product group", "order_lines"),
    _f("group_overdue_ratio", "lines", "how late the next purchase of this group is against the customer's own rhythm for it", "order_lines"),
    _f("group_quarters_bought", "lines", "quarters of the last four in which the customer bought this group", "order_lines"),
    _f("group_order_days_365d", "lines", "days in the last 365 on which the customer bought this group", "order_lines"),
    _f("group_share_365d", "lines", "this group's share of the customer's spend over the last 365 days", "order_lines"),
    _f("group_revenue_trend_90d", "lines", "change in spend on this group, last 90 days against the 90 days before", "order_lines"),
    _f("group_products_90d", "lines", "distinct products of this group bought in the last 90 days", "order_lines"),
    _f("customer_days_since_last_order", "lines", "days since the customer's last order of anything", "order_lines"),
    _f("customer_regular_groups", "lines", "product groups the customer buys regularly", "order_lines"),
)
GROUP_FEATURES: tuple[str, ...] = tuple(s.name for s in _GROUP_SPECS)
"""The features of a partial-churn row (a customer and a product group it buys regularly), with their meanings in :data:`GROUP_FEATURE_SPECS`."""
GROUP_FEATURE_SPECS: dict[str, FeatureSpec] = {spec.name: spec for spec in _GROUP_SPECS}
CATEGORICAL: tuple[str, ...] = tuple(s.name for s in _SPECS if s.kind == "categorical")
NUMERIC: tuple[str, ...] = tuple(s.name for s in _SPECS if s.kind == "numeric")

BTYD_HORIZON_DAYS = 90
"""The horizon of the ``btyd_*`` figures (fixed, so that their names and meaning do not depend on the label horizon)."""
BTYD_NO_ORDER_HORIZONS: tuple[int, ...] = (30, 180)
"""Further horizons of the chance of no order (``btyd_p_no_order_<N>d``), from the same fitted model."""
BTYD: tuple[str, ...] = tuple(s.name for s in _SPECS if s.group == "btyd")
"""Features computed outside the engine query (a model fitted in Python per as-of date), joined afterwards."""
BTYD_PRIOR_FEATURE = "btyd_p_no_order_90d"
"""The BG/NBD probability a booster may start from (its logit as the initial score)."""

DESCRIPTIVE: tuple[str, ...] = ("region", "segment", "channel", "settlement_terms", "account_manager")
"""Customer-master columns carried into every snapshot when the customers table has them."""

CLASSIFICATION: tuple[str, ...] = (
    "abc_class",
    "pyramid_tier",
    "revenue_365d",
    "rfm_recency_score",
    "rfm_frequency_score",
    "rfm_monetary_score",
    "lifecycle_stage",
)
"""Columns the serving layer relies on to treat customers by category."""


def table_columns(data: CRMDataset) -> dict[str, set[str]]:
    """The tables present in ``data`` and their columns.

    Args:
        data: the CRM dataset.

    Returns:
        Table name to the set of its column names.
    """
    return {name: set(table.columns) for name, table in data.tables.items()}


def model_features(data: CRMDataset) -> list[str]:
    """The features this dataset can feed: those whose tables and columns are present.

    Features of an absent optional table are left out rather than filled with zeros that
    pretend to know.

    Args:
        data: the CRM dataset.

    Returns:
        Feature names in registry order.
    """
    columns = table_columns(data)
    return [spec.name for spec in _SPECS if spec.available(columns)]


# ---------------------------------------------------------------------------------------------
# expression helpers shared by the feature groups


@dataclass(frozen=True)
class PointInTime:
    """The as-of date T of a snapshot, with the window bounds the features use.

    Attributes:
        as_of: T; only data dated strictly before it is used.
    """

    as_of: date

    @property
    def t(self) -> ir.DateScalar:
        """T as an engine literal."""
        return ibis.literal(self.as_of, type=dt.date)

    def days_before(self, days: int) -> ir.DateScalar:
        """The first day of the window "the ``days`` days before T": T - ``days``."""
        return ibis.literal(self.as_of - timedelta(days=days), type=dt.date)

    def within(self, column: ir.DateColumn, days: int) -> ir.BooleanColumn:
        """Whether ``column`` falls in the ``days`` days before T (the data is already cut at T)."""
        return column >= self.days_before(days)

    def between(self, column: ir.DateColumn, start_days: int, end_days: int) -> ir.BooleanColumn:
        """Whether ``column`` falls in [T - start_days, T - end_days)."""
        return (column >= self.days_before(start_days)) & (column < self.days_before(end_days))

    def days_since(self, value: ir.DateValue) -> ir.FloatingValue:
        """Whole days from ``value`` to T, as a float (missing stays missing)."""
        return self.t.delta(value, unit="day").cast(dt.float64)


def days_between(start: ir.DateValue, end: ir.DateValue) -> ir.FloatingValue:
    """Whole days from ``start`` to ``end`` as a float.

    Args:
        start: the earlier date.
        end: the later date.

    Returns:
        ``end - start`` in days.
    """
    return end.delta(start, unit="day").cast(dt.float64)


SETTLED_DIGITS = 12
"""Decimal places kept of a feature that sums floats: the engines add in parallel, in no fixed order."""


def settled(value: ir.NumericValue) -> ir.FloatingValue:
    """``value`` rounded to :data:`SETTLED_DIGITS` places, so that a float sum reads the same on every run.

    A parallel sum of floats differs in its last bits from run to run; two customers with the same
    share then get values a hair apart, and LightGBM bins them apart, so the same data would train
    another model.

    Args:
        value: a float sum or a quotient of float sums.

    Returns:
        The rounded float.
    """
    return value.cast(dt.float64).round(SETTLED_DIGITS).cast(dt.float64)


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """``numerator / denominator``, missing when the denominator is zero or missing.

    Args:
        numerator: the dividend.
        denominator: the divisor.

    Returns:
        The float quotient.
    """
    return numerator.cast(dt.float64) / denominator.cast(dt.float64).nullif(0.0)


def trend(last: ir.NumericValue, previous: ir.NumericValue) -> ir.FloatingValue:
    """``(last - previous) / (|last| + |previous|)``: -1 fell to nothing, 0 steady, +1 rose from nothing.

    Args:
        last: the value in the latest window.
        previous: the value in the window before it.

    Returns:
        The bounded change, missing when both are zero or either is missing.
    """
    return ratio(last - previous, last.abs() + previous.abs())


def attach(left: ir.Table, right: ir.Table) -> ir.Table:
    """Left-join ``right``'s columns onto ``left`` by ``customer_id`` (one ``customer_id`` column kept).

    Args:
        left: one row per customer; every row is kept.
        right: at most one row per customer.

    Returns:
        ``left``'s columns followed by ``right``'s other columns (missing where ``right`` has no row).
    """
    joined = left.left_join(right, left.customer_id == right.customer_id)
    return joined.select(*(left[c] for c in left.columns), *(right[c] for c in right.columns if c != "customer_id"))
