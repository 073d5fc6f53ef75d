"""Realistic sample CRM data for a wholesaler: customers, orders, complaints, invoices, contacts, customer history.

The generator simulates each customer month by month over the window of ``years`` ending on ``end``
and writes only what a CRM would record. Nothing in the tables names the churned customers: churn
has to be read from the traces its hidden causes leave. The mechanisms:

Customers and rhythm
    45% of customers exist before the window starts (tenure lognormal, median three years); the
    rest join uniformly over it. Each has a latent ordering rate (segment medians 17-70 orders a
    year, from about two a year to several a week; key accounts order more) and its own rhythm:
    gamma-distributed gaps around its own mean (shape 0.7-3.5, bursty to regular; key accounts
    +1.5), run through a time change so that season and lifecycle bend the rate. Seasons by segment:
    retail chains, shops and online resellers peak before Christmas, hospitality in summer and at
    Christmas (a fifth of it is summer-only and nearly closed in winter), institutions dip in the
    summer holidays and peak in September.

Value
    Order size and rate share a lognormal "value" factor, so the top 20% of customers make about
    85% of revenue; each order adds lognormal noise. Margin is 15-35% of the amount (lower for
    price-sensitive customers and key accounts), noisy, missing on 2% of orders. 3% of orders are
    followed 1-21 days later by a return: a negative order of 5-45% of the original.

Lifecycle
    New customers start at 30-70% of their mature rate and size and grow towards it over about
    three months; mature ones drift slowly (a per-customer trend of about +-12% a year). A churn
    trigger starts a decline: rate and size fall over 0-8 months (length by cause), after which the
    customer is lost (no more orders) or recovers (45-90% lost by cause, about two thirds overall).
    A lost customer may come back after nine months or more (win-back, 0.4% a month).

Hidden causes of churn (each adds to a monthly trigger hazard; a per-customer frailty multiplies the sum)
    - Service failures: complaints open at month end weigh by severity and by how long they have
      been open; complaints resolved slowly (over 14 days) weigh when they close.
    - Financial distress: a latent episode (most common in hospitality and small shops) ramps up
      over 3-10 months; it delays payments, leaves invoices unpaid, thins orders, and its hazard
      grows with its square, so late payment comes before the customer stops. A third of episodes pass.
    - Neglect: days since the account manager's last contact beyond the tier's callback rhythm (key
      monthly, important quarterly, others twice a year); a quarter of the managers contact their
      customers two to three times less often than the rhythm.
    - Competitor poaching: a gamma-distributed per-customer hazard, higher in the East region,
      visible in no table; it tends to end the relationship abruptly.
    - Price sensitivity: list prices rise every 1 March (margins widen for a few months after);
      price-sensitive customers, who already buy at lower margins, face a hazard spike after it.
    - New customers carry extra hazard in their first months (trial customers).
    With seed 42 and 5,000 customers the declines start from: base and trial 28%, complaints 18%,
    distress 17%, competitor 16%, neglect 14%, price 7%.

Complaints
    Monthly counts are Poisson in (expected orders)^0.7 times a per-customer propensity, tripled
    for customers with a hidden service-quality problem (who also complain more severely, more
    about delivery and service, and wait longer). Resolution time is lognormal (median 3 days,
    about 10% take over two weeks); 2.5% are never resolved, so some are open at ``end``.
    Distressed customers complain mostly about billing.

Invoices
    One invoice per positive order, issued on the order date. Credit customers have 30/45/60-day
    terms and pay at the due date plus a habitual delay (institutions are slow but loyal payers)
    plus a distress-driven delay of weeks to months; deeply distressed customers leave invoices
    unpaid. Cash and prepaid customers pay on the day of issue (due date = issue date). A credit
    invoice issued shortly before ``end`` may fall due after it (not yet due).

Contacts
    The account manager calls, visits, emails or meets each customer at a customer-specific cadence
    (tier rhythm times the manager's diligence, gamma gaps). Contacts do not stop at churn: after a
    loss they thin out gradually, a declining customer may get a rescue call or visit, a lost one a
    win-back call, and half of the high-severity complaints get a follow-up call.

Resulting figures (seed 42, 5,000 customers, 3 years)
    About 87 orders per customer; among customers with an order in the year before a date, 14-17%
    place none in the next 90 days. About three quarters of those have already stopped ordering by
    that date (the team's definition keeps a customer active for 12 months after its last order),
    so recency alone ranks churners well (AUC about 0.92); the hidden causes show among the others
    (late payments, complaints per order, contact gaps).

Order lines
    Each order is split into lines over product groups and products (:mod:`features.sample_lines`):
    every customer has its own mix of groups and favourite products. A competitor that poaches a
    customer takes one product group 60-150 days before the decline starts and a second half-way,
    so the basket narrows (and the orders shrink by those groups' share) while the rhythm holds;
    8% of customers move one group elsewhere without leaving. The lines draw from their own stream
    (``spawn_key=(3, k)``, the catalogue from ``(4,)``); only the amounts of thinned orders change.

Customer history
    Every customer's region, segment, channel, settlement terms and credit limit hold from its
    ``created_at``. 15% of today's credit customers started on cash terms and earned credit (with
    today's limit) at least a month later; another 30% had a different first credit limit (half to
    one and a half times today's), changed to today's later. The last row of each customer and
    attribute is the customers table's value. The history does not drive the simulation, and it
    draws from its own random stream, so the other tables are the same as without it.

Determinism and chunks
    Customers are simulated in fixed blocks of :data:`BLOCK_SIZE`. Block ``k`` draws from
    ``numpy.random.SeedSequence(seed, spawn_key=(1, k))`` and the manager roster from
    ``SeedSequence(seed, spawn_key=(0,))`` (its customer history from ``spawn_key=(2, k)``); chunks are whole blocks and ids are numbered in block
    order, so the rows depend on ``(customers, years, seed, end)`` only, never on ``chunk_size``.

Dates are ``datetime64[us]`` at midnight; ids and names are strings (pyarrow-backed ``str``);
low-cardinality columns are categoricals with fixed categories, so chunks concatenate without
losing the dtype; amounts are float64.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import MUTABLE_ATTRIBUTES
from features.sample_lines import PRODUCT_GROUPS, PRODUCTS_PER_GROUP, Baskets, draw_baskets, draw_lines, make_catalogue, remaining_share

if TYPE_CHECKING:
    from features.sample_program import LifecycleHook, RetentionProgram

BLOCK_SIZE = 1_000
"""Customers per random-number block; chunks are whole blocks."""

TABLE_NAMES = ("customers", "orders", "order_lines", "complaints", "invoices", "contacts", "customer_history")
DATE_DTYPE = "datetime64[us]"
STRING_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)

REGIONS = ("North", "South", "East", "West", "Central")
SEGMENTS = ("retail chain", "independent shop", "hospitality", "online reseller", "institution")
CHANNELS = ("direct", "distributor", "agent", "retail")
SETTLEMENT_TERMS = ("cash", "prepaid", "credit")
SEVERITIES = ("low", "medium", "high")
COMPLAINT_CATEGORIES = ("quality", "delivery", "billing", "service", "other")
CONTACT_KINDS = ("call", "visit", "email", "meeting")

_YEAR = 365.25
_EPOCH = np.datetime64("1970-01-01", "D")

# Per segment (order of SEGMENTS).
_SEGMENT_SHARE = np.array([0.10, 0.38, 0.24, 0.13, 0.15])
_RATE_MEDIAN = np.array([70.0, 30.0, 42.0, 28.0, 17.0])  # orders a year at maturity
_SIZE_MEDIAN = np.array([2500.0, 450.0, 700.0, 1200.0, 1500.0])  # net revenue per order
_DISTRESS_PER_YEAR = np.array([0.03, 0.08, 0.10, 0.08, 0.01])
_SEGMENT_HAZARD = np.array([0.8, 1.1, 1.1, 1.3, 0.5])
_SEGMENT_CHANNEL = np.array(
    [  # columns: CHANNELS
        [0.70, 0.20, 0.10, 0.00],
        [0.30, 0.35, 0.15, 0.20],
        [0.45, 0.30, 0.15, 0.10],
        [0.60, 0.10, 0.10, 0.20],
        [0.50, 0.30, 0.20, 0.00],
    ]
)
_SEGMENT_SETTLEMENT = np.array(
    [  # columns: SETTLEMENT_TERMS
        [0.03, 0.07, 0.90],
        [0.40, 0.15, 0.45],
        [0.30, 0.15, 0.55],
        [0.10, 0.50, 0.40],
        [0.00, 0.05, 0.95],
    ]
)
_SEASON_PEAKS: tuple[tuple[tuple[float, float, float], ...], ...] = (
    ((339, 25, 0.45), (191, 40, 0.10)),  # (day of year, width in days, amplitude)
    ((339, 25, 0.25),),
    ((191, 40, 0.45), (350, 15, 0.30)),
    ((330, 20, 0.70),),
    ((213, 22, -0.65), (250, 18, 0.30)),
    ((191, 45, 1.20), (15, 50, -0.92)),  # summer-only hospitality (closed in winter)
)
_SUMMER_ONLY_SHARE = 0.2  # of hospitality customers
_SUMMER_ONLY_PROFILE = len(SEGMENTS)
_REGION_SHARE = np.array([0.22, 0.20, 0.22, 0.18, 0.18])
_REGION_COMPETITION = np.array([1.0, 1.0, 1.8, 1.0, 0.9])

_EXISTING_SHARE = 0.45  # customers created before the window
_SERVICE_ISSUE_SHARE = 0.12
_NEVER_RESOLVED = 0.025
_SLOW_DAYS = 14
_WINBACK_PER_MONTH = 0.004
_RETURN_SHARE = 0.03
_MARGIN_MISSING = 0.02
_EARNED_CREDIT_SHARE = 0.15  # of credit customers: started on cash terms
_LIMIT_CHANGE_SHARE = 0.30  # of credit customers: started with another credit limit
_FIRST_LIMIT_FACTORS = np.array([0.5, 0.6, 0.75, 1.25, 1.5])
_KEY_REVENUE = 100_000.0  # expected annual revenue at maturity that makes a key account
_IMPORTANT_REVENUE = 25_000.0
_TIER_CADENCE = np.array([30.0, 90.0, 180.0])  # callback rhythm in days (key, important, other)

# Causes of a churn trigger (columns of the monthly hazard matrix).
_CAUSES = ("base", "complaints", "distress", "neglect", "competitor", "price")
_CAUSE_DECLINE_MONTHS = np.array([3.0, 2.5, 4.0, 4.0, 0.6, 2.0])  # mean decline length
_CAUSE_LOSS = np.array([0.45, 0.70, 0.85, 0.65, 0.90, 0.75])  # chance a decline ends in loss
_SEVERITY_WEIGHT = np.array([0.03, 0.09, 0.22])  # per open complaint-month, by severity
_BASE_HAZARD = 0.004
_TRIAL_HAZARD = 0.02  # extra for new customers, fading over about four months
_COMPETITOR_HAZARD = 0.0036  # mean of the per-customer poaching hazard
_DISTRESS_HAZARD = 0.2  # at full distress
_NEGLECT_HAZARD = 0.012  # per rhythm-length of overdue contact, up to three
_PRICE_HAZARD = 0.06  # for a fully price-sensitive customer in the month of a price rise
_DECLINE_FLOOR = (0.15, 0.45)  # rate multiplier reached at the end of a decline
_PRICE_RISE_MONTH = 3
_PRICE_AFTERMATH = np.array([1.0, 0.6, 0.3])

_SEVERITY_PROBS = np.array([[0.60, 0.30, 0.10], [0.45, 0.38, 0.17]])  # normal, service issue
_CATEGORY_PROBS = np.array(
    [  # columns: COMPLAINT_CATEGORIES
        [0.30, 0.30, 0.15, 0.15, 0.10],
        [0.25, 0.40, 0.05, 0.25, 0.05],
        [0.15, 0.15, 0.55, 0.10, 0.05],  # distressed customer
    ]
)
_KIND_PROBS = np.array(
    [  # columns: CONTACT_KINDS
        [0.35, 0.35, 0.10, 0.20],
        [0.50, 0.20, 0.25, 0.05],
        [0.45, 0.10, 0.45, 0.00],
    ]
)

_NAME_STEMS = (
    "Northgate", "Riverside", "Harbour", "Oakwood", "Summit", "Greenfield", "Silverline", "Eastbrook",
    "Westfield", "Lakeside", "Highland", "Meadow", "Redstone", "Bluewater", "Kingsley", "Ashford",
    "Brookside", "Fairview", "Hillcrest", "Maple", "Cedar", "Pinecrest", "Sunrise", "Golden", "Crown",
    "Victoria", "Parkside", "Stonebridge", "Millbrook", "Clearwater", "Miller", "Chen", "Wang", "Li",
    "Zhang", "Schmidt", "Rossi", "Novak", "Kowalski", "Patel", "Murphy", "Larsen", "Dubois", "Costa",
    "Tanaka", "Okafor", "Hughes", "Fischer", "Moreau", "Silva", "Evergreen", "Orchard", "Windmill",
    "Lighthouse", "Copperfield", "Thornbury", "Elmstead", "Baywater", "Foxglove", "Heron",
)
_NAME_CORES: tuple[tuple[str, ...], ...] = (
    ("Supermarkets", "Markets", "Stores", "Retail Group", "Hypermarkets", "Discount Stores", "Food Halls"),
    ("Grocery", "Corner Shop", "General Store", "Hardware", "Deli", "Mini Mart", "Provisions", "Convenience"),
    ("Bistro", "Hotel", "Cafe", "Restaurant", "Catering", "Inn", "Brasserie", "Kitchen", "Tavern"),
    ("Online", "Direct", "Webshop", "E-Commerce", "Marketplace", "Digital Trade", "Express"),
    ("School", "Hospital", "University", "Care Home", "College", "District Council", "Clinic", "Academy"),
)
_NAME_SUFFIXES: tuple[tuple[str, ...], ...] = (
    ("Ltd", "Group", "Co.", "Inc.", ""),
    ("Ltd", "& Sons", "Co.", "", "", ""),
    ("", "", "& Co.", "Ltd"),
    ("Ltd", "GmbH", "Inc.", "Trading", ""),
    ("",),
)
_FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hannah", "Ivan", "Julia", "Kevin", "Laura",
    "Marco", "Nina", "Oscar", "Priya", "Quentin", "Rosa", "Samuel", "Tara", "Umar", "Vera", "Wei", "Xin",
    "Yusuf", "Zoe", "Lei", "Mei", "Jun", "Hui",
)
_LAST_NAMES = (
    "Adams", "Baker", "Carter", "Diaz", "Evans", "Fong", "Garcia", "Huang", "Ito", "Jensen", "Klein",
    "Liu", "Morgan", "Nakamura", "Olsen", "Park", "Quinn", "Reyes", "Sato", "Turner", "Ueda", "Vargas",
    "Walsh", "Xu", "Young", "Zhao", "Sun", "Lin", "Gao", "He",
)

_CATEGORIES = {
    "region": pd.CategoricalDtype(list(REGIONS)),
    "segment": pd.CategoricalDtype(list(SEGMENTS)),
    "channel": pd.CategoricalDtype(list(CHANNELS)),
    "settlement_terms": pd.CategoricalDtype(list(SETTLEMENT_TERMS)),
    "severity": pd.CategoricalDtype(list(SEVERITIES)),
    "category": pd.CategoricalDtype(list(COMPLAINT_CATEGORIES)),
    "kind": pd.CategoricalDtype(list(CONTACT_KINDS)),
    "product_group": pd.CategoricalDtype(list(PRODUCT_GROUPS)),
}


@dataclass(frozen=True)
class _Calendar:
    """The simulated window in day numbers (days since 1970-01-01) and calendar months."""

    start: int
    end: int
    month_first: np.ndarray  # first day of each month, clipped to start
    month_last: np.ndarray  # last day of each month, clipped to end
    day_month: np.ndarray  # month index of every day of the window
    season: np.ndarray  # (segments, days) ordering-rate multiplier, annual mean 1
    price_aftermath: np.ndarray  # (months,) weight of a recent list-price rise
    margin_bump: np.ndarray  # (days,) margin share added after a price rise

    @property
    def days(self) -> int:
        return self.end - self.start + 1

    @property
    def months(self) -> int:
        return len(self.month_first)


@dataclass(frozen=True)
class _Roster:
    """The account managers: names, regions and diligence (contact-interval factor)."""

    names: tuple[str, ...]
    region: np.ndarray
    diligence: np.ndarray


@dataclass
class _Counters:
    """Running id numbers, carried from block to block."""

    orders: int = 0
    complaints: int = 0
    invoices: int = 0


def _day_number(day: datetime.date) -> int:
    return int((np.datetime64(day, "D") - _EPOCH).astype(np.int64))


def _make_calendar(years: float, end: datetime.date) -> _Calendar:
    end_day = _day_number(end)
    start_day = end_day - max(1, int(round(years * _YEAR))) + 1
    days = np.arange(start_day, end_day + 1)
    dates = _EPOCH + days.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]")
    month_index = (months - months[0]).astype(np.int64)
    n_months = int(month_index[-1]) + 1
    first_of_month = months[0] + np.arange(n_months + 1).astype("timedelta64[M]")
    first_day = (first_of_month.astype("datetime64[D]") - _EPOCH).astype(np.int64)
    month_first = np.maximum(first_day[:-1], start_day)
    month_last = np.minimum(first_day[1:] - 1, end_day)

    day_of_year = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    season = np.stack([_season_profile(day_of_year, peaks) for peaks in _SEASON_PEAKS])

    month_of_year = first_of_month[:-1].astype(np.int64) % 12 + 1
    since_rise = (month_of_year - _PRICE_RISE_MONTH) % 12
    price_aftermath = np.where(
        since_rise < len(_PRICE_AFTERMATH), _PRICE_AFTERMATH[np.minimum(since_rise, len(_PRICE_AFTERMATH) - 1)], 0.0
    )
    year = dates.astype("datetime64[Y]")
    rise_this_year = (year.astype("datetime64[M]") + (_PRICE_RISE_MONTH - 1)).astype("datetime64[D]")
    rise_last_year = ((year - 1).astype("datetime64[M]") + (_PRICE_RISE_MONTH - 1)).astype("datetime64[D]")
    days_since_rise = np.where(dates >= rise_this_year, dates - rise_this_year, dates - rise_last_year).astype(np.int64)
    margin_bump = 0.025 * np.exp(-days_since_rise / 120.0)
    return _Calendar(start_day, end_day, month_first, month_last, month_index, season, price_aftermath, margin_bump)


def _season_profile(day_of_year: np.ndarray, peaks: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    def profile(doy: np.ndarray) -> np.ndarray:
        out = np.ones(doy.shape)
        for centre, width, amplitude in peaks:
            distance = np.abs(doy - centre)
            distance = np.minimum(distance, 365 - distance)
            out += amplitude * np.exp(-0.5 * (distance / width) ** 2)
        return out

    return profile(day_of_year.astype(float)) / profile(np.arange(365.0)).mean()


def _manager_count(customers: int) -> int:
    return int(np.clip(round(10 + 12 * math.log10(max(customers, 300) / 300)), 10, 40))


def _make_roster(customers: int, seed: int) -> _Roster:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    count = _manager_count(customers)
    pairs = rng.permutation(len(_FIRST_NAMES) * len(_LAST_NAMES))[:count]
    names = tuple(f"{_FIRST_NAMES[p // len(_LAST_NAMES)]} {_LAST_NAMES[p % len(_LAST_NAMES)]}" for p in pairs)
    region = np.arange(count) % len(REGIONS)
    neglectful = rng.random(count) < 0.25
    diligence = rng.lognormal(0.0, 0.2, count) * np.where(neglectful, rng.uniform(2.0, 3.0, count), 1.0)
    return _Roster(names, region, diligence)


def _choose(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows sum to 1)."""
    cumulative = np.cumsum(probs, axis=1)
    cumulative[:, -1] = 1.0
    return (rng.random((probs.shape[0], 1)) > cumulative).sum(axis=1)


