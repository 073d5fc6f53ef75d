"""Receivables (应收账款) as of T: what the customer owes, how late, and how it pays.

An invoice issued before T and paid on or after T is unpaid at T (the cut dataset shows no
payment). An unpaid invoice is overdue when its due date is before T; its days past due are
T - due date. The aging buckets split the whole unpaid amount by days past due, with invoices not
yet due in the first bucket, so the four buckets add up to ``open_balance``; over 180 days is bad
debt (呆死账). A customer without invoices owes nothing: balances, shares and days past due are 0;
payment-behaviour features (days to pay, late share) are missing because there is nothing to measure.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import PointInTime, attach, days_between, ratio

DEBT_CLASSES: tuple[str, ...] = ("no_debt", "short_term", "long_term", "bad_debt")
"""``debt_class`` values: nothing unpaid; unpaid at most 90 days past due; 91-180 days; over 180 days."""

AMOUNTS: tuple[str, ...] = (
    "open_balance",
    "overdue_balance",
    "balance_0_30d",
    "balance_31_90d",
    "balance_91_180d",
    "balance_over_180d",
    "overdue_days_amount",
    "max_days_past_due",
)


def _unpaid(i: ir.Table) -> ir.BooleanColumn:
    return i.paid_at.isnull()


def _overdue(i: ir.Table, at: PointInTime) -> ir.BooleanColumn:
    return _unpaid(i) & (i.due_at < at.t)


def _unpaid_sum(i: ir.Table, where: ir.BooleanColumn) -> ir.FloatingScalar:
    return i.amount.sum(where=_unpaid(i) & where).cast(dt.float64)


def open_balance(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Amount of the invoices unpaid at T."""
    return i.amount.sum(where=_unpaid(i)).cast(dt.float64)


