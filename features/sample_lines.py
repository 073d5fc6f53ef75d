"""What the sample company's customers buy: product groups, each customer's basket, and a competitor that takes groups first.

The sample company (:mod:`features.sample_data`) sells :data:`PRODUCTS_PER_GROUP` products in each
of the :data:`PRODUCT_GROUPS`. Every customer spreads its spend over a few groups (a Dirichlet mix
around its segment's affinity: hospitality buys beverages, dairy and packaging, institutions dry
goods and cleaning) and, within each group, over a few favourite products; now and then it tries
another product of the group. An order's amount is split over the groups it touches and their
products; a return takes back one favourite of the customer's main group.

The hidden cause that lines reveal: when a competitor poaches a customer (the ``competitor`` cause
of a decline), it first takes one product group, 60 to 150 days before the decline starts, and a
second one half-way, so the basket narrows while the order rhythm holds; the orders shrink by the
groups' share of the basket. Independently, 8% of customers move one group elsewhere for good at a
random day without leaving (partial churn that is not churn), so a narrowing basket is a warning,
not a verdict.

Everything here draws from its own random streams (the catalogue from the seed alone, a block's
baskets and lines from the block's own stream), so the other tables of the sample stay as they
were; only the amounts of the orders a competitor thinned change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRODUCT_GROUPS = (
    "beverages",
    "dry goods",
    "dairy and chilled",
    "frozen",
    "snacks and confectionery",
    "cleaning and hygiene",
    "packaging and disposables",
    "household",
)
PRODUCTS_PER_GROUP = 30
MAX_FAVOURITES = 4
PARTIAL_CHURN_SHARE = 0.08
"""Customers who move one product group elsewhere for good without leaving."""
TRY_NEW_SHARE = 0.08
"""Chance that a product slot of an order goes to a product of the group that is not a favourite."""

# Per segment (order of features.sample_data.SEGMENTS), columns PRODUCT_GROUPS.
_SEGMENT_AFFINITY = np.array(
    [
        [1.0, 1.2, 1.0, 0.8, 1.0, 0.6, 0.5, 0.9],  # retail chain: broad
        [1.0, 1.3, 0.8, 0.4, 1.2, 0.5, 0.3, 0.8],  # independent shop
        [1.5, 0.6, 1.2, 1.0, 0.3, 0.6, 1.2, 0.1],  # hospitality
        [0.6, 0.9, 0.1, 0.1, 1.4, 0.8, 0.4, 1.5],  # online reseller
        [0.4, 1.4, 1.0, 0.6, 0.2, 1.4, 0.8, 0.3],  # institution
    ]
)
_MIX_CONCENTRATION = 1.6
_MIN_SHARE = 0.04  # a group below this share of the basket is not bought at all
_PRICE_MEDIAN = np.array([14.0, 9.0, 7.0, 18.0, 6.0, 11.0, 5.0, 13.0])


@dataclass(frozen=True)
class Catalogue:
    """The products: group and unit price of product number ``group * PRODUCTS_PER_GROUP + k``."""

    price: np.ndarray

    @property
    def group(self) -> np.ndarray:
        return np.arange(self.price.size) // PRODUCTS_PER_GROUP


def make_catalogue(seed: int) -> Catalogue:
    """The same catalogue for every block of one dataset (drawn from the seed alone)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,)))
    price = np.repeat(_PRICE_MEDIAN, PRODUCTS_PER_GROUP) * rng.lognormal(0.0, 0.5, len(PRODUCT_GROUPS) * PRODUCTS_PER_GROUP)
    return Catalogue(price=np.round(price, 2))


@dataclass(frozen=True)
class Baskets:
    """What each customer of a block buys, and when groups go to a competitor.

    Attributes:
        share: (customers, groups) share of the full basket; 0 for groups not bought.
        favourites: (customers, groups, MAX_FAVOURITES) product numbers within the group.
        favourite_count: (customers, groups) favourites in use (1 to MAX_FAVOURITES).
        breadth: (customers,) how many groups an order tends to touch.
        taken_group: (customers, 3) groups taken elsewhere (-1: none).
        taken_from: (customers, 3) day number from which each is taken (inf: never).
    """

    share: np.ndarray
    favourites: np.ndarray
    favourite_count: np.ndarray
    breadth: np.ndarray
    taken_group: np.ndarray
    taken_from: np.ndarray

    def share_on(self, rows: np.ndarray, days: np.ndarray) -> np.ndarray:
        """(len(rows), groups) basket shares on ``days``, groups already taken set to 0 (not renormalised)."""
        share = self.share[rows].copy()
        for k in range(self.taken_group.shape[1]):
            group = self.taken_group[rows, k]
            gone = (group >= 0) & (days >= self.taken_from[rows, k])
            share[np.flatnonzero(gone), group[gone]] = 0.0
        return share