def _renewal(
    rng: np.random.Generator, first: np.ndarray, stop: np.ndarray, mean: np.ndarray, shape: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gamma renewal processes, one per row, all drawn at once.

    Row ``i`` has events at ``first[i]``, then after gaps ~ Gamma(shape[i], mean[i] / shape[i]),
    up to ``stop[i]`` inclusive.

    Returns:
        (row, time) of every event, sorted by row then time.
    """
    rows = np.arange(len(first))
    current = first.astype(float)
    include_current = True
    found_rows: list[np.ndarray] = []
    found_times: list[np.ndarray] = []
    while rows.size:
        span = np.maximum(stop[rows] - current, 0.0) / mean[rows]
        count = np.ceil(span + 4.0 * np.sqrt(span / shape[rows] + 1.0) + 2.0).astype(np.int64)
        owner = np.repeat(rows, count)
        gaps = rng.gamma(np.repeat(shape[rows], count)) * np.repeat(mean[rows] / shape[rows], count)
        starts = np.cumsum(count) - count
        if include_current:
            gaps[starts] = 0.0
        total = np.cumsum(gaps)
        times = total - np.repeat(total[starts] - gaps[starts], count) + np.repeat(current, count)
        keep = times <= np.repeat(stop[rows], count)
        found_rows.append(owner[keep])
        found_times.append(times[keep])
        last = times[starts + count - 1]
        short = last <= stop[rows]
        rows, current, include_current = rows[short], last[short], False
    all_rows = np.concatenate(found_rows)
    all_times = np.concatenate(found_times)
    if len(found_rows) > 1:
        order = np.lexsort((all_times, all_rows))
        all_rows, all_times = all_rows[order], all_times[order]
    return all_rows, all_times


def _last_before(rows: np.ndarray, days: np.ndarray, n_rows: int, query: np.ndarray) -> np.ndarray:
    """The latest event day on or before each query day, per row (NaN if none).

    Args:
        rows: event rows, sorted.
        days: event days, sorted within each row.
        n_rows: number of rows.
        query: (n_rows, q) query days.

    Returns:
        (n_rows, q) days.
    """
    if not rows.size:
        return np.full(query.shape, np.nan)
    lowest = min(days.min(), query.min()) - 1.0
    width = max(days.max(), query.max()) - lowest + 2.0
    flat = days - lowest + rows * width
    probe = query - lowest + np.arange(n_rows)[:, None] * width
    position = np.searchsorted(flat, probe.ravel(), side="right").reshape(query.shape) - 1
    found = position >= 0
    position = np.maximum(position, 0)
    found &= rows[position] == np.arange(n_rows)[:, None]
    return np.where(found, days[position], np.nan)


def _string_ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """``prefix`` + zero-padded numbers as a string column, built without Python objects."""
    digits = max(width, len(str(int(numbers.max(initial=0)))))
    n = len(numbers)
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    body = np.empty((n, len(head) + digits), dtype=np.uint8)
    body[:, : len(head)] = head
    value = numbers.astype(np.int64).copy()
    for column in range(len(head) + digits - 1, len(head) - 1, -1):
        body[:, column] = 48 + value % 10
        value //= 10
    offsets = np.arange(n + 1, dtype=np.int64) * body.shape[1]
    array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(body.tobytes()))
    return pd.Series(pd.array(array, dtype=STRING_DTYPE))


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers (NaN = missing) as datetime64[us] at midnight."""
    days = np.asarray(days, dtype=float)
    missing = np.isnan(days)
    out = (_EPOCH + np.where(missing, 0, days).astype(np.int64).astype("timedelta64[D]")).astype(DATE_DTYPE)
    out[missing] = np.datetime64("NaT")
    return out


def _categorical(codes: np.ndarray, column: str) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int64), dtype=_CATEGORIES[column])


