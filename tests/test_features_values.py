"""Every feature of a snapshot checked by hand on tiny tables.

All dates are written as days before T (``ago(k)``), so a "days since" value can be read off the
table. T = 2024-07-01; the windows are [T - N days, T).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from features.btyd import btyd_features
from features.dataset import CRMDataset
from features.registry import BTYD, CATEGORICAL, FEATURES, model_features
from features.snapshot import build_snapshot

T = date(2024, 7, 1)
NAN = math.nan
LINE_FEATURES = [name for name, spec in FEATURES.items() if spec.group == "lines"]  # by hand in test_features_lines.py


def ago(days: int | None) -> str | None:
    """The date ``days`` before T (negative = after T)."""
    return None if days is None else (T - timedelta(days=days)).isoformat()


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Six customers; c1, c2, c3, c6 are active at T, c4 and c5 are not."""
    orders = [
        # customer, days before T, amount, margin
        ("c1", 400, 100.0, 10.0),
        ("c1", 200, 200.0, 40.0),
        ("c1", 100, 300.0, 60.0),
        ("c1", 60, 400.0, 80.0),
        ("c1", 20, 500.0, None),
        ("c1", 10, -50.0, -10.0),  # a return
        ("c1", 0, 999.0, 99.0),  # on T: not seen
        ("c2", 45, 120.0, 30.0),  # the only order
        ("c3", 300, 50.0, 5.0),
        ("c3", 0, 80.0, 8.0),  # on T: not seen
        ("c4", 370, 70.0, 7.0),  # older than the active window
        ("c4", 0, 70.0, 7.0),  # on T: not seen, so c4 is not active
        ("c5", 500, 60.0, 6.0),
        ("c5", 30, -20.0, -2.0),  # a return is not an order: c5 is not active
        ("c6", 300, 100.0, None),
        ("c6", 100, 100.0, None),
    ]
    complaints = [
        # id, customer, opened, resolved (days before T; negative = after T), severity
        ("k1", "c1", 50, -5, "high"),  # resolved after T: open at T
        ("k2", "c1", 200, 190, "low"),
        ("k3", "c1", 400, 380, "medium"),  # resolved before the 365-day window
        ("k4", "c3", 30, 28, "medium"),
        ("k5", "c3", 0, None, "high"),  # opened on T: not seen
        ("k6", "c6", 100, 0, "high"),  # resolved on T: open at T
    ]
    invoices = [
        # id, customer, issued, due, paid (days before T; negative = after T), amount
        ("i1", "c1", 100, 70, 10, 300.0),  # paid 60 days late, 90 days to pay
        ("i2", "c1", 60, 30, -3, 400.0),  # due before T, paid after T: unpaid, 30 days past due
        ("i3", "c1", 20, -10, None, 500.0),  # not yet due
        ("i4", "c1", 250, 220, None, 100.0),  # 220 days past due: bad debt
        ("i5", "c1", 150, 120, 125, 200.0),  # paid 5 days before due, 25 days to pay
        ("i6", "c1", 0, -30, None, 999.0),  # issued on T: not seen
        ("i7", "c3", 100, 60, None, 80.0),  # 60 days past due
        ("i8", "c3", 200, 150, None, 20.0),  # 150 days past due
        ("i9", "c6", 100, 100, 100, 100.0),  # cash: paid on the day
    ]
    contacts = [("c1", 5), ("c1", 40), ("c1", 200), ("c1", 0), ("c2", 400)]
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
                "region": ["North", "South", None, "West", "West", "East"],
                "segment": ["retail_chain", "shop", "hospitality", "shop", "shop", "institution"],
                "channel": ["direct", "agent", "retail", "agent", "agent", "distributor"],
                "settlement_terms": ["credit", "cash", "credit", "cash", "cash", "prepaid"],
                "account_manager": ["am1", "am2", "am1", "am2", "am2", "am3"],
                "credit_limit": [2000.0, 1000.0, 0.0, None, None, None],
            }
        ),
        "orders": pd.DataFrame(
            {
                "order_id": [f"o{i}" for i in range(len(orders))],
                "customer_id": [o[0] for o in orders],
                "order_date": [ago(o[1]) for o in orders],
                "amount": [o[2] for o in orders],
                "margin": [o[3] for o in orders],
            }
        ),
        "complaints": pd.DataFrame(
            {
                "complaint_id": [c[0] for c in complaints],
                "customer_id": [c[1] for c in complaints],
                "opened_at": [ago(c[2]) for c in complaints],
                "resolved_at": [ago(c[3]) for c in complaints],
                "severity": [c[4] for c in complaints],
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": [i[0] for i in invoices],
                "customer_id": [i[1] for i in invoices],
                "issued_at": [ago(i[2]) for i in invoices],
                "due_at": [ago(i[3]) for i in invoices],
                "paid_at": [ago(i[4]) for i in invoices],
                "amount": [i[5] for i in invoices],
            }
        ),
        "contacts": pd.DataFrame({"customer_id": [c[0] for c in contacts], "contacted_at": [ago(c[1]) for c in contacts]}),
    }


