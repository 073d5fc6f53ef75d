"""Complaints (投诉) as of T: how many, how severe, how long they stay open.

A complaint opened before T and resolved on or after T is open at T (the cut dataset shows it
unresolved). Counts are 0 for a customer who never complained; days since the last complaint and
resolution times are missing for such a customer, because there is nothing to measure.
"""

from __future__ import annotations

import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import PointInTime, attach, days_between

COUNTS: tuple[str, ...] = ("complaints_90d", "complaints_365d", "open_complaints", "high_severity_complaints_365d")


def complaints_90d(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Complaints opened in the 90 days before T."""
    return c.complaint_id.count(where=at.within(c.opened_at, 90))


def complaints_365d(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Complaints opened in the 365 days before T."""
    return c.complaint_id.count(where=at.within(c.opened_at, 365))


def open_complaints(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Complaints not resolved before T."""
    return c.complaint_id.count(where=c.resolved_at.isnull())


def high_severity_complaints_365d(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """High-severity complaints opened in the 365 days before T."""
    return c.complaint_id.count(where=(c.severity == "high") & at.within(c.opened_at, 365))


def days_since_last_complaint(c: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days from the latest complaint to T."""
    return at.days_since(c.opened_at.max())


def mean_resolution_days_365d(c: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Average days from opening to resolution, over complaints resolved in the 365 days before T."""
    return days_between(c.opened_at, c.resolved_at).mean(where=at.within(c.resolved_at, 365))


def max_resolution_days_365d(c: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Longest days from opening to resolution, over complaints resolved in the 365 days before T."""
    return days_between(c.opened_at, c.resolved_at).max(where=at.within(c.resolved_at, 365))


def oldest_open_complaint_days(c: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days the oldest complaint still open at T has been open."""
    return at.days_since(c.opened_at.min(where=c.resolved_at.isnull()))


def complaint_features(known: CRMDataset, at: PointInTime, population: ir.Table) -> ir.Table:
    """The complaints group of the snapshot (only call when the complaints table is present).

    Args:
        known: the dataset cut at T.
        at: the as-of date.
        population: the snapshot population, one ``customer_id`` per row.

    Returns:
        ``customer_id`` and the complaint columns its data allows, one row per population customer (resolution features need
        ``resolved_at``, the severity count needs ``severity``).
    """
    c = known.table("complaints")
    aggregates = [complaints_90d, complaints_365d, days_since_last_complaint]
    if "resolved_at" in c.columns:
        aggregates += [open_complaints, mean_resolution_days_365d, max_resolution_days_365d, oldest_open_complaint_days]
    if "severity" in c.columns:
        aggregates.append(high_severity_complaints_365d)
    per_customer = c.group_by("customer_id").aggregate(**{f.__name__: f(c, at) for f in aggregates})
    joined = attach(population, per_customer)
    return joined.select(
        "customer_id",
        **{
            f.__name__: (joined[f.__name__].coalesce(0) if f.__name__ in COUNTS else joined[f.__name__]).cast("float64")
            for f in aggregates
        },
    )