@dataclass(frozen=True)
class _Block:
    """One block's customers: what the CRM records about them and the latent traits it does not."""

    created: np.ndarray  # day number
    existing: np.ndarray  # created before the window
    segment: np.ndarray
    region: np.ndarray
    channel: np.ndarray
    settlement: np.ndarray
    credit_limit: np.ndarray
    manager: np.ndarray
    tier: np.ndarray  # 0 key, 1 important, 2 other
    season_profile: np.ndarray  # row of the calendar's season table
    rate: np.ndarray  # orders a year at maturity
    regularity: np.ndarray  # gamma shape of the gaps between orders
    order_size: np.ndarray  # median net revenue of an order at maturity
    margin_share: np.ndarray
    terms: np.ndarray  # credit days
    payer_delay: np.ndarray  # habitual days paid after the due date
    cadence: np.ndarray  # mean days between the manager's contacts
    service_issue: np.ndarray
    complaint_propensity: np.ndarray
    competitor: np.ndarray  # monthly poaching hazard
    price_sensitivity: np.ndarray
    frailty: np.ndarray
    trend: np.ndarray  # log-rate drift per year
    growth_floor: np.ndarray
    growth_days: np.ndarray
    distress_onset: np.ndarray  # day number, inf if never
    distress_ramp: np.ndarray
    distress_recovery: np.ndarray  # day number, inf if never

    @property
    def size(self) -> int:
        return len(self.created)

    @property
    def credit(self) -> np.ndarray:
        return self.settlement == SETTLEMENT_TERMS.index("credit")

    def distress(self, days: np.ndarray, rows: np.ndarray | slice | tuple[slice, None] = slice(None)) -> np.ndarray:
        """Latent distress in [0, 1] on ``days``: ramps up from onset, fades over 60 days after recovery.

        ``rows`` selects (or, as ``(slice(None), None)``, broadcasts) the customers against ``days``.
        """
        level = np.clip((days - self.distress_onset[rows]) / self.distress_ramp[rows], 0.0, 1.0)
        fade = np.clip(1.0 - (days - self.distress_recovery[rows]) / 60.0, 0.0, 1.0)
        return level * fade