EXPECTED: dict[str, dict[str, object]] = {
    # gaps c1: 400->200->100->60->20 = 200, 100, 40, 40 (median 70); c6: 200
    "days_since_last_order": {"c1": 20, "c2": 45, "c3": 300, "c6": 100},
    "days_since_first_order": {"c1": 400, "c2": 45, "c3": 300, "c6": 300},
    "median_gap_days": {"c1": 70, "c2": NAN, "c3": NAN, "c6": 200},
    "overdue_ratio": {"c1": 20 / 70, "c2": NAN, "c3": NAN, "c6": 0.5},
    "orders_30d": {"c1": 1, "c2": 0, "c3": 0, "c6": 0},
    "orders_90d": {"c1": 2, "c2": 1, "c3": 0, "c6": 0},
    "orders_180d": {"c1": 3, "c2": 1, "c3": 0, "c6": 1},
    "orders_365d": {"c1": 4, "c2": 1, "c3": 1, "c6": 2},
    "orders_trend_90d": {"c1": (2 - 1) / 3, "c2": 1.0, "c3": NAN, "c6": -1.0},
    "revenue_90d": {"c1": 850, "c2": 120, "c3": 0, "c6": 0},
    "revenue_180d": {"c1": 1150, "c2": 120, "c3": 0, "c6": 100},
    "revenue_365d": {"c1": 1350, "c2": 120, "c3": 50, "c6": 200},
    "revenue_trend_90d": {"c1": (850 - 300) / 1150, "c2": 1.0, "c3": NAN, "c6": -1.0},
    "revenue_trend_180d": {"c1": (1150 - 200) / 1350, "c2": 1.0, "c3": -1.0, "c6": 0.0},
    "avg_order_value_365d": {"c1": 350, "c2": 120, "c3": 50, "c6": 100},
    "avg_order_value_trend_90d": {"c1": (450 - 300) / 750, "c2": NAN, "c3": NAN, "c6": NAN},
    "returns_share_365d": {"c1": 50 / 1400, "c2": 0, "c3": 0, "c6": 0},
    "margin_365d": {"c1": 170, "c2": 30, "c3": 5, "c6": NAN},
    "margin_rate_365d": {"c1": 170 / 850, "c2": 0.25, "c3": 0.1, "c6": NAN},
    # c1 silent 20 days, no gap shorter; c6 silent 100 days, its one gap is 200
    "silence_percentile": {"c1": 0.5 / 5, "c2": NAN, "c3": NAN, "c6": 0.5 / 2},
    "last_gap_ratio": {"c1": 40 / 70, "c2": NAN, "c3": NAN, "c6": 1.0},
    # c1: 200, 300, 400, 500 (mean 350, deviations 150, 50, 50, 150); c6: 100, 100
    "order_value_cv_365d": {"c1": math.sqrt((150**2 * 2 + 50**2 * 2) / 3) / 350, "c2": NAN, "c3": NAN, "c6": 0.0},
    # the season is [T - 365, T - 275); the data reach back 500 days (c5)
    "orders_same_season_last_year": {"c1": 0, "c2": 0, "c3": 1, "c6": 1},
    # order days in 365 days * 30 / min(365, days since the first order)
    "order_rate_365d": {"c1": 4 * 30 / 365, "c2": 30 / 45, "c3": 30 / 300, "c6": 2 * 30 / 300},
    "complaints_90d": {"c1": 1, "c2": 0, "c3": 1, "c6": 0},
    "complaints_365d": {"c1": 2, "c2": 0, "c3": 1, "c6": 1},
    "open_complaints": {"c1": 1, "c2": 0, "c3": 0, "c6": 1},
    "high_severity_complaints_365d": {"c1": 1, "c2": 0, "c3": 0, "c6": 1},
    "days_since_last_complaint": {"c1": 50, "c2": NAN, "c3": 30, "c6": 100},
    "mean_resolution_days_365d": {"c1": 10, "c2": NAN, "c3": 2, "c6": NAN},
    "max_resolution_days_365d": {"c1": 10, "c2": NAN, "c3": 2, "c6": NAN},
    "oldest_open_complaint_days": {"c1": 50, "c2": NAN, "c3": NAN, "c6": 100},
    "open_balance": {"c1": 1000, "c2": 0, "c3": 100, "c6": 0},
    "overdue_balance": {"c1": 500, "c2": 0, "c3": 100, "c6": 0},
    "overdue_share": {"c1": 0.5, "c2": 0, "c3": 1, "c6": 0},
    "max_days_past_due": {"c1": 220, "c2": 0, "c3": 150, "c6": 0},
    "weighted_days_past_due": {"c1": (400 * 30 + 100 * 220) / 500, "c2": 0, "c3": (80 * 60 + 20 * 150) / 100, "c6": 0},
    "balance_0_30d": {"c1": 900, "c2": 0, "c3": 0, "c6": 0},
    "balance_31_90d": {"c1": 0, "c2": 0, "c3": 80, "c6": 0},
    "balance_91_180d": {"c1": 0, "c2": 0, "c3": 20, "c6": 0},
    "balance_over_180d": {"c1": 100, "c2": 0, "c3": 0, "c6": 0},
    "late_paid_share_365d": {"c1": 3 / 4, "c2": NAN, "c3": 1, "c6": 0},
    "avg_days_to_pay_365d": {"c1": (90 + 25) / 2, "c2": NAN, "c3": NAN, "c6": 0},
    "days_to_pay_change_90d": {"c1": 90 - 25, "c2": NAN, "c3": NAN, "c6": NAN},
    "balance_to_credit_limit": {"c1": 0.5, "c2": 0, "c3": NAN, "c6": NAN},
    "debt_class": {"c1": "bad_debt", "c2": "no_debt", "c3": "long_term", "c6": "no_debt"},
    "days_since_last_contact": {"c1": 5, "c2": 400, "c3": NAN, "c6": NAN},
    "contacts_90d": {"c1": 2, "c2": 0, "c3": 0, "c6": 0},
    "contacts_365d": {"c1": 3, "c2": 0, "c3": 0, "c6": 0},
    # revenue 1350, 200, 120, 50 of 1720: cumulative before = 0, 1350 (78.5%), 1550 (90.1%), 1670 (97.1%)
    "abc_class": {"c1": "A", "c6": "A", "c2": "B", "c3": "C"},
    # four customers: only rank 0 is within the top 1% / 5% / 20% cut (rank < share * 4)
    "pyramid_tier": {"c1": "platinum", "c2": "lead", "c3": "lead", "c6": "lead"},
    # 1 + floor(5 * customers strictly worse / 4)
    "rfm_recency_score": {"c3": 1, "c6": 2, "c2": 3, "c1": 4},
    "rfm_frequency_score": {"c2": 1, "c3": 1, "c6": 3, "c1": 4},
    "rfm_monetary_score": {"c3": 1, "c2": 2, "c6": 3, "c1": 4},
    "lifecycle_stage": {"c1": "growing", "c2": "new", "c3": "declining", "c6": "mature"},
    "region": {"c1": "North", "c2": "South", "c3": NAN, "c6": "East"},
    "segment": {"c1": "retail_chain", "c2": "shop", "c3": "hospitality", "c6": "institution"},
    "channel": {"c1": "direct", "c2": "agent", "c3": "retail", "c6": "distributor"},
    "settlement_terms": {"c1": "credit", "c2": "cash", "c3": "credit", "c6": "prepaid"},
    "account_manager": {"c1": "am1", "c2": "am2", "c3": "am1", "c6": "am3"},
}


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    data = CRMDataset.from_frames(tiny_tables(), as_of=T + timedelta(days=60))
    return build_snapshot(data, T).set_index("customer_id")


