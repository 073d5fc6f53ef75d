"""Reasons a person understands, from the model's own per-feature contributions.

A reason is one feature whose contribution raises the customer's risk (a positive contribution to
the model's margin), with its value, its impact and a plain sentence such as "ordered 41 days
ago against a usual rhythm of 12 days". Sentences come from per-feature templates that may use the
customer's other features; a template whose inputs are missing gives way to the next one, and a
feature without a template is described by its registry description.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from features.registry import FEATURES
from serving.schemas import Reason
from training.reference import on_risky_side

MIN_IMPACT = 1e-6

TEMPLATES: dict[str, tuple[str, ...]] = {
    "days_since_last_order": (
        "ordered {days_since_last_order:days} ago against a usual rhythm of {median_gap_days:days}",
        "last ordered {value:days} ago",
    ),
    "overdue_ratio": (
        "{value:times} its usual gap without an order (usually orders every {median_gap_days:days})",
        "the time since the last order is {value:times} the customer's usual gap between orders",
    ),
    "median_gap_days": ("usually orders only every {value:days}",),
    "days_since_first_order": ("first ordered {value:days} ago",),
    "orders_30d": ("{value:count:order} in the last 30 days", ),
    "orders_90d": (
        "{value:count:order} in the last 90 days against {orders_365d:count:order} in the last year",
        "{value:count:order} in the last 90 days",
    ),
    "orders_180d": ("{value:count:order} in the last 180 days",),
    "orders_365d": ("{value:count:order} in the last year",),
    "orders_trend_90d": ("orders {value:trend} in the last 90 days against the 90 days before",),
    "revenue_90d": ("revenue of {value:money} in the last 90 days",),
    "revenue_180d": ("revenue of {value:money} in the last 180 days",),
    "revenue_365d": ("revenue of {value:money} in the last year",),
    "revenue_trend_90d": ("revenue {value:trend} in the last 90 days against the 90 days before",),
    "revenue_trend_180d": ("revenue {value:trend} in the last 180 days against the 180 days before",),
    "avg_order_value_365d": ("average order of {value:money} over the last year",),
    "avg_order_value_trend_90d": ("average order size {value:trend} in the last 90 days against the 90 days before",),
    "returns_share_365d": ("returned {value:pct} of the ordered value in the last year",),
    "silence_percentile": ("silent longer than {value:pct} of its own past gaps between orders",),
    "last_gap_ratio": ("its latest gap between orders was {value:times} its usual gap",),
    "order_value_cv_365d": ("its order sizes swing by {value:pct} around their average over the last year",),
    "orders_same_season_last_year": ("{value:count:order} in the same season last year",),
    "order_rate_365d": ("orders on about {value:dec} days a month over the last year",),
    "margin_365d": ("gross margin of {value:money} in the last year",),
    "margin_rate_365d": ("gross margin of {value:pct} of revenue in the last year",),
    "products_90d": ("bought {value:count:product} in the last 90 days against {products_prev_90d:count:product} in the 90 days before", "bought {value:count:product} in the last 90 days"),
    "products_prev_90d": ("bought {value:count:product} in the 90 days before the last 90",),
    "products_dropped_90d": ("stopped buying {value:count:product} it bought in the 90 days before the last 90",),
    "products_365d": ("bought {value:count:product} in the last year",),
    "products_new_90d": ("tried {value:count:new product} in the last 90 days",),
    "lines_per_order_365d": ("about {value:dec} products per order over the last year",),
    "group_share_shift_90d": ("its spend moved between product groups: {value:pct} of its basket changed against the 270 days before",),
    "regular_groups_lapsed_90d": ("stopped buying {value:count:product group} it used to buy regularly",),
    "regular_groups_share_90d": ("only {value:pct} of its last 90 days' spend went to the product groups it bought regularly before",),
    "quantity_per_line_365d": ("buys about {value:dec} units per line",),
    "unit_price_365d": ("its products cost about {value:money} a unit",),
    "product_reach_365d": ("buys products that about {value:int} customers buy",),
    "product_reorder_rate_365d": ("buyers of its products reorder within 90 days {value:pct} of the time",),
    "complaints_90d": ("{value:count:complaint} in the last 90 days",),
    "complaints_365d": ("{value:count:complaint} in the last year",),
    "open_complaints": (
        "{value:count:complaint} still unresolved, the oldest open for {oldest_open_complaint_days:days}",
        "{value:count:complaint} still unresolved",
    ),
    "high_severity_complaints_365d": ("{value:count:high-severity complaint} in the last year",),
    "days_since_last_complaint": ("complained {value:days} ago",),
    "mean_resolution_days_365d": ("complaints took {value:days} on average to resolve",),
    "max_resolution_days_365d": ("a complaint took {value:days} to resolve",),
    "oldest_open_complaint_days": ("a complaint has been open for {value:days}",),
    "open_balance": (
        "{value:money} unpaid, {overdue_balance:money} of it past due",
        "{value:money} unpaid",
    ),
    "overdue_balance": (
        "{value:money} past due, the oldest invoice {max_days_past_due:days} late",
        "{value:money} past due",
    ),
    "overdue_share": ("{value:pct} of the unpaid amount is past due",),
    "max_days_past_due": ("an invoice is {value:days} past due",),
    "weighted_days_past_due": ("the overdue amount is {value:days} past due on average",),
    "balance_0_30d": ("{value:money} unpaid, not yet due or up to 30 days late",),
    "balance_31_90d": ("{value:money} unpaid 31 to 90 days past due",),
    "balance_91_180d": ("{value:money} unpaid 91 to 180 days past due",),
    "balance_over_180d": ("{value:money} unpaid more than 180 days past due (bad debt)",),
    "late_paid_share_365d": ("{value:pct} of the invoices due in the last year were paid late or not at all",),
    "avg_days_to_pay_365d": ("takes {value:days} on average to pay an invoice",),
    "days_to_pay_change_90d": ("pays {value:slower} than in the 90 days before",),
    "balance_to_credit_limit": ("the unpaid amount is {value:pct} of the credit limit",),
    "debt_class": ("receivables: {value:label}",),
    "days_since_last_contact": ("last contacted by the account manager {value:days} ago",),
    "contacts_90d": ("{value:count:contact} from the account manager in the last 90 days",),
    "contacts_365d": ("{value:count:contact} from the account manager in the last year",),
    "abc_class": ("ABC class {value}",),
    "pyramid_tier": ("{value:label} tier of the customer pyramid",),
    "rfm_recency_score": ("RFM recency score {value:int} of 5",),
    "rfm_frequency_score": ("RFM frequency score {value:int} of 5",),
    "rfm_monetary_score": ("RFM monetary score {value:int} of 5",),
    "lifecycle_stage": ("in the {value:label} stage of the customer lifecycle",),
    "settlement_terms": ("buys on {value:label} terms",),
    "channel": ("buys through the {value:label} channel",),
    "region": ("in region {value}",),
    "segment": ("in segment {value:label}",),
    "btyd_expected_orders_90d": ("its buying pattern predicts only {value:dec} orders in the next 90 days",),
    "btyd_p_alive": ("judged by its past buying rhythm, the chance that it still buys from us is {value:pct}",),
    "btyd_p_no_order_30d": ("its buying pattern gives a {value:pct} chance of no order in the next 30 days",),
    "btyd_p_no_order_90d": ("its buying pattern gives a {value:pct} chance of no order in the next 90 days",),
    "btyd_p_no_order_180d": ("its buying pattern gives a {value:pct} chance of no order in the next 180 days",),
}
"""Feature name to sentence templates, tried in order; ``value`` is the feature's own value."""