@dataclass(frozen=True)
class _History:
    """The simulated lifecycle of a block: monthly multipliers, turning points and complaints."""

    status: np.ndarray  # (customers, months): 0 ordering, 1 declining, 2 lost
    rate_mult: np.ndarray  # (customers, months)
    size_mult: np.ndarray  # (customers, months)
    decline_rows: np.ndarray
    decline_months: np.ndarray  # first month of each decline
    decline_causes: np.ndarray  # index into _CAUSES
    loss_rows: np.ndarray
    loss_months: np.ndarray  # first month without orders
    complaints: dict[str, np.ndarray]  # row, opened, duration, severity, category


def _draw_customers(rng: np.random.Generator, n: int, cal: _Calendar, roster: _Roster) -> _Block:
    segment = rng.choice(len(SEGMENTS), n, p=_SEGMENT_SHARE)
    region = rng.choice(len(REGIONS), n, p=_REGION_SHARE)
    channel = _choose(rng, _SEGMENT_CHANNEL[segment])
    value = rng.standard_normal(n)
    rate = np.clip(_RATE_MEDIAN[segment] * np.exp(0.45 * value + 0.85 * rng.standard_normal(n)), 1.5, 250.0)
    distributor = channel == CHANNELS.index("distributor")
    order_size = _SIZE_MEDIAN[segment] * np.exp(0.8 * value + 0.45 * rng.standard_normal(n)) * np.where(distributor, 1.5, 1.0)
    expected_revenue = rate * order_size
    tier = np.where(expected_revenue >= _KEY_REVENUE, 0, np.where(expected_revenue >= _IMPORTANT_REVENUE, 1, 2))
    key = tier == 0
    regularity = 0.7 + 2.8 * rng.random(n) + np.where(key, 1.5, 0.0)
    summer_only = (segment == SEGMENTS.index("hospitality")) & (rng.random(n) < _SUMMER_ONLY_SHARE)

    existing = rng.random(n) < _EXISTING_SHARE
    tenure = np.clip(rng.lognormal(math.log(3 * _YEAR), 0.8, n), 30, 25 * _YEAR)
    joined = rng.integers(0, cal.days, n)
    created = np.where(existing, cal.start - np.round(tenure), cal.start + joined).astype(np.int64)

    settlement_probs = _SEGMENT_SETTLEMENT[segment].copy()
    settlement_probs[key] = 0.5 * settlement_probs[key] + 0.5 * np.eye(len(SETTLEMENT_TERMS))[SETTLEMENT_TERMS.index("credit")]
    settlement = _choose(rng, settlement_probs)
    terms = np.where(segment == SEGMENTS.index("institution"), 60, rng.choice(np.array([30, 45, 60]), n, p=[0.5, 0.25, 0.25]))
    limit = np.maximum(5_000.0, np.round(expected_revenue / 12 * terms / 30 * rng.uniform(1.5, 3.0, n), -3))
    credit_limit = np.where(settlement == SETTLEMENT_TERMS.index("credit"), limit, np.nan)

    by_region = [np.flatnonzero(roster.region == r) for r in range(len(REGIONS))]
    pick = rng.random(n)
    manager = np.array([by_region[r][int(p * len(by_region[r]))] for r, p in zip(region, pick, strict=True)], dtype=np.int64)
    cadence = _TIER_CADENCE[tier] * roster.diligence[manager] * rng.lognormal(0.0, 0.25, n)

    service_issue = rng.random(n) < _SERVICE_ISSUE_SHARE
    complaint_propensity = 0.025 * rng.lognormal(0.0, 0.5, n) * np.where(service_issue, 3.0, 1.0)
    competitor = rng.gamma(0.6, _COMPETITOR_HAZARD / 0.6, n) * _REGION_COMPETITION[region]
    bargain_hunters = np.isin(segment, [SEGMENTS.index("online reseller"), SEGMENTS.index("independent shop")])
    price_sensitivity = np.where(bargain_hunters, rng.beta(2.0, 2.5, n), rng.beta(1.2, 3.5, n))
    margin_share = np.clip(0.28 - 0.10 * price_sensitivity - 0.03 * key + rng.normal(0, 0.025, n), 0.12, 0.38)
    payer_delay = rng.normal(0.0, 4.0, n) + np.where(segment == SEGMENTS.index("institution"), 8.0, 0.0)
    agent = channel == CHANNELS.index("agent")
    frailty = rng.lognormal(0.0, 0.4, n) * _SEGMENT_HAZARD[segment] * np.where(agent, 1.2, 1.0)
    trend = rng.normal(0.0, 0.12, n)
    growth_floor = rng.uniform(0.3, 0.7, n)
    growth_days = rng.lognormal(math.log(90.0), 0.5, n)

    onset = np.maximum(created, cal.start - 365) + rng.exponential(_YEAR / _DISTRESS_PER_YEAR[segment])
    onset = np.where(onset <= cal.end, onset, np.inf)
    ramp = rng.uniform(90.0, 300.0, n)
    recovery = np.where(rng.random(n) < 0.35, onset + ramp * rng.uniform(0.7, 1.6, n), np.inf)

    return _Block(
        created=created, existing=existing, segment=segment, region=region, channel=channel,
        settlement=settlement, credit_limit=credit_limit, manager=manager, tier=tier,
        season_profile=np.where(summer_only, _SUMMER_ONLY_PROFILE, segment), rate=rate,
        regularity=regularity, order_size=order_size, margin_share=margin_share, terms=terms,
        payer_delay=payer_delay, cadence=cadence, service_issue=service_issue,
        complaint_propensity=complaint_propensity, competitor=competitor,
        price_sensitivity=price_sensitivity, frailty=frailty, trend=trend, growth_floor=growth_floor,
        growth_days=growth_days, distress_onset=onset, distress_ramp=ramp, distress_recovery=recovery,
    )