def test_population_is_the_customers_with_an_order_in_the_365_days_before_T(snapshot: pd.DataFrame) -> None:
    assert list(snapshot.index) == ["c1", "c2", "c3", "c6"]
    assert (snapshot["as_of"] == pd.Timestamp(T)).all()


def test_every_registered_feature_is_checked_here() -> None:
    assert set(FEATURES) - set(BTYD) - set(LINE_FEATURES) <= set(EXPECTED)


def test_btyd_features_are_the_model_fitted_on_every_order_before_T(snapshot: pd.DataFrame) -> None:
    orders = CRMDataset.from_frames(tiny_tables(), as_of=T + timedelta(days=60)).table("orders").to_pandas()
    before_t = orders[orders["order_date"] < pd.Timestamp(T)]
    expected = btyd_features(before_t, T, 90, customers=list(snapshot.index), no_order_horizons=(30, 180))
    assert set(BTYD) == set(expected.columns)
    for column in BTYD:
        assert snapshot[column].dtype == np.float64
        np.testing.assert_allclose(snapshot[column].to_numpy(), expected[column].to_numpy(dtype=float), rtol=1e-9)
    assert ((snapshot["btyd_p_no_order_90d"] > 0) & (snapshot["btyd_p_no_order_90d"] < 1)).all()
    assert (snapshot["btyd_p_no_order_30d"] > snapshot["btyd_p_no_order_90d"]).all()
    assert (snapshot["btyd_p_no_order_90d"] > snapshot["btyd_p_no_order_180d"]).all()