def overdue_balance(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Unpaid amount whose due date is before T."""
    return i.amount.sum(where=_overdue(i, at)).cast(dt.float64)


def balance_0_30d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Unpaid amount not yet due or at most 30 days past due."""
    return _unpaid_sum(i, i.due_at >= at.days_before(30))


def balance_31_90d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Unpaid amount 31 to 90 days past due."""
    return _unpaid_sum(i, at.between(i.due_at, 90, 30))


def balance_91_180d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Unpaid amount 91 to 180 days past due."""
    return _unpaid_sum(i, at.between(i.due_at, 180, 90))


def balance_over_180d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Unpaid amount more than 180 days past due (bad debt)."""
    return _unpaid_sum(i, i.due_at < at.days_before(180))


def max_days_past_due(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days past due of the most overdue unpaid invoice."""
    return at.days_since(i.due_at.min(where=_overdue(i, at)))


def overdue_days_amount(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Sum of amount x days past due over the overdue invoices (numerator of the weighted days past due)."""
    return (i.amount * at.days_since(i.due_at)).sum(where=_overdue(i, at)).cast(dt.float64)


def invoices_due_365d(i: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Invoices due in the 365 days before T."""
    return i.count(where=at.within(i.due_at, 365) & (i.due_at < at.t))  # rows: the invoice id is a required key


def invoices_late_365d(i: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Of the invoices due in the 365 days before T, those paid after the due date or still unpaid."""
    late = _unpaid(i) | (i.paid_at > i.due_at)
    return i.count(where=at.within(i.due_at, 365) & (i.due_at < at.t) & late)


def avg_days_to_pay_365d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Average days from issue to payment, over invoices paid in the 365 days before T."""
    return days_between(i.issued_at, i.paid_at).mean(where=at.within(i.paid_at, 365))


def days_to_pay_90d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Average days to pay, over invoices paid in the 90 days before T."""
    return days_between(i.issued_at, i.paid_at).mean(where=at.within(i.paid_at, 90))


def days_to_pay_prev_90d(i: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Average days to pay, over invoices paid in [T - 180 days, T - 90 days)."""
    return days_between(i.issued_at, i.paid_at).mean(where=at.between(i.paid_at, 180, 90))


AGGREGATES = (
    open_balance,
    overdue_balance,
    balance_0_30d,
    balance_31_90d,
    balance_91_180d,
    balance_over_180d,
    max_days_past_due,
    overdue_days_amount,
    invoices_due_365d,
    invoices_late_365d,
    avg_days_to_pay_365d,
    days_to_pay_90d,
    days_to_pay_prev_90d,
)


def overdue_share(r: ir.Table) -> ir.FloatingColumn:
    """Overdue balance over open balance; 0 when nothing is unpaid."""
    return ratio(r.overdue_balance, r.open_balance).coalesce(0.0)


def weighted_days_past_due(r: ir.Table) -> ir.FloatingColumn:
    """Amount-weighted days past due of the overdue invoices; 0 when nothing is overdue."""
    return ratio(r.overdue_days_amount, r.overdue_balance).coalesce(0.0)


def late_paid_share_365d(r: ir.Table) -> ir.FloatingColumn:
    """Share of invoices due in the 365 days before T that were paid late or are unpaid."""
    return ratio(r.invoices_late_365d, r.invoices_due_365d)


def days_to_pay_change_90d(r: ir.Table) -> ir.FloatingColumn:
    """Days to pay in the last 90 days minus the 90 days before (positive = paying slower)."""
    return r.days_to_pay_90d - r.days_to_pay_prev_90d


def debt_class(r: ir.Table) -> ir.StringColumn:
    """No debt, short-term (at most 90 days past due), long-term (91-180) or bad debt (over 180)."""
    return ibis.cases(
        (r.open_balance <= 0, "no_debt"),
        (r.max_days_past_due > 180, "bad_debt"),
        (r.max_days_past_due > 90, "long_term"),
        else_="short_term",
    )


def balance_to_credit_limit(r: ir.Table) -> ir.FloatingColumn:
    """Open balance over the credit limit; missing without a (positive) credit limit."""
    return ratio(r.open_balance, r.credit_limit)


def settled_or_open(i: ir.Table, at: PointInTime) -> ir.Table:
    """The invoices any aggregate reads: unpaid at T, or due or paid in the 365 days before T.

    Every aggregate's condition implies one of these, so the other invoices (paid more than a year
    ago, most of the history) are dropped before aggregating; a customer left with none gets the
    values of a customer without invoices, which are the values its old invoices gave.
    """
    return i.filter(_unpaid(i) | at.within(i.due_at, 365) | at.within(i.paid_at, 365))


def receivable_features(known: CRMDataset, at: PointInTime, population: ir.Table) -> ir.Table:
    """The receivables group of the snapshot (only call when invoices with ``paid_at`` are present).

    Args:
        known: the dataset cut at T.
        at: the as-of date.
        population: the snapshot population, one ``customer_id`` per row.

    Returns:
        ``customer_id`` and the receivable columns, one row per population customer; ``balance_to_credit_limit`` only when the
        customers table has ``credit_limit``.
    """
    i = settled_or_open(known.table("invoices"), at)
    per_customer = i.group_by("customer_id").aggregate(**{f.__name__: f(i, at) for f in AGGREGATES})
    r = attach(population, per_customer)
    with_limit = known.has("customers") and "credit_limit" in known.table("customers").columns
    if with_limit:
        r = attach(r, known.table("customers").select("customer_id", "credit_limit"))
    r = r.mutate(**{name: r[name].coalesce(0.0) for name in AMOUNTS})
    out = {
        "open_balance": r.open_balance,
        "overdue_balance": r.overdue_balance,
        "overdue_share": overdue_share(r),
        "max_days_past_due": r.max_days_past_due,
        "weighted_days_past_due": weighted_days_past_due(r),
        "balance_0_30d": r.balance_0_30d,
        "balance_31_90d": r.balance_31_90d,
        "balance_91_180d": r.balance_91_180d,
        "balance_over_180d": r.balance_over_180d,
        "late_paid_share_365d": late_paid_share_365d(r),
        "avg_days_to_pay_365d": r.avg_days_to_pay_365d,
        "days_to_pay_change_90d": days_to_pay_change_90d(r),
        "debt_class": debt_class(r),
    }
    if with_limit:
        out["balance_to_credit_limit"] = balance_to_credit_limit(r)
    return r.select("customer_id", **out)