def _manager_rhythm(rng: np.random.Generator, block: _Block, cal: _Calendar) -> tuple[np.ndarray, np.ndarray]:
    """The account manager's own contacts (row, day), from before the window (or onboarding) to ``end``."""
    first = np.where(
        block.existing, cal.start - rng.random(block.size) * block.cadence, block.created + rng.integers(0, 4, block.size)
    ).astype(float)
    rows, times = _renewal(rng, first, np.full(block.size, float(cal.end)), block.cadence, np.full(block.size, 2.0))
    return rows, np.floor(times)


def _new_complaints(
    rng: np.random.Generator, block: _Block, cal: _Calendar, month: int, expected_orders: np.ndarray, distress: np.ndarray
) -> dict[str, np.ndarray]:
    """This month's complaints: row, opened (day), duration (days, inf = never resolved), severity, category."""
    count = rng.poisson(expected_orders**0.7 * block.complaint_propensity)
    row = np.repeat(np.arange(block.size), count)
    first, last = cal.month_first[month], cal.month_last[month]
    low = np.maximum(first, block.created[row])
    opened = low + np.floor(rng.random(row.size) * (last - low + 1))
    service = block.service_issue[row].astype(np.int64)
    severity = _choose(rng, _SEVERITY_PROBS[service])
    category = _choose(rng, _CATEGORY_PROBS[np.where(distress[row] > 0.3, 2, service)])
    duration = np.ceil(
        rng.lognormal(math.log(3.0), 1.0, row.size) * np.where(service == 1, 2.2, 1.0) * np.where(severity == 2, 0.8, 1.0)
    )
    duration[rng.random(row.size) < _NEVER_RESOLVED] = np.inf
    return {"row": row, "opened": opened, "duration": duration, "severity": severity, "category": category}


def _complaint_burden(complaints: dict[str, np.ndarray], first: int, last: int, n: int) -> np.ndarray:
    """Monthly hazard from complaints: open ones by severity and age, slow closures, new ones."""
    opened, duration = complaints["opened"], complaints["duration"]
    resolved = opened + duration
    open_now = (opened <= last) & (resolved > last)
    closed_slowly = (resolved >= first) & (resolved <= last) & (duration > _SLOW_DAYS)
    weight = _SEVERITY_WEIGHT[complaints["severity"]] * (
        open_now * np.minimum((last - opened) / 30.0, 3.0) + closed_slowly + 0.3 * (opened >= first)
    )
    return np.bincount(complaints["row"], weights=weight, minlength=n)


