"""What the customer buys: product breadth and its basket across product groups, from the order lines before T.

A wholesaler's customer rarely leaves in one step: it first moves one product group to a
competitor, then another, while its order rhythm holds. Counts and dates miss that; the lines show
it. A *purchase line* is an order line with a positive amount (a line of a return is not a
purchase). A *product group* is the line's ``category`` when the lines carry one, otherwise the
product itself, so every feature here is defined for any order log with products.

The windows are the orders group's: "the last 90 days" is [T - 90 days, T), "the 90 days before
that" is [T - 180, T - 90). A group is *regular* for a customer when it was bought in at least
:data:`REGULAR_QUARTERS` of the three 90-day quarters before the last 90 days ([T - 360, T - 90)).

The product profile says what kind of buyer the customer is, from its lines of the last 365 days:
its typical quantity per line and unit price, how widely its products sell, and how often the
customers who buy its products order again. That last figure, the *reorder rate* of a product, is
read from every customer's purchases of it that are at least 90 days old at T: the share after which
the customer ordered again within 90 days (smoothed towards the overall share by
:data:`REORDER_SMOOTHING` purchases). Only orders before T take part.

Only the lines of the 365 days before T are aggregated per snapshot. What needs the whole history
(when each customer first bought each product, how many customers bought a product, which purchases
were followed by a reorder) comes from :func:`line_history`: tables independent of T, filtered by
date in every snapshot, which a snapshot or a training set computes once (with the purchase lines
joined to their orders) for all its dates.

Counts are 0 for an active customer without lines in the window; shares, shifts and profiles are
missing where they are undefined (no spend to share out, no regular group, no matured purchase).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from features.dataset import CRMDataset
from features.registry import FEATURES, PointInTime, attach, model_features, ratio, settled

REGULAR_QUARTERS = 2
"""A group bought in at least this many of the three quarters [T - 360, T - 90) is one the customer buys regularly."""
QUARTER_DAYS = 90
REORDER_DAYS = 90
"""A purchase is followed by a reorder when the customer orders again within this many days."""
REORDER_SMOOTHING = 20.0
"""A product's reorder rate is pulled towards the overall rate as if it had this many more purchases at that rate."""


def group_column(lines: ir.Table) -> ir.StringColumn:
    """The product group of each line: its category when the lines have one, else its product."""
    if "category" in lines.columns:
        return lines.category.fill_null(lines.product_id)
    return lines.product_id


def purchase_lines(known: CRMDataset) -> ir.Table:
    """The purchase lines before T (positive amount), each with its customer, order date and product group.

    Args:
        known: the dataset cut at T (its order lines carry ``customer_id`` and ``order_date``).

    Returns:
        ``customer_id``, ``order_id``, ``order_date``, ``product_id``, ``group``, ``quantity`` and ``amount``.
    """
    lines = known.table("order_lines")
    bought = lines.filter(lines.amount > 0)
    return bought.select("customer_id", "order_id", "order_date", "product_id", group=group_column(bought), quantity=bought.quantity, amount=bought.amount)


def _product_breadth(year: ir.Table, first: ir.Table, at: PointInTime) -> ir.Table:
    """Per customer: products in the windows, products dropped and products new in the last 90 days."""
    last = at.within(year.order_date, QUARTER_DAYS)
    previous = at.between(year.order_date, 2 * QUARTER_DAYS, QUARTER_DAYS)
    products = year.group_by("customer_id", "product_id").aggregate(in_last=last.any(), in_previous=previous.any())
    breadth = products.group_by("customer_id").aggregate(
        products_90d=products.count(where=products.in_last),
        products_prev_90d=products.count(where=products.in_previous),
        products_dropped_90d=products.count(where=products.in_previous & ~products.in_last),
        products_365d=products.count(),
    )
    new = first.filter(at.within(first.first_bought, QUARTER_DAYS), first.first_bought < at.t)
    return attach(breadth, new.group_by("customer_id").aggregate(products_new_90d=new.count()))


def _basket_size(year: ir.Table) -> ir.Table:
    """Per customer: purchase lines per order over the 365 days before T."""
    sizes = year.group_by("customer_id").aggregate(lines=year.count(), orders=year.order_id.nunique())
    return sizes.select("customer_id", lines_per_order_365d=ratio(sizes.lines, sizes.orders))