def _assert_values(snapshot: pd.DataFrame, column: str, values: dict[str, object]) -> None:
    expected = pd.Series(values).reindex(snapshot.index)
    got = snapshot[column]
    if column in CATEGORICAL or column == "account_manager":
        assert got.isna().tolist() == expected.isna().tolist()
        assert got.dropna().tolist() == expected.dropna().tolist()
    else:
        assert got.dtype == np.float64
        np.testing.assert_allclose(got.to_numpy(), expected.astype(float).to_numpy(), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("column", list(EXPECTED))
def test_feature_value(snapshot: pd.DataFrame, column: str) -> None:
    _assert_values(snapshot, column, EXPECTED[column])


def rhythm_orders() -> pd.DataFrame:
    """The edge cases of the rhythm features: one order day, two orders on a day, the season's bounds."""
    orders = [
        # customer, days before T, amount
        ("r1", 50, 100.0),  # one order day with two orders: no gap
        ("r1", 50, 300.0),
        ("r2", 366, 10.0),  # before the season and the 365-day window
        ("r2", 365, 20.0),  # on T - 365: the first day of both
        ("r2", 276, 30.0),  # the last day of the season
        ("r2", 275, 40.0),  # on T - 365 + 90: past the season
        ("r2", 80, 50.0),  # two orders on one day: one gap
        ("r2", 80, 60.0),
        ("r2", 40, 70.0),  # silent 40 days, as long as its last gap: not shorter
        ("r3", 100, 100.0),  # a young customer: its rate is over 100 days, not 365
        ("r3", 70, 200.0),
        ("r3", 10, 600.0),
        ("r4", 300, 100.0),  # silent far longer than its gaps
        ("r4", 290, 200.0),
        ("r4", 280, 300.0),
        ("r5", 300, -50.0),  # a return in the season is not an order, and makes no gap
        ("r5", 20, 100.0),
        ("r5", 0, 100.0),  # on T: not seen
    ]
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(orders))],
            "customer_id": [o[0] for o in orders],
            "order_date": [ago(o[1]) for o in orders],
            "amount": [o[2] for o in orders],
        }
    )


RHYTHM_EXPECTED: dict[str, dict[str, object]] = {
    # gaps r2: 366->365->276->275->80->40 = 1, 89, 1, 195, 40 (median 40); r3: 30, 60 (median 45); r4: 10, 10
    "silence_percentile": {"r1": NAN, "r2": 2.5 / 6, "r3": 0.5 / 3, "r4": 2.5 / 3, "r5": NAN},
    "last_gap_ratio": {"r1": NAN, "r2": 1.0, "r3": 60 / 45, "r4": 1.0, "r5": NAN},
    # r1: 100, 300; r2: 20, 30, 40, 50, 60, 70 (mean 45); r3: 100, 200, 600 (mean 300); r4: 100, 200, 300
    "order_value_cv_365d": {
        "r1": math.sqrt(2 * 100**2) / 200,
        "r2": math.sqrt((25**2 + 15**2 + 5**2) * 2 / 5) / 45,
        "r3": math.sqrt((200**2 + 100**2 + 300**2) / 2) / 300,
        "r4": 100 / 200,
        "r5": NAN,
    },
    "orders_same_season_last_year": {"r1": 0, "r2": 2, "r3": 0, "r4": 3, "r5": 0},
    "order_rate_365d": {"r1": 30 / 50, "r2": 5 * 30 / 365, "r3": 3 * 30 / 100, "r4": 3 * 30 / 300, "r5": 30 / 20},
}


@pytest.fixture(scope="module")
def rhythm() -> pd.DataFrame:
    data = CRMDataset.from_frames({"orders": rhythm_orders()}, as_of=T)
    return build_snapshot(data, T).set_index("customer_id")