def _simulate_lifecycle(rng: np.random.Generator, block: _Block, cal: _Calendar, contact_gap: np.ndarray, hook: LifecycleHook | None = None) -> _History:
    """Month by month: growth, hazards from the hidden causes, declines, losses, recoveries, win-backs (and a retention program's effect, with ``hook``)."""
    n, months = block.size, cal.months
    month_mid = (cal.month_first + cal.month_last) / 2.0
    alive_days = np.clip(cal.month_last[None, :] - np.maximum(cal.month_first[None, :], block.created[:, None]) + 1, 0, None)
    season = np.stack([np.bincount(cal.day_month, weights=s) for s in cal.season]) / np.bincount(cal.day_month)
    age = np.maximum(month_mid[None, :] - block.created[:, None], 0.0)
    growth = 1.0 - (1.0 - block.growth_floor[:, None]) * np.exp(-age / block.growth_days[:, None])
    drift = np.exp(block.trend[:, None] * (month_mid[None, :] - cal.start) / _YEAR)
    distress = block.distress(month_mid[None, :], (slice(None), None))
    rhythm = _TIER_CADENCE[block.tier][:, None]
    neglect = _NEGLECT_HAZARD * np.clip((contact_gap - rhythm) / rhythm, 0.0, 3.0)

    status = np.zeros(n, np.int8)
    decline_mult = np.ones(n)
    decline_start = np.zeros(n, np.int64)
    decline_length = np.zeros(n, np.int64)
    decline_floor = np.ones(n)
    ends_in_loss = np.zeros(n, bool)
    lost_at = np.full(n, -1, np.int64)
    status_by_month = np.zeros((n, months), np.int8)
    rate_mult = np.zeros((n, months))
    size_mult = np.zeros((n, months))
    declines: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    losses: list[np.ndarray] = []
    parts: list[dict[str, np.ndarray]] = []
    recent: dict[str, np.ndarray] = {}

    for m in range(months):
        first, last = int(cal.month_first[m]), int(cal.month_last[m])
        progress = m - decline_start + 1
        ending = (status == 1) & (progress > decline_length)
        status[ending & ends_in_loss] = 2
        status[ending & ~ends_in_loss] = 0
        lost_at[ending & ends_in_loss] = m
        losses.append(np.flatnonzero(ending & ends_in_loss))
        decline_mult = np.where(
            status == 1,
            1.0 - (1.0 - decline_floor) * np.clip(progress / np.maximum(decline_length, 1), 0.0, 1.0),
            np.where(status == 0, np.minimum(1.0, decline_mult + 0.25), decline_mult),
        )
        winback = (status == 2) & (m - lost_at >= 9) & (rng.random(n) < _WINBACK_PER_MONTH)
        status[winback] = 0
        decline_mult[winback] = 0.3
        if hook is not None:
            hook.reverse(m, status, decline_mult, ends_in_loss)

        status_by_month[:, m] = status
        ordering = status != 2
        rate_mult[:, m] = growth[:, m] * drift[:, m] * decline_mult * (1.0 - 0.55 * distress[:, m]) * ordering
        size_mult[:, m] = np.sqrt(growth[:, m]) * (0.55 + 0.45 * decline_mult) * (1.0 - 0.3 * distress[:, m])

        expected_orders = block.rate * season[block.season_profile, m] * rate_mult[:, m] * alive_days[:, m] / _YEAR
        new = _new_complaints(rng, block, cal, m, expected_orders, distress[:, m])
        parts.append(new)
        recent = {k: np.concatenate([recent[k], new[k]]) if recent else new[k] for k in new}
        complaint_hazard = _complaint_burden(recent, first, last, n)
        still_relevant = recent["opened"] + recent["duration"] > first - 90
        recent = {k: v[still_relevant] for k, v in recent.items()}

        days_known = last - block.created
        hazard = np.stack(
            [
                _BASE_HAZARD + _TRIAL_HAZARD * np.exp(-np.maximum(days_known, 0) / 120.0),
                complaint_hazard,
                _DISTRESS_HAZARD * distress[:, m] ** 2,
                neglect[:, m],
                block.competitor,
                _PRICE_HAZARD * block.price_sensitivity**2 * cal.price_aftermath[m],
            ],
            axis=1,
        ) * block.frailty[:, None]
        total = hazard.sum(axis=1)
        trigger = (status == 0) & (days_known >= 0) & (rng.random(n) < -np.expm1(-total))
        if hook is not None:
            trigger = hook.prevent(m, trigger)
        rows = np.flatnonzero(trigger)
        cause = _choose(rng, hazard[rows] / total[rows, None])
        status[rows] = 1
        decline_start[rows] = m + 1
        decline_length[rows] = np.round(rng.gamma(2.0, _CAUSE_DECLINE_MONTHS[cause] / 2.0)).astype(np.int64)
        decline_floor[rows] = rng.uniform(*_DECLINE_FLOOR, rows.size)
        ends_in_loss[rows] = rng.random(rows.size) < _CAUSE_LOSS[cause]
        declines.append((rows, np.full(rows.size, m + 1), cause))

    return _History(
        status=status_by_month,
        rate_mult=rate_mult,
        size_mult=size_mult,
        decline_rows=np.concatenate([d[0] for d in declines]),
        decline_months=np.concatenate([d[1] for d in declines]),
        decline_causes=np.concatenate([d[2] for d in declines]),
        loss_rows=np.concatenate(losses),
        loss_months=np.concatenate([np.full(rows.size, m) for m, rows in enumerate(losses)]),
        complaints={k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
    )


def _draw_orders(rng: np.random.Generator, block: _Block, cal: _Calendar, history: _History) -> dict[str, np.ndarray]:
    """Orders and returns (row, day, amount, margin), sorted by customer and day.

    Each customer's orders are a gamma renewal process in operational time, mapped to days through
    its cumulative intensity (rate x season x lifecycle multipliers, zero before creation and while lost).
    """
    n, days = block.size, cal.days
    intensity = (block.rate / _YEAR)[:, None] * cal.season[block.season_profile] * history.rate_mult[:, cal.day_month]
    intensity[np.arange(days)[None, :] < (block.created - cal.start)[:, None]] = 0.0
    cumulative = np.cumsum(intensity, axis=1)
    del intensity
    horizon = cumulative[:, -1]
    phase = np.where(
        block.created >= cal.start,
        rng.uniform(0.0, 0.15, n),
        rng.gamma(block.regularity) / block.regularity * rng.random(n),
    )
    row, operational = _renewal(rng, np.maximum(phase, 1e-9), horizon, np.ones(n), block.regularity)
    width = horizon.max(initial=0.0) + 1.0
    flat = (cumulative + (np.arange(n) * width)[:, None]).ravel()
    del cumulative
    day_index = np.minimum(np.searchsorted(flat, operational + row * width, side="left") - row * days, days - 1)
    del flat
    month = cal.day_month[day_index]
    noise = rng.lognormal(-0.125, 0.5, row.size)
    amount = np.maximum(np.round(block.order_size[row] * history.size_mult[row, month] * noise, 2), 1.0)
    margin_rate = np.clip(
        block.margin_share[row] + cal.margin_bump[day_index] + rng.normal(0.0, 0.035, row.size), 0.02, 0.5
    )
    margin = np.round(amount * margin_rate, 2)
    margin[rng.random(row.size) < _MARGIN_MISSING] = np.nan

    returned = np.flatnonzero(rng.random(row.size) < _RETURN_SHARE)
    return_day = cal.start + day_index[returned] + rng.integers(1, 22, returned.size)
    return_amount = -np.round(amount[returned] * rng.uniform(0.05, 0.45, returned.size), 2)
    in_window = return_day <= cal.end
    returned, return_day, return_amount = returned[in_window], return_day[in_window], return_amount[in_window]

    out = {
        "row": np.concatenate([row, row[returned]]),
        "day": np.concatenate([cal.start + day_index, return_day]),
        "amount": np.concatenate([amount, return_amount]),
        "margin": np.concatenate([margin, np.round(return_amount * margin_rate[returned], 2)]),
    }
    order = np.lexsort((out["amount"] < 0, out["day"], out["row"]))
    return {k: v[order] for k, v in out.items()}


def _draw_invoices(rng: np.random.Generator, block: _Block, cal: _Calendar, orders: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One invoice per positive order (row, issued, due, amount, paid; NaN = unpaid at ``end``).

    A credit invoice issued shortly before ``end`` may fall due after it (not yet due, unpaid).
    """
    sale = orders["amount"] > 0
    row, issued, amount = orders["row"][sale], orders["day"][sale].astype(float), orders["amount"][sale]
    credit = block.credit[row]
    due = issued + np.where(credit, block.terms[row], 0)
    distress = block.distress(issued, row)
    delay = (
        block.payer_delay[row]
        + rng.normal(0.0, 3.0, row.size)
        + rng.exponential(2.0, row.size)
        + distress * rng.uniform(15.0, 100.0, row.size)
    )
    paid = np.where(credit, np.maximum(due + np.round(delay), issued), issued)
    unpaid = credit & (rng.random(row.size) < 0.6 * distress**2 + 0.002)
    paid[unpaid | (paid > cal.end)] = np.nan
    return {"row": row, "issued": issued, "due": due, "amount": amount, "paid": paid}


def _draw_contacts(
    rng: np.random.Generator,
    block: _Block,
    cal: _Calendar,
    roster: _Roster,
    history: _History,
    rhythm: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """Contacts (row, day, kind), sorted by customer and day.

    The manager's rhythm inside the relationship, thinned out after a loss; plus a rescue call or
    visit for some declines, a win-back call for some losses and a follow-up call for half the
    high-severity complaints.
    """
    row, day = rhythm
    inside = (day >= np.maximum(cal.start, block.created[row])) & (day <= cal.end)
    row, day = row[inside], day[inside]
    lost_since = np.full(block.size, np.inf)
    np.minimum.at(lost_since, history.loss_rows, cal.month_first[history.loss_months].astype(float))
    lost_then = history.status[row, cal.day_month[(day - cal.start).astype(np.int64)]] == 2
    fading = np.exp(-(day - lost_since[row]) / 150.0)
    kept = ~lost_then | (rng.random(row.size) < fading)
    row, day = row[kept], day[kept]
    kind = _choose(rng, _KIND_PROBS[block.tier[row]])

    noticed = rng.random(history.decline_rows.size) < 0.35 / roster.diligence[block.manager[history.decline_rows]]
    rescue_row = history.decline_rows[noticed]
    rescue_month = np.minimum(history.decline_months[noticed], cal.months - 1)
    rescue_day = cal.month_first[rescue_month] + rng.integers(20, 76, rescue_row.size)
    rescue_kind = np.where(rng.random(rescue_row.size) < 0.5, CONTACT_KINDS.index("call"), CONTACT_KINDS.index("visit"))

    called = rng.random(history.loss_rows.size) < 0.25
    winback_row = history.loss_rows[called]
    winback_day = cal.month_first[history.loss_months[called]] + rng.integers(30, 151, winback_row.size)

    complaints = history.complaints
    followed = np.flatnonzero((complaints["severity"] == SEVERITIES.index("high")) & (rng.random(complaints["row"].size) < 0.5))
    followup_row = complaints["row"][followed]
    followup_day = complaints["opened"][followed] + rng.integers(0, 5, followed.size)

    call = CONTACT_KINDS.index("call")
    out = {
        "row": np.concatenate([row, rescue_row, winback_row, followup_row]),
        "day": np.concatenate([day, rescue_day, winback_day, followup_day]).astype(float),
        "kind": np.concatenate([kind, rescue_kind, np.full(winback_row.size, call), np.full(followup_row.size, call)]),
    }
    inside = out["day"] <= cal.end
    out = {k: v[inside] for k, v in out.items()}
    order = np.lexsort((out["day"], out["row"]))
    return {k: v[order] for k, v in out.items()}


def _draw_history(rng: np.random.Generator, block: _Block, cal: _Calendar) -> dict[str, np.ndarray]:
    """The block's customer history: each attribute from ``created_at``, and the changes to today's values.

    Args:
        rng: the block's history stream.
        block: the customers, with today's attribute values.
        cal: the window (a change falls in it, at least 30 days after ``created_at``).

    Returns:
        ``row``, ``column`` (index into :data:`MUTABLE_ATTRIBUTES`), ``value`` (text) and ``day``,
        sorted by customer, attribute and day.
    """
    n = block.size
    earliest = np.maximum(block.created + 30, cal.start)
    can_change = block.credit & (earliest <= cal.end)
    change_day = earliest + np.floor(rng.random(n) * np.maximum(cal.end - earliest + 1, 0))
    draw = rng.random(n)
    earned = can_change & (draw < _EARNED_CREDIT_SHARE)
    limit_changed = can_change & ~earned & (draw < _EARNED_CREDIT_SHARE + _LIMIT_CHANGE_SHARE)
    today_limit = np.nan_to_num(block.credit_limit)
    first_limit = np.maximum(5_000.0, np.round(today_limit * rng.choice(_FIRST_LIMIT_FACTORS, n), -3))
    first_limit = np.where(first_limit == today_limit, today_limit + 5_000.0, first_limit)
    created = block.created.astype(float)
    terms = np.asarray(SETTLEMENT_TERMS)[block.settlement]
    parts = [
        (np.ones(n, bool), "region", np.asarray(REGIONS)[block.region], created),
        (np.ones(n, bool), "segment", np.asarray(SEGMENTS)[block.segment], created),
        (np.ones(n, bool), "channel", np.asarray(CHANNELS)[block.channel], created),
        (~earned, "settlement_terms", terms, created),
        (earned, "settlement_terms", np.full(n, "cash"), created),
        (earned, "settlement_terms", terms, change_day),
        (block.credit & ~earned & ~limit_changed, "credit_limit", np.char.mod("%.0f", today_limit), created),
        (limit_changed, "credit_limit", np.char.mod("%.0f", first_limit), created),
        (earned | limit_changed, "credit_limit", np.char.mod("%.0f", today_limit), change_day),
    ]
    rows = np.concatenate([np.flatnonzero(mask) for mask, *_ in parts])
    columns = np.concatenate([np.full(mask.sum(), MUTABLE_ATTRIBUTES.index(column)) for mask, column, *_ in parts])
    values = np.concatenate([value[mask] for mask, _, value, _ in parts])
    days = np.concatenate([day[mask] for mask, *_, day in parts])
    order = np.lexsort((days, columns, rows))
    return {"row": rows[order], "column": columns[order], "value": values[order], "day": days[order]}


def _company_names(rng: np.random.Generator, segment: np.ndarray) -> list[str]:
    stems = rng.integers(0, len(_NAME_STEMS), segment.size)
    core_pick, suffix_pick = rng.random(segment.size), rng.random(segment.size)
    names = []
    for seg, stem, core, suffix in zip(segment, stems, core_pick, suffix_pick, strict=True):
        cores, suffixes = _NAME_CORES[seg], _NAME_SUFFIXES[seg]
        words = (_NAME_STEMS[stem], cores[int(core * len(cores))], suffixes[int(suffix * len(suffixes))])
        names.append(" ".join(w for w in words if w))
    return names


def _simulate_block(
    block_index: int,
    first_number: int,
    size: int,
    cal: _Calendar,
    roster: _Roster,
    seed: int,
    counters: _Counters,
    trace: dict[str, object] | None = None,
    lines: bool = True,
    hook: LifecycleHook | None = None,
) -> dict[str, pd.DataFrame]:
    """Simulate one block of customers and return its tables.

    Args:
        block_index: the block's number (selects its random stream).
        first_number: number of the block's first customer (``C000001`` is 1).
        size: customers in the block.
        cal: the window.
        roster: the account managers.
        seed: the dataset's seed.
        counters: running id numbers, advanced past this block's rows.
        trace: if given, receives the latent customers and lifecycle (for calibration).
        lines: write the ``order_lines`` table (the orders are the same either way).
        hook: a retention program's part in the lifecycle (:mod:`features.sample_program`).

    Returns:
        The tables of :data:`TABLE_NAMES` for the block's customers (without ``order_lines`` unless ``lines``).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, block_index)))
    block = _draw_customers(rng, size, cal, roster)
    rhythm = _manager_rhythm(rng, block, cal)
    month_last = cal.month_last.astype(float)
    last_contact = _last_before(rhythm[0], rhythm[1], size, np.broadcast_to(month_last, (size, cal.months)))
    contact_gap = month_last[None, :] - np.where(np.isnan(last_contact), block.created[:, None], last_contact)
    history = _simulate_lifecycle(rng, block, cal, contact_gap, hook)
    orders = _draw_orders(rng, block, cal, history)
    lines_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, block_index)))
    baskets = _baskets(lines_rng, block, cal, history)
    _thin_orders(orders, baskets)
    invoices = _draw_invoices(rng, block, cal, orders)
    contacts = _draw_contacts(rng, block, cal, roster, history, rhythm)
    names = _company_names(rng, block.segment)
    attribute_history = _draw_history(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, block_index))), block, cal)
    if trace is not None:
        trace.update(block=block, history=history)

    complaints = history.complaints
    complaint_order = np.lexsort((complaints["opened"], complaints["row"]))
    complaints = {k: v[complaint_order] for k, v in complaints.items()}
    resolved = complaints["opened"] + complaints["duration"]
    resolved[~(resolved <= cal.end)] = np.nan

    customer_ids = _string_ids("C", first_number + np.arange(size), 6)
    id_array = customer_ids.array._pa_array.combine_chunks()

    def customer_id(rows: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(id_array.take(pa.array(rows, pa.int64())), dtype=STRING_DTYPE))

    def next_ids(prefix: str, field: str, count: int, width: int) -> pd.Series:
        start = getattr(counters, field)
        setattr(counters, field, start + count)
        return _string_ids(prefix, start + 1 + np.arange(count), width)

    order_ids = next_ids("O", "orders", orders["row"].size, 8)
    tables = {
        "customers": pd.DataFrame(
            {
                "customer_id": customer_ids,
                "name": pd.Series(names, dtype=STRING_DTYPE),
                "region": _categorical(block.region, "region"),
                "segment": _categorical(block.segment, "segment"),
                "channel": _categorical(block.channel, "channel"),
                "account_manager": pd.Categorical.from_codes(block.manager, dtype=pd.CategoricalDtype(list(roster.names))),
                "settlement_terms": _categorical(block.settlement, "settlement_terms"),
                "credit_limit": block.credit_limit,
                "created_at": _dates(block.created),
            }
        ),
        "orders": pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": customer_id(orders["row"]),
                "order_date": _dates(orders["day"]),
                "amount": orders["amount"],
                "margin": orders["margin"],
            }
        ),
        "complaints": pd.DataFrame(
            {
                "complaint_id": next_ids("CP", "complaints", complaints["row"].size, 6),
                "customer_id": customer_id(complaints["row"]),
                "opened_at": _dates(complaints["opened"]),
                "resolved_at": _dates(resolved),
                "severity": _categorical(complaints["severity"], "severity"),
                "category": _categorical(complaints["category"], "category"),
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": next_ids("INV", "invoices", invoices["row"].size, 8),
                "customer_id": customer_id(invoices["row"]),
                "issued_at": _dates(invoices["issued"]),
                "due_at": _dates(invoices["due"]),
                "amount": invoices["amount"],
                "paid_at": _dates(invoices["paid"]),
            }
        ),
        "contacts": pd.DataFrame(
            {
                "customer_id": customer_id(contacts["row"]),
                "contacted_at": _dates(contacts["day"]),
                "kind": _categorical(contacts["kind"], "kind"),
            }
        ),
        "customer_history": pd.DataFrame(
            {
                "customer_id": customer_id(attribute_history["row"]),
                "column": pd.Series(np.asarray(MUTABLE_ATTRIBUTES)[attribute_history["column"]], dtype=STRING_DTYPE),
                "value": pd.Series(attribute_history["value"], dtype=STRING_DTYPE),
                "valid_from": _dates(attribute_history["day"]),
            }
        ),
    }
    if lines:
        tables["order_lines"] = _lines_table(draw_lines(lines_rng, baskets, make_catalogue(seed), orders["row"], orders["day"], orders["amount"]), order_ids)
    return tables