def group_quarters(bought: ir.Table, at: PointInTime) -> ir.Table:
    """Per customer and product group: spend in the last 90 days and in [T - 360, T - 90), and the quarters bought there.

    Args:
        bought: :func:`purchase_lines` (of the 365 days before T, or more).
        at: the as-of date.

    Returns:
        ``customer_id``, ``group``, ``spend_last``, ``spend_before`` and ``quarters_before`` (0 to 3).
    """
    window = bought.filter(at.within(bought.order_date, 4 * QUARTER_DAYS))
    quarters = [at.between(window.order_date, (k + 1) * QUARTER_DAYS, k * QUARTER_DAYS) for k in (1, 2, 3)]
    return window.group_by("customer_id", "group").aggregate(
        spend_last=window.amount.sum(where=at.within(window.order_date, QUARTER_DAYS)).coalesce(0.0).cast(dt.float64),
        spend_before=window.amount.sum(where=~at.within(window.order_date, QUARTER_DAYS)).coalesce(0.0).cast(dt.float64),
        quarters_before=sum((ibis.ifelse(q.any(), 1, 0) for q in quarters), ibis.literal(0, type=dt.int64)),
    )


def _basket_mix(bought: ir.Table, at: PointInTime) -> ir.Table:
    """Per customer: how the spend moved between product groups, and what became of its regular groups."""
    g = group_quarters(bought, at)
    customer = ibis.window(group_by=g.customer_id)
    g = g.mutate(total_last=g.spend_last.sum().over(customer), total_before=g.spend_before.sum().over(customer))
    moved = (ratio(g.spend_last, g.total_last) - ratio(g.spend_before, g.total_before)).abs()
    regular = g.quarters_before >= REGULAR_QUARTERS
    mix = g.group_by("customer_id").aggregate(
        moved=moved.sum(),
        regular_groups=g.count(where=regular),
        regular_groups_lapsed_90d=g.count(where=regular & (g.spend_last <= 0)),
        regular_spend_last=g.spend_last.sum(where=regular).coalesce(0.0),
        total_last=g.total_last.max(),
    )
    share = ibis.ifelse(mix.regular_groups > 0, ratio(mix.regular_spend_last, mix.total_last), ibis.null(dt.float64))
    return mix.select(
        "customer_id",
        "regular_groups_lapsed_90d",
        group_share_shift_90d=settled(mix.moved * 0.5),
        regular_groups_share_90d=settled(share),
    )


@dataclass(frozen=True)
class LineHistory:
    """What the lines group reads from the whole history, as tables independent of T (see :func:`line_history`).

    Attributes:
        bought: :func:`purchase_lines`; a snapshot at T keeps the lines dated before T (the lines
            of the orders before T).
        first_purchases: ``customer_id``, ``product_id`` and ``first_bought``, the day of the
            customer's first purchase of the product; a snapshot at T keeps the rows dated before T
            (a first purchase before T is the first purchase among the lines before T).
        reorder_votes: ``product_id``, ``order_date``, ``purchases`` (customer-product-days) and
            ``reordered`` (those after which the customer ordered again within
            :data:`REORDER_DAYS`); a snapshot at T keeps the days before T - :data:`REORDER_DAYS`,
            whose reorders, if any, happened before T.
    """

    bought: ir.Table
    first_purchases: ir.Table
    reorder_votes: ir.Table


def purchase_days(bought: ir.Table, gaps: ir.Table) -> ir.Table:
    """Each day a customer bought a product, and whether the customer ordered again within :data:`REORDER_DAYS`.

    Args:
        bought: :func:`purchase_lines` (of a dataset cut at T, or of the whole history).
        gaps: :func:`features.orders.order_gaps` of the same orders.

    Returns:
        ``customer_id``, ``product_id``, ``order_date`` (one row per customer, product and day) and
        ``reordered`` (1 or 0).
    """
    purchases = bought.select("customer_id", "product_id", "order_date").distinct()
    soon = gaps.filter(gaps.gap <= REORDER_DAYS)
    followed = soon.select(_customer=soon.customer_id, _previous=(soon.order_date - soon.gap.cast(dt.int64).as_interval("D")).cast(dt.date))
    days = purchases.left_join(followed, (purchases.customer_id == followed._customer) & (purchases.order_date == followed._previous))
    return days.select("customer_id", "product_id", "order_date", reordered=ibis.ifelse(days._customer.isnull(), 0, 1))