@pytest.mark.parametrize("column", list(RHYTHM_EXPECTED))
def test_rhythm_feature_on_edge_cases(rhythm: pd.DataFrame, column: str) -> None:
    _assert_values(rhythm, column, RHYTHM_EXPECTED[column])


@pytest.mark.parametrize("oldest", [365, 364])
def test_same_season_last_year_is_missing_for_everyone_until_the_data_reach_back_a_year(oldest: int) -> None:
    orders = rhythm_orders()
    orders = orders[orders["order_date"] != ago(366)].copy()
    orders.loc[orders["order_date"] == ago(365), "order_date"] = ago(oldest)  # r2's, now the oldest order of all
    frame = build_snapshot(CRMDataset.from_frames({"orders": orders}, as_of=T), T).set_index("customer_id")
    season = frame["orders_same_season_last_year"]
    assert len(season) == 5
    if oldest == 365:
        assert season.to_dict() == {"r1": 0.0, "r2": 2.0, "r3": 0.0, "r4": 3.0, "r5": 0.0}
    else:
        assert season.isna().all()


def test_columns_are_id_date_descriptive_then_features(snapshot: pd.DataFrame) -> None:
    frame = snapshot.reset_index()
    assert list(frame.columns[:7]) == ["customer_id", "as_of", "region", "segment", "channel", "settlement_terms", "account_manager"]
    assert set(frame.columns[7:]) | {"region", "segment", "channel", "settlement_terms"} == set(FEATURES) - set(LINE_FEATURES)


def test_absent_optional_tables_leave_their_features_out() -> None:
    tables = tiny_tables()
    orders = tables["orders"].drop(columns="margin")
    data = CRMDataset.from_frames({"orders": orders}, as_of=T)
    frame = build_snapshot(data, T)
    groups = {FEATURES[c].group for c in frame.columns if c in FEATURES}
    assert groups == {"orders", "tiers", "btyd"}
    assert "complaints_365d" not in frame and "open_balance" not in frame and "contacts_90d" not in frame
    assert "margin_365d" not in frame and "region" not in frame
    assert list(frame.columns[2:]) == model_features(data)
    expected = {"c1": 1350.0, "c2": 120.0, "c3": 50.0, "c6": 200.0}
    assert frame.set_index("customer_id")["revenue_365d"].to_dict() == expected


def test_missing_optional_columns_leave_their_features_out() -> None:
    tables = tiny_tables()
    tables["complaints"] = tables["complaints"].drop(columns=["resolved_at", "severity"])
    tables["invoices"] = tables["invoices"].drop(columns="paid_at")
    tables["customers"] = tables["customers"][["customer_id", "region"]]
    data = CRMDataset.from_frames(tables, as_of=T + timedelta(days=60))
    frame = build_snapshot(data, T)
    assert "complaints_365d" in frame and "open_complaints" not in frame and "high_severity_complaints_365d" not in frame
    assert not any(FEATURES[c].group == "receivables" for c in frame.columns if c in FEATURES)
    assert "region" in frame and "channel" not in frame
    assert list(frame.columns[3:]) == [f for f in model_features(data) if f != "region"]


def test_tier_cuts_on_a_population_of_one_hundred() -> None:
    revenue = np.arange(1, 101, dtype=float) * 10
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(100)],
            "customer_id": [f"c{i:03d}" for i in range(100)],
            "order_date": ago(10),
            "amount": revenue,
        }
    )
    frame = build_snapshot(CRMDataset.from_frames({"orders": orders}, as_of=T), T).set_index("customer_id")
    by_revenue = frame.sort_values("revenue_365d", ascending=False)
    assert by_revenue["pyramid_tier"].value_counts().to_dict() == {"platinum": 1, "gold": 4, "iron": 15, "lead": 80}
    assert by_revenue["pyramid_tier"].iloc[[0, 1, 4, 5, 19, 20]].tolist() == ["platinum", "gold", "gold", "iron", "iron", "lead"]
    total = revenue.sum()
    before = np.concatenate([[0], np.cumsum(np.sort(revenue)[::-1])[:-1]]) / total
    expected_abc = np.where(before < 0.8, "A", np.where(before < 0.95, "B", "C"))
    assert by_revenue["abc_class"].tolist() == expected_abc.tolist()
    assert frame["rfm_monetary_score"].value_counts().to_dict() == {1.0: 20, 2.0: 20, 3.0: 20, 4.0: 20, 5.0: 20}
    assert (frame["rfm_frequency_score"] == 1.0).all() and (frame["rfm_recency_score"] == 1.0).all()