def _simulate_with_program(
    block_index: int, first_number: int, size: int, cal: _Calendar, roster: _Roster, seed: int, counters: _Counters, lines: bool, program: RetentionProgram
) -> dict[str, pd.DataFrame]:
    """One block with a retention program: simulated without it and with it, spliced at its start (see :mod:`features.sample_program`)."""
    scratch = dataclasses.replace(counters)
    without = _simulate_block(block_index, first_number, size, cal, roster, seed, counters, lines=lines)
    hook = program.hook(block_index, _string_ids("C", first_number + np.arange(size), 6), cal.month_first)
    with_program = _simulate_block(block_index, first_number, size, cal, roster, seed, scratch, lines=lines, hook=hook)

    def renumber(prefix: str, field: str, count: int, width: int) -> pd.Series:
        start = getattr(counters, field)
        setattr(counters, field, start + count)
        return _string_ids(prefix, start + 1 + np.arange(count), width)

    return program.splice(without, with_program, renumber)


def _baskets(rng: np.random.Generator, block: _Block, cal: _Calendar, history: _History) -> Baskets:
    """The block's baskets, with the first decline a competitor caused for each customer it poached."""
    poached = history.decline_causes == _CAUSES.index("competitor")
    rows, first = np.unique(history.decline_rows[poached], return_index=True)
    month = history.decline_months[poached][first]
    days = np.where(month < cal.months, cal.month_first[np.minimum(month, cal.months - 1)], cal.end + 1).astype(float)
    return draw_baskets(rng, block.segment, cal.start, cal.end, rows, days)