MISSING: dict[str, str] = {
    "days_since_last_contact": "no account-manager contact on record",
    "days_since_last_complaint": "no complaint on record",
    "median_gap_days": "only one order so far, so no ordering rhythm yet",
    "overdue_ratio": "only one order so far, so no ordering rhythm yet",
    "silence_percentile": "only one order day so far, so no ordering rhythm yet",
    "last_gap_ratio": "only one order day so far, so no ordering rhythm yet",
    "order_value_cv_365d": "fewer than two orders in the last year",
    "orders_same_season_last_year": "the order history does not reach back a year",
    "avg_days_to_pay_365d": "no invoice paid in the last year",
    "mean_resolution_days_365d": "no complaint resolved in the last year",
    "max_resolution_days_365d": "no complaint resolved in the last year",
    "oldest_open_complaint_days": "no open complaint",
    "balance_to_credit_limit": "no credit limit on record",
    "lines_per_order_365d": "no order lines in the last year",
    "group_share_shift_90d": "no spend in the last 90 days, or none in the 270 days before, to compare",
    "regular_groups_share_90d": "no product group bought regularly before, or no spend in the last 90 days",
    "quantity_per_line_365d": "no order lines in the last year",
    "unit_price_365d": "no order lines in the last year",
    "product_reach_365d": "no order lines in the last year",
    "product_reorder_rate_365d": "its products have no purchase old enough to tell whether buyers reorder",
}
"""Sentences for a feature whose value is missing (LightGBM gives missing values their own branch)."""