def line_history(bought: ir.Table, days: ir.Table) -> LineHistory:
    """The whole-history tables of the lines group.

    Args:
        bought: :func:`purchase_lines`.
        days: :func:`purchase_days` of ``bought``.

    Returns:
        The purchase lines, the first purchases and the reorder votes.
    """
    first = days.group_by("customer_id", "product_id").aggregate(first_bought=days.order_date.min())
    votes = days.group_by("product_id", "order_date").aggregate(purchases=days.count(), reordered=days.reordered.sum())
    return LineHistory(bought=bought, first_purchases=first, reorder_votes=votes)


def product_reorder_rates(votes: ir.Table, at: PointInTime) -> ir.Table:
    """Per product: the smoothed share of its matured purchases after which the buyer ordered again within :data:`REORDER_DAYS`.

    Args:
        votes: :attr:`LineHistory.reorder_votes` (days on or after T - :data:`REORDER_DAYS` are ignored).
        at: the as-of date.

    Returns:
        ``product_id`` and ``reorder_rate``; products without a matured purchase have no row.
    """
    matured = votes.filter(votes.order_date < at.days_before(REORDER_DAYS))
    per_product = matured.group_by("product_id").aggregate(reordered=matured.reordered.sum(), purchases=matured.purchases.sum())
    overall = per_product.aggregate(overall=ratio(per_product.reordered.sum(), per_product.purchases.sum()))
    per_product = per_product.cross_join(overall)
    rate = (per_product.reordered + REORDER_SMOOTHING * per_product.overall) / (per_product.purchases + REORDER_SMOOTHING)
    return per_product.select("product_id", reorder_rate=rate.cast(dt.float64))


def _product_profile(year: ir.Table, history: LineHistory, at: PointInTime) -> ir.Table:
    """Per customer: its typical quantity and unit price, and how widely and how repeatedly its products sell."""
    first = history.first_purchases.filter(history.first_purchases.first_bought < at.t)
    reach = first.group_by("product_id").aggregate(buyers=first.count())
    rates = product_reorder_rates(history.reorder_votes, at)
    year = year.left_join(reach, "product_id").select(year, reach.buyers)
    year = year.left_join(rates, "product_id").select(year, rates.reorder_rate)
    rated = year.reorder_rate.notnull()
    return year.group_by("customer_id").aggregate(
        quantity_per_line_365d=year.quantity.abs().median().cast(dt.float64),
        unit_price_365d=ratio(year.amount, year.quantity.abs()).median().cast(dt.float64),
        product_reach_365d=year.buyers.median().cast(dt.float64),
        product_reorder_rate_365d=settled(ratio((year.amount * year.reorder_rate).sum(where=rated), year.amount.sum(where=rated))),
    )


COUNTS = ("products_90d", "products_prev_90d", "products_dropped_90d", "products_365d", "products_new_90d", "regular_groups_lapsed_90d")
"""The line features that count something: 0 for an active customer without lines in their windows."""


def line_features(known: CRMDataset, at: PointInTime, population: ir.Table, gaps: ir.Table, history: LineHistory | None = None) -> ir.Table:
    """The lines group of the snapshot, one row per active customer.

    Args:
        known: the dataset cut at T, with an ``order_lines`` table.
        at: the as-of date.
        population: the active customers (``customer_id``).
        gaps: :func:`features.orders.order_gaps` of the orders (for the reorder rates).
        history: :func:`line_history` computed once for many snapshots; default: from ``known``.

    Returns:
        ``customer_id`` and the lines group's features of the registry.
    """
    if history is None:
        bought = purchase_lines(known)
        history = line_history(bought, purchase_days(bought, gaps))
    bought = history.bought
    year = bought.filter(at.within(bought.order_date, 365), bought.order_date < at.t)
    c = population
    for group in (_product_breadth(year, history.first_purchases, at), _basket_size(year), _basket_mix(year, at), _product_profile(year, history, at)):
        c = attach(c, group)
    c = c.mutate(**{name: c[name].coalesce(0) for name in COUNTS})
    return c.select("customer_id", *(name for name in model_features(known) if FEATURES[name].group == "lines"))