def _thin_orders(orders: dict[str, np.ndarray], baskets: Baskets) -> None:
    """Shrink the orders placed after groups went elsewhere by those groups' share of the basket (in place)."""
    sale = orders["amount"] > 0
    kept = remaining_share(baskets, orders["row"][sale], orders["day"][sale])
    orders["amount"][sale] = np.maximum(np.round(orders["amount"][sale] * kept, 2), 1.0)
    orders["margin"][sale] = np.round(orders["margin"][sale] * kept, 2)


def _lines_table(lines: dict[str, np.ndarray], order_ids: pd.Series) -> pd.DataFrame:
    ids = order_ids.array._pa_array.combine_chunks()
    return pd.DataFrame(
        {
            "order_id": pd.Series(pd.array(ids.take(pa.array(lines["order"], pa.int64())), dtype=STRING_DTYPE)),
            "product_id": _string_ids("P", lines["product"] + 1, 4),
            "quantity": lines["quantity"],
            "amount": lines["amount"],
            "category": pd.Categorical.from_codes(lines["product"] // PRODUCTS_PER_GROUP, dtype=_CATEGORIES["product_group"]),
        }
    )


def _empty_tables() -> dict[str, pd.DataFrame]:
    """The tables with their columns and dtypes, no rows."""
    no_rows = np.empty(0, np.int64)
    no_days = np.empty(0)

    def strings() -> pd.Series:
        return pd.Series([], dtype=STRING_DTYPE)

    return {
        "customers": pd.DataFrame(
            {
                "customer_id": strings(),
                "name": strings(),
                "region": _categorical(no_rows, "region"),
                "segment": _categorical(no_rows, "segment"),
                "channel": _categorical(no_rows, "channel"),
                "account_manager": pd.Categorical([], categories=[]),
                "settlement_terms": _categorical(no_rows, "settlement_terms"),
                "credit_limit": no_days,
                "created_at": _dates(no_days),
            }
        ),
        "orders": pd.DataFrame(
            {"order_id": strings(), "customer_id": strings(), "order_date": _dates(no_days), "amount": no_days, "margin": no_days}
        ),
        "complaints": pd.DataFrame(
            {
                "complaint_id": strings(),
                "customer_id": strings(),
                "opened_at": _dates(no_days),
                "resolved_at": _dates(no_days),
                "severity": _categorical(no_rows, "severity"),
                "category": _categorical(no_rows, "category"),
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": strings(),
                "customer_id": strings(),
                "issued_at": _dates(no_days),
                "due_at": _dates(no_days),
                "amount": no_days,
                "paid_at": _dates(no_days),
            }
        ),
        "order_lines": pd.DataFrame(
            {"order_id": strings(), "product_id": strings(), "quantity": no_days, "amount": no_days, "category": pd.Categorical.from_codes(no_rows, dtype=_CATEGORIES["product_group"])}
        ),
        "contacts": pd.DataFrame({"customer_id": strings(), "contacted_at": _dates(no_days), "kind": _categorical(no_rows, "kind")}),
        "customer_history": pd.DataFrame({"customer_id": strings(), "column": strings(), "value": strings(), "valid_from": _dates(no_days)}),
    }


def iter_sample_chunks(
    customers: int,
    years: float = 3.0,
    seed: int = 42,
    end: datetime.date = datetime.date(2025, 12, 31),
    chunk_size: int = 10_000,
    lines: bool = True,
    program: RetentionProgram | None = None,
) -> Iterator[dict[str, pd.DataFrame]]:
    """Yield the tables of :data:`TABLE_NAMES` for consecutive slices of customers.

    Concatenating every chunk gives the whole dataset. Chunks hold whole blocks of
    :data:`BLOCK_SIZE` customers (``chunk_size`` is rounded up to a multiple of it), and each block
    has its own random stream, so the rows depend only on ``(customers, years, seed, end)``: any
    ``chunk_size`` gives the same concatenated frames (row index aside). Ids are numbered in block
    order and unique across chunks; a chunk's tables refer only to that chunk's customers.

    Args:
        customers: number of customers (ids ``C000001`` onwards).
        years: length of the window ending at ``end``; customers may have joined before it.
        seed: random seed.
        end: last day of the data; no row carries a later date.
        chunk_size: customers per chunk (rounded up to whole blocks); bounds the memory in use.
        lines: also write the ``order_lines`` table (about four lines an order).
        program: a retention program to simulate from its start (the chunks then also hold its truth;
            see :func:`features.sample_program.generate_with_program`).

    Returns:
        An iterator of dicts with the tables of :data:`TABLE_NAMES`.
    """
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    if not years > 0:
        raise ValueError(f"years must be > 0, got {years}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    calendar = _make_calendar(years, end)
    roster = _make_roster(customers, seed)
    counters = _Counters()
    blocks_per_chunk = -(-chunk_size // BLOCK_SIZE)
    n_blocks = -(-customers // BLOCK_SIZE)
    for first_block in range(0, n_blocks, blocks_per_chunk):
        parts = []
        for block in range(first_block, min(first_block + blocks_per_chunk, n_blocks)):
            first = block * BLOCK_SIZE
            size = min(BLOCK_SIZE, customers - first)
            if program is None:
                parts.append(_simulate_block(block, first + 1, size, calendar, roster, seed, counters, lines=lines))
            else:
                parts.append(_simulate_with_program(block, first + 1, size, calendar, roster, seed, counters, lines, program))
        names = [n for n in TABLE_NAMES if n in parts[0]] + [n for n in parts[0] if n not in TABLE_NAMES]
        yield {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in names}


def generate_sample(
    customers: int,
    years: float = 3.0,
    seed: int = 42,
    end: datetime.date = datetime.date(2025, 12, 31),
    lines: bool = True,
) -> dict[str, pd.DataFrame]:
    """The whole sample dataset in memory (for small ``customers``; use :func:`iter_sample_chunks` for large).

    Args:
        customers: number of customers.
        years: length of the window ending at ``end``.
        seed: random seed.
        end: last day of the data.
        lines: also write the ``order_lines`` table.

    Returns:
        The tables of :data:`TABLE_NAMES`, each with a fresh RangeIndex.
    """
    chunks = list(iter_sample_chunks(customers, years, seed, end, lines=lines))
    if not chunks:
        empty = _empty_tables()
        return empty if lines else {k: v for k, v in empty.items() if k != "order_lines"}
    if len(chunks) == 1:
        return chunks[0]
    return {name: pd.concat([c[name] for c in chunks], ignore_index=True) for name in chunks[0]}