GROUP_FALLBACK = "{description}: {value}"


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value) or value is np.nan  # NaN, pd.NA
    except (TypeError, ValueError):
        return True


def _plural(n: float, noun: str) -> str:
    count = int(round(n))
    if count == 0:
        return f"no {noun}s"
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _trend_words(t: float) -> str:
    """A bounded trend ``(last - prev) / (|last| + |prev|)`` as words."""
    if t <= -0.995:
        return "fell to nothing"
    if t >= 0.995:
        return "rose from nothing"
    change = (1 + t) / (1 - t) - 1
    if abs(change) < 0.005:
        return "held steady"
    return f"fell by {abs(change):.0%}" if change < 0 else f"rose by {change:.0%}"


class _SentenceFormatter(string.Formatter):
    """``str.format`` with the specs ``days``, ``money``, ``pct``, ``int``, ``dec``, ``times``, ``trend``,
    ``slower``, ``label`` and ``count:<noun>``; a missing input raises KeyError."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        value = kwargs.get(str(key))
        if _missing(value):
            raise KeyError(key)
        return value

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec.startswith("count:"):
            return _plural(float(value), format_spec[len("count:"):])
        if format_spec == "days":
            days = int(round(float(value)))
            return f"{days:,} day" if days == 1 else f"{days:,} days"
        if format_spec == "money":
            return f"{float(value):,.0f}"
        if format_spec == "pct":
            share = float(value)
            if 0 < share < 0.005:
                return "less than 1%"
            if 0.995 < share < 1:
                return "more than 99%"
            return f"{share:.0%}"
        if format_spec == "int":
            return f"{int(round(float(value)))}"
        if format_spec == "dec":
            return f"{float(value):.1f}"
        if format_spec == "times":
            return f"{float(value):.1f} times"
        if format_spec == "trend":
            return _trend_words(float(value))
        if format_spec == "slower":
            lag = float(value)
            if abs(lag) < 0.5:
                return "as fast"
            unit = "day" if round(abs(lag)) == 1 else "days"
            return f"{abs(lag):.0f} {unit} {'slower' if lag > 0 else 'faster'}"
        if format_spec == "label":
            return str(value).replace("_", " ")
        if isinstance(value, float) and format_spec == "":
            return f"{value:,.2f}".rstrip("0").rstrip(".")
        return super().format_field(value, format_spec)


_FORMATTER = _SentenceFormatter()


def sentence(feature: str, row: Mapping[str, Any], description: str | None = None) -> str:
    """The plain sentence for one feature of one customer.

    Args:
        feature: the feature name.
        row: the customer's features (other features may appear in the sentence).
        description: the feature's registry description, for features without a template.

    Returns:
        The first template whose inputs are all present, else a sentence for a missing value,
        else ``"<description>: <value>"``.
    """
    value = row.get(feature)
    fields = {**row, "value": value}
    for template in TEMPLATES.get(feature, ()):
        try:
            return _FORMATTER.format(template, **fields)
        except (KeyError, ValueError, TypeError):
            continue
    if _missing(value):
        return MISSING.get(feature, f"{description or feature.replace('_', ' ')}: not known")
    try:
        shown = _FORMATTER.format_field(value, "")
    except (ValueError, TypeError):
        shown = str(value)
    return GROUP_FALLBACK.format(description=description or feature.replace("_", " "), value=shown)


def _plain(value: Any) -> float | str | None:
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def _number(value: Any) -> float | None:
    plain = _plain(value)
    return plain if isinstance(plain, float) else None


def top_indices(contrib: np.ndarray, n: int, min_impact: float = MIN_IMPACT) -> list[list[int]]:
    """For each row, the columns of its ``n`` largest positive contributions, largest first.

    Args:
        contrib: contributions, shape [rows, features].
        n: most reasons per row.
        min_impact: contributions at or below this do not count as raising the risk.

    Returns:
        One list of column indices per row (possibly empty).
    """
    contrib = np.atleast_2d(contrib)
    if contrib.shape[1] == 0 or n <= 0:
        return [[] for _ in range(contrib.shape[0])]
    k = min(n, contrib.shape[1])
    part = np.argpartition(-contrib, k - 1, axis=1)[:, :k]
    out: list[list[int]] = []
    for r in range(contrib.shape[0]):
        cols = sorted(part[r], key=lambda j: (-contrib[r, j], j))
        out.append([int(j) for j in cols if contrib[r, j] > min_impact])
    return out


def explain_row(
    contrib: np.ndarray,
    feature_names: Sequence[str],
    row: Mapping[str, Any],
    *,
    n: int = 3,
    groups: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    driver_of: Callable[[str, str | None], str] | None = None,
    min_impact: float = MIN_IMPACT,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Reason]:
    """The top reasons of one customer.

    A feature is a reason when its contribution raises the risk and, where the model knows which side
    of the typical value goes with churn (``reference``), the customer's value lies on that side: no
    "a less than 1% chance of no order" as the reason of a high risk.

    Args:
        contrib: the customer's contributions, shape [features], aligned with ``feature_names``.
        feature_names: the model's features in order.
        row: the customer's feature values (and any other columns the sentences use).
        n: most reasons.
        groups: feature name to group (the registry); None leaves groups empty.
        descriptions: feature name to description (the registry).
        driver_of: the playbook driver of a feature and its group (None: "general").
        min_impact: contributions at or below this are not reasons.
        reference: the model's typical value and risky side per feature (see
            :func:`training.reference.risk_reference`); None cites every raising feature.

    Returns:
        Up to ``n`` reasons, largest positive contribution first.
    """
    groups = groups or {}
    descriptions = descriptions or {}
    reference = reference or {}
    ranked = top_indices(np.asarray(contrib, dtype=float)[None, :], len(feature_names), min_impact)[0]
    cols = [j for j in ranked if on_risky_side(_number(row.get(feature_names[j])), reference.get(feature_names[j]))][:n]
    reasons = []
    for j in cols:
        name = feature_names[j]
        group = groups.get(name)
        reasons.append(
            Reason(
                feature=name,
                group=group,
                driver=driver_of(name, group) if driver_of is not None else "general",
                value=_plain(row.get(name)),
                impact=round(float(contrib[j]), 6),
                sentence=sentence(name, row, descriptions.get(name)),
            )
        )
    return reasons


def registry_maps() -> tuple[dict[str, str], dict[str, str]]:
    """Feature name to group and to description, from the feature registry.

    Returns:
        ``(groups, descriptions)``.
    """
    return {k: s.group for k, s in FEATURES.items()}, {k: s.description for k, s in FEATURES.items()}


def finite_or_none(value: float) -> float | None:
    """A float that JSON can carry: NaN and infinities become None.

    Args:
        value: a number.

    Returns:
        The value, or None.
    """
    return float(value) if value is not None and math.isfinite(value) else None
