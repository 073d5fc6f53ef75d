"""Account-manager contact (定期回访) as of T: how long since the last call or visit, and how often.

Contact counts are 0 for a customer never contacted; days since the last contact is then missing.
"""

from __future__ import annotations

import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import PointInTime, attach

COUNTS: tuple[str, ...] = ("contacts_90d", "contacts_365d")


def days_since_last_contact(c: ir.Table, at: PointInTime) -> ir.FloatingScalar:
    """Days from the latest contact to T."""
    return at.days_since(c.contacted_at.max())


def contacts_90d(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Contacts in the 90 days before T."""
    return c.count(where=at.within(c.contacted_at, 90))


def contacts_365d(c: ir.Table, at: PointInTime) -> ir.IntegerScalar:
    """Contacts in the 365 days before T."""
    return c.count(where=at.within(c.contacted_at, 365))


AGGREGATES = (days_since_last_contact, contacts_90d, contacts_365d)


def contact_features(known: CRMDataset, at: PointInTime, population: ir.Table) -> ir.Table:
    """The contacts group of the snapshot (only call when the contacts table is present).

    Args:
        known: the dataset cut at T.
        at: the as-of date.
        population: the snapshot population, one ``customer_id`` per row.

    Returns:
        ``customer_id`` and the contact columns, one row per population customer.
    """
    c = known.table("contacts")
    per_customer = c.group_by("customer_id").aggregate(**{f.__name__: f(c, at) for f in AGGREGATES})
    joined = attach(population, per_customer)
    return joined.select(
        "customer_id",
        **{
            f.__name__: (joined[f.__name__].coalesce(0) if f.__name__ in COUNTS else joined[f.__name__]).cast("float64")
            for f in AGGREGATES
        },
    )
