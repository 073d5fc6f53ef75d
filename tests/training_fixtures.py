"""Small labelled-snapshot frames of the shape ``features.snapshot.build_training_set`` returns.

The churn probability depends on recency against the customer's rhythm, a falling order trend,
open complaints and overdue receivables (with an interaction a linear model misses), so a tree
model has something to find and the baselines have something to miss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORICAL = ["abc_class", "pyramid_tier", "channel", "debt_class"]
NUMERIC = [
    "days_since_last_order",
    "median_gap_days",
    "overdue_ratio",
    "orders_90d",
    "orders_365d",
    "orders_trend_90d",
    "revenue_365d",
    "revenue_trend_90d",
    "open_complaints",
    "overdue_balance",
    "days_since_last_contact",
    "rfm_recency_score",
    "rfm_frequency_score",
    "rfm_monetary_score",
]
FEATURES = NUMERIC + CATEGORICAL


def synthetic_training_set(customers: int = 300, snapshots: int = 14, seed: int = 0, start: str = "2022-01-01") -> pd.DataFrame:
    """Monthly labelled snapshots of ``customers`` customers.

    Args:
        customers: number of customers (each appears in most snapshots).
        snapshots: number of monthly as-of dates.
        seed: random seed.
        start: the first as-of date.

    Returns:
        ``customer_id``, ``as_of``, ``region``, the features of :data:`FEATURES` and ``churned``.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:05d}" for i in range(customers)])
    gap = rng.gamma(2.0, 12.0, customers) + 5
    value = rng.lognormal(9.0, 1.0, customers)
    channel = rng.choice(["direct", "distributor", "agent", "retail"], customers)
    region = rng.choice(["north", "south", "east", "west"], customers)
    frames = []
    for as_of in pd.date_range(start, periods=snapshots, freq="MS"):
        active = rng.random(customers) < 0.9
        n = int(active.sum())
        g = gap[active]
        days_since = rng.exponential(g * rng.choice([0.6, 1.0, 2.5], n, p=[0.45, 0.35, 0.2]))
        overdue = days_since / g
        orders_365 = np.maximum(1, rng.poisson(365 / g))
        orders_90 = rng.poisson(orders_365 / 4 * np.clip(1.3 - 0.3 * overdue, 0.05, 2))
        trend = np.clip((orders_90 - orders_365 / 4) / (orders_90 + orders_365 / 4 + 1e-9), -1, 1)
        revenue = value[active] * orders_365 / 10 * rng.lognormal(0, 0.2, n)
        complaints = rng.poisson(0.3, n)
        overdue_balance = np.where(rng.random(n) < 0.25, rng.lognormal(7, 1, n), 0.0)
        contact = rng.exponential(60, n)
        logit = (
            -2.2
            + 1.1 * np.log1p(overdue)
            - 0.9 * trend
            + 0.6 * complaints
            + 0.9 * ((overdue_balance > 0) & (complaints > 0))
            + 0.004 * contact
            - 0.25 * np.log1p(orders_365)
            + 0.4 * (channel[active] == "retail")
        )
        churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
        rank = pd.Series(revenue).rank(pct=True).to_numpy()
        frame = pd.DataFrame(
            {
                "customer_id": ids[active],
                "as_of": as_of,
                "region": region[active],
                "days_since_last_order": np.round(days_since),
                "median_gap_days": np.round(g),
                "overdue_ratio": np.where(rng.random(n) < 0.05, np.nan, overdue),
                "orders_90d": orders_90.astype(float),
                "orders_365d": orders_365.astype(float),
                "orders_trend_90d": trend,
                "revenue_365d": revenue,
                "revenue_trend_90d": np.clip(trend + rng.normal(0, 0.2, n), -1, 1),
                "open_complaints": complaints.astype(float),
                "overdue_balance": overdue_balance,
                "days_since_last_contact": contact,
                "rfm_recency_score": pd.qcut(-days_since, 5, labels=False, duplicates="drop") + 1.0,
                "rfm_frequency_score": pd.qcut(orders_365 + rng.random(n) * 1e-3, 5, labels=False) + 1.0,
                "rfm_monetary_score": pd.qcut(revenue, 5, labels=False) + 1.0,
                "abc_class": np.where(rank > 0.8, "A", np.where(rank > 0.5, "B", "C")),
                "pyramid_tier": np.where(rank > 0.95, "platinum", np.where(rank > 0.8, "gold", np.where(rank > 0.4, "iron", "lead"))),
                "channel": channel[active],
                "debt_class": np.where(overdue_balance > 0, rng.choice(["short_term", "long_term"], n), "no_debt"),
                "churned": churned,
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["as_of"] = out["as_of"].astype("datetime64[us]")
    return out