def draw_baskets(
    rng: np.random.Generator, segment: np.ndarray, start: int, end: int, competitor_rows: np.ndarray, competitor_days: np.ndarray
) -> Baskets:
    """Each customer's basket, and the schedule of the groups a competitor (or the customer's own choice) takes away.

    Args:
        rng: the block's lines stream.
        segment: (customers,) segment index.
        start: first day of the window.
        end: last day of the window.
        competitor_rows: customers whose decline a competitor caused (first such decline each).
        competitor_days: the first day of each of those declines.

    Returns:
        The block's baskets.
    """
    n, groups = segment.size, len(PRODUCT_GROUPS)
    share = np.stack([rng.dirichlet(_MIX_CONCENTRATION * _SEGMENT_AFFINITY[s]) for s in segment]) if n else np.zeros((0, groups))
    share[share < _MIN_SHARE] = 0.0
    share /= share.sum(axis=1, keepdims=True)
    favourite_count = rng.integers(1, MAX_FAVOURITES + 1, (n, groups))
    favourites = np.argsort(rng.random((n, groups, PRODUCTS_PER_GROUP)), axis=2)[:, :, :MAX_FAVOURITES]
    taken_group = np.full((n, 3), -1, np.int64)
    taken_from = np.full((n, 3), np.inf)
    by_share = np.argsort(-share, axis=1)
    bought = (share > 0).sum(axis=1)
    lead = rng.uniform(60.0, 150.0, competitor_rows.size)
    first, second = competitor_rows[bought[competitor_rows] >= 2], competitor_rows[bought[competitor_rows] >= 3]
    taken_group[first, 0] = by_share[first, 1]
    taken_from[first, 0] = (competitor_days - lead)[bought[competitor_rows] >= 2]
    taken_group[second, 1] = by_share[second, 2]
    taken_from[second, 1] = (competitor_days - lead / 2.0)[bought[competitor_rows] >= 3]
    moving = np.flatnonzero((rng.random(n) < PARTIAL_CHURN_SHARE) & (bought >= 2))
    pick = np.minimum(rng.integers(1, 4, moving.size), bought[moving] - 1)
    taken_group[moving, 2] = by_share[moving, pick]
    taken_from[moving, 2] = rng.uniform(start, end, moving.size)
    return Baskets(share, favourites, favourite_count, rng.uniform(1.5, 4.0, n), taken_group, taken_from)


def remaining_share(baskets: Baskets, rows: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The share of the full basket a customer still buys from us on each day (1 before anything is taken)."""
    return baskets.share_on(rows, days).sum(axis=1)


def draw_lines(rng: np.random.Generator, baskets: Baskets, catalogue: Catalogue, rows: np.ndarray, days: np.ndarray, amounts: np.ndarray) -> dict[str, np.ndarray]:
    """The lines of a block's orders: which products, how many, for how much.

    Args:
        rng: the block's lines stream (after :func:`draw_baskets`).
        baskets: the block's baskets.
        catalogue: the products.
        rows: (orders,) customer row of each order.
        days: (orders,) day number of each order.
        amounts: (orders,) amount of each order (negative: a return).

    Returns:
        ``order`` (index into the orders), ``product`` (number in the catalogue), ``quantity`` and
        ``amount``, sorted by order; the amounts of an order's lines add up to the order's amount.
    """
    share = baskets.share_on(rows, days)
    sale = amounts > 0
    chance = np.where(share > 0, np.minimum(1.0, 0.2 + baskets.breadth[rows, None] * share), 0.0)
    touched = (rng.random(share.shape) < chance) & sale[:, None]
    main = np.argmax(share * rng.lognormal(0.0, 0.3, share.shape), axis=1)
    touched[np.arange(rows.size), main] |= ~touched.any(axis=1)  # every order touches a group; a return its main one
    order, group = np.nonzero(touched)
    weight = share[order, group] * rng.lognormal(0.0, 0.4, order.size)
    group_amount = amounts[order] * weight / np.bincount(order, weights=weight, minlength=rows.size)[order]
    two = (rng.random(order.size) < 0.4) & (baskets.favourite_count[rows[order], group] >= 2) & sale[order]
    split = np.ones(order.size)
    split[two] = rng.uniform(0.3, 0.7, int(two.sum()))
    slot = np.concatenate([np.arange(order.size), np.flatnonzero(two)])
    part = np.concatenate([split, 1.0 - split[two]])
    product = _pick_products(rng, baskets, rows[order[slot]], group[slot], second=np.arange(slot.size) >= order.size)
    return _finish(order[slot], group[slot] * PRODUCTS_PER_GROUP + product, group_amount[slot] * part, amounts, catalogue)


def _pick_products(rng: np.random.Generator, baskets: Baskets, rows: np.ndarray, groups: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A favourite of the group (the second slot of a group takes the next favourite), now and then another product."""
    count = baskets.favourite_count[rows, groups]
    k = (rng.integers(0, MAX_FAVOURITES, rows.size) + second) % count
    product = baskets.favourites[rows, groups, k]
    trying = rng.random(rows.size) < TRY_NEW_SHARE
    product[trying] = rng.integers(0, PRODUCTS_PER_GROUP, int(trying.sum()))
    return product


def _finish(order: np.ndarray, product: np.ndarray, amount: np.ndarray, order_amounts: np.ndarray, catalogue: Catalogue) -> dict[str, np.ndarray]:
    """Merge a product bought twice on one order, round to cents so the lines add up to the order, derive quantities."""
    key = order.astype(np.int64) * catalogue.price.size + product
    unique, inverse = np.unique(key, return_inverse=True)
    merged = np.bincount(inverse, weights=amount)
    order, product = unique // catalogue.price.size, unique % catalogue.price.size
    rounded = np.round(merged, 2)
    last = np.r_[np.flatnonzero(np.diff(order)), order.size - 1]
    rest = np.round(order_amounts[order[last]] - np.bincount(order, weights=rounded, minlength=order_amounts.size)[order[last]], 2)
    rounded[last] = np.round(rounded[last] + rest, 2)
    kept = rounded != 0.0  # a sliver that rounds to nothing: its cents went to the order's last line
    order, product, rounded = order[kept], product[kept], rounded[kept]
    quantity = np.sign(rounded) * np.maximum(1.0, np.round(np.abs(rounded) / catalogue.price[product]))
    return {"order": order, "product": product, "quantity": quantity, "amount": rounded}
