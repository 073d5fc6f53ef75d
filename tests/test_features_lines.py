"""The order-lines features: by hand on a tiny basket, and against an independent pandas computation.

The independent computation below reads the tables the way a retention analyst would (pandas,
day counts, sets of products), not through the engine's expressions, and must give the same value
for every active customer, on the generated sample (lines with product groups) and on the carried
slice of the real Online Retail log (products only).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.dataset import CRMDataset
from features.importer import ONLINE_RETAIL_COLUMNS, import_transactions
from features.registry import FEATURES, model_features
from features.sample_data import generate_sample
from features.snapshot import build_snapshot, shared_history, snapshot_expr

T = date(2024, 7, 1)
LINE_FEATURES = [name for name, spec in FEATURES.items() if spec.group == "lines"]
REAL_SLICE = Path(__file__).resolve().parent / "data" / "online_retail_head.parquet"


def ago(days: int) -> str:
    return (T - timedelta(days=days)).isoformat()


def tiny() -> dict[str, pd.DataFrame]:
    """Customer a buys tea and coffee every quarter, then stops coffee; b has one order; c has orders but no lines."""
    orders = [
        ("o1", "a", 300, 100.0),
        ("o2", "a", 200, 100.0),
        ("o3", "a", 120, 100.0),
        ("o4", "a", 30, 60.0),
        ("o5", "a", 10, -10.0),  # a return
        ("o6", "a", 0, 500.0),  # on T: not seen
        ("o7", "b", 50, 40.0),
        ("o8", "c", 20, 70.0),
    ]
    lines = [
        ("o1", "tea-1", 2, 50.0, "tea"),
        ("o1", "coffee-1", 1, 50.0, "coffee"),
        ("o2", "tea-1", 2, 60.0, "tea"),
        ("o2", "coffee-2", 1, 40.0, "coffee"),
        ("o3", "tea-2", 2, 70.0, "tea"),
        ("o3", "coffee-2", 1, 30.0, "coffee"),
        ("o4", "tea-1", 1, 40.0, "tea"),
        ("o4", "cups-1", 4, 20.0, "cups"),
        ("o5", "tea-1", -1, -10.0, "tea"),
        ("o6", "coffee-9", 10, 500.0, "coffee"),
        ("o7", "cups-1", 8, 40.0, "cups"),
    ]
    return {
        "orders": pd.DataFrame(
            {"order_id": [o[0] for o in orders], "customer_id": [o[1] for o in orders], "order_date": [ago(o[2]) for o in orders], "amount": [o[3] for o in orders]}
        ),
        "order_lines": pd.DataFrame(lines, columns=["order_id", "product_id", "quantity", "amount", "category"]),
    }


def test_every_line_feature_by_hand() -> None:
    snap = build_snapshot(CRMDataset.from_frames(tiny(), as_of=T), T).set_index("customer_id")
    a, b, c = snap.loc["a"], snap.loc["b"], snap.loc["c"]
    # a: 120 days ago tea-2 and coffee-2 (previous window), 30 days ago tea-1 and cups-1 (last 90 days)
    assert (a.products_90d, a.products_prev_90d, a.products_dropped_90d) == (2, 2, 2)
    assert a.products_365d == 5  # tea-1, coffee-1, coffee-2, tea-2, cups-1; coffee-9 is on T
    assert a.products_new_90d == 1  # cups-1 (tea-1 was bought 300 days ago)
    assert a.lines_per_order_365d == pytest.approx(8 / 4)  # the return's line is not a purchase
    # groups: last 90 days tea 40, cups 20; the 270 days before: tea 180, coffee 120
    assert a.group_share_shift_90d == pytest.approx(0.5 * (abs(40 / 60 - 180 / 300) + abs(0 - 120 / 300) + abs(20 / 60 - 0)))
    # tea and coffee were bought in the quarters (90, 180] and (180, 270] and (270, 360]: both regular; coffee lapsed
    assert a.regular_groups_lapsed_90d == 1
    assert a.regular_groups_share_90d == pytest.approx(40 / 60)
    assert a.quantity_per_line_365d == pytest.approx(1.5)  # 2, 1, 2, 1, 2, 1, 1, 4
    assert a.unit_price_365d == pytest.approx(np.median([25, 50, 30, 40, 35, 30, 40, 5]))
    assert a.product_reach_365d == pytest.approx(1.0)  # cups-1 has two buyers, the rest one: median of 1, 1, 1, 1, 1, 1, 1, 2
    # matured purchases (over 90 days old): a's at 300, 200 and 120 days (each followed by an order within 90 days
    # but the one at 200, next at 120: 80 days; 300 -> 200: 100 days, no), so tea-1: 1/2, coffee-1: 0/1, coffee-2: 2/2, tea-2: 1/1
    overall = 4 / 6
    rate = {"tea-1": (1 + 20 * overall) / 22, "coffee-1": (20 * overall) / 21, "coffee-2": (2 + 20 * overall) / 22, "tea-2": (1 + 20 * overall) / 21}
    spend = {"tea-1": 150.0, "coffee-1": 50.0, "coffee-2": 70.0, "tea-2": 70.0}  # cups-1 has no matured purchase
    assert a.product_reorder_rate_365d == pytest.approx(sum(spend[p] * rate[p] for p in spend) / sum(spend.values()))
    assert (b.products_90d, b.products_prev_90d, b.products_dropped_90d, b.products_new_90d) == (1, 0, 0, 1)
    assert math.isnan(b.group_share_shift_90d) and math.isnan(b.regular_groups_share_90d)  # nothing before to compare with
    assert (c.products_90d, c.products_365d, c.regular_groups_lapsed_90d) == (0, 0, 0)
    assert math.isnan(c.lines_per_order_365d)


def test_without_lines_the_features_are_left_out() -> None:
    tables = tiny()
    del tables["order_lines"]
    data = CRMDataset.from_frames(tables, as_of=T)
    assert not set(LINE_FEATURES) & set(model_features(data))
    assert not set(LINE_FEATURES) & set(build_snapshot(data, T).columns)


def independent_line_features(orders: pd.DataFrame, lines: pd.DataFrame, t: date) -> pd.DataFrame:
    """The line features of every active customer at ``t``, computed in pandas from the raw tables."""
    stamp = pd.Timestamp(t)
    known = orders[pd.to_datetime(orders["order_date"]) < stamp].assign(order_date=lambda o: pd.to_datetime(o["order_date"]))
    ago_days = (stamp - known["order_date"]).dt.days
    active = sorted(set(known.loc[(known["amount"] > 0) & (ago_days <= 365), "customer_id"]))
    bought = lines.merge(known[["order_id", "customer_id", "order_date"]], on="order_id")
    bought = bought[bought["amount"] > 0].copy()
    bought["d"] = (stamp - bought["order_date"]).dt.days
    bought["group"] = bought["category"].fillna(bought["product_id"]) if "category" in bought.columns else bought["product_id"]
    profile = _independent_profile(known, bought, stamp)
    rows = []
    for customer in active:
        mine = bought[bought["customer_id"] == customer]
        last, prev = set(mine.loc[mine.d <= 90, "product_id"]), set(mine.loc[(mine.d > 90) & (mine.d <= 180), "product_id"])
        first = mine.groupby("product_id")["d"].max()
        year = mine[mine.d <= 365]
        row = {
            "customer_id": customer,
            "products_90d": len(last),
            "products_prev_90d": len(prev),
            "products_dropped_90d": len(prev - last),
            "products_365d": year["product_id"].nunique(),
            "products_new_90d": int((first <= 90).sum()),
            "lines_per_order_365d": len(year) / year["order_id"].nunique() if len(year) else np.nan,
        }
        window = mine[mine.d <= 360]
        spend_last = window[window.d <= 90].groupby("group")["amount"].sum()
        spend_before = window[window.d > 90].groupby("group")["amount"].sum()
        groups = sorted(set(window["group"]))
        share_last = spend_last.reindex(groups, fill_value=0.0) / spend_last.sum() if spend_last.sum() > 0 else None
        share_before = spend_before.reindex(groups, fill_value=0.0) / spend_before.sum() if spend_before.sum() > 0 else None
        row["group_share_shift_90d"] = 0.5 * (share_last - share_before).abs().sum() if share_last is not None and share_before is not None else np.nan
        quarters = window[window.d > 90].assign(q=lambda w: (w.d - 1) // 90).groupby("group")["q"].nunique()
        regular = set(quarters[quarters >= 2].index)
        row["regular_groups_lapsed_90d"] = len(regular - set(spend_last[spend_last > 0].index))
        total_last = spend_last.sum()
        row["regular_groups_share_90d"] = spend_last.reindex(sorted(regular), fill_value=0.0).sum() / total_last if regular and total_last > 0 else np.nan
        rows.append(row | profile.get(customer, dict.fromkeys(PROFILE, np.nan)))
    return pd.DataFrame(rows).set_index("customer_id")


PROFILE = ("quantity_per_line_365d", "unit_price_365d", "product_reach_365d", "product_reorder_rate_365d")


def _independent_profile(known: pd.DataFrame, bought: pd.DataFrame, stamp: pd.Timestamp) -> dict[str, dict[str, float]]:
    """Quantity, unit price, reach and reorder rate of every customer's products, read off the tables."""
    order_days = {c: sorted(set(g["order_date"])) for c, g in known[known["amount"] > 0].groupby("customer_id")}
    purchases = bought.loc[bought.d > 90, ["customer_id", "product_id", "order_date"]].drop_duplicates()

    def reordered(row: pd.Series) -> float:
        later = [day for day in order_days[row.customer_id] if day > row.order_date]
        return float(bool(later) and (later[0] - row.order_date).days <= 90)

    purchases["reordered"] = purchases.apply(reordered, axis=1) if len(purchases) else []
    overall = purchases["reordered"].mean()
    per_product = purchases.groupby("product_id")["reordered"].agg(["sum", "count"])
    rate = (per_product["sum"] + 20 * overall) / (per_product["count"] + 20)
    buyers = bought.groupby("product_id")["customer_id"].nunique()
    out = {}
    for customer, year in bought[bought.d <= 365].groupby("customer_id"):
        rated = year[year["product_id"].isin(rate.index)]
        out[customer] = {
            "quantity_per_line_365d": year["quantity"].abs().median(),
            "unit_price_365d": (year["amount"] / year["quantity"].abs()).median(),
            "product_reach_365d": year["product_id"].map(buyers).median(),
            "product_reorder_rate_365d": (rated["amount"] * rated["product_id"].map(rate)).sum() / rated["amount"].sum() if len(rated) else np.nan,
        }
    return out


def _compare(snapshot: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = snapshot.set_index("customer_id")[LINE_FEATURES]
    assert list(got.index) == list(expected.index)
    pd.testing.assert_frame_equal(got, expected[LINE_FEATURES].astype("float64"), check_exact=False, rtol=1e-9, atol=1e-9, check_names=False)


def test_the_sample_company_equals_an_independent_computation() -> None:
    tables = generate_sample(150, years=2, seed=8, end=date(2025, 12, 31))
    t = date(2025, 8, 1)
    snapshot = build_snapshot(CRMDataset.from_frames(tables, as_of=date(2025, 12, 31)), t)
    expected = independent_line_features(tables["orders"], tables["order_lines"].astype({"category": "str"}), t)
    assert len(expected) > 80 and expected["regular_groups_lapsed_90d"].gt(0).any() and expected["products_dropped_90d"].gt(0).any()
    _compare(snapshot, expected)


def test_the_real_log_slice_equals_an_independent_computation() -> None:
    imported = import_transactions(REAL_SLICE, **ONLINE_RETAIL_COLUMNS)
    assert imported.order_lines is not None
    t = (imported.report.last_date or date.min) - timedelta(days=1)
    snapshot = build_snapshot(CRMDataset.from_frames(imported.frames(), as_of=imported.report.last_date), t)
    expected = independent_line_features(imported.orders, imported.order_lines, t)
    assert len(expected) > 100 and expected["products_90d"].gt(10).any()
    _compare(snapshot, expected)


def test_the_tables_shared_by_a_run_give_what_each_snapshot_computes_from_its_cut() -> None:
    """shared_history's whole-history tables, filtered by date, equal the lines group computed from data.cut(T) alone."""
    tables = generate_sample(150, years=2, seed=9, end=date(2025, 12, 31))
    data = CRMDataset.from_frames(tables, as_of=date(2025, 12, 31))
    for t, earliest in ((date(2025, 3, 1), date(2025, 3, 1)), (date(2025, 8, 1), date(2025, 3, 1))):
        alone = snapshot_expr(data, t).to_pandas().sort_values("customer_id", ignore_index=True)
        with shared_history(data, earliest) as shared:
            assert shared is not None and shared.lines is not None
            from_shared = snapshot_expr(data, t, shared=shared).to_pandas().sort_values("customer_id", ignore_index=True)
        assert len(alone) > 80 and alone["products_new_90d"].gt(0).any() and alone["product_reorder_rate_365d"].notna().any()
        pd.testing.assert_frame_equal(from_shared[LINE_FEATURES], alone[LINE_FEATURES], check_exact=False, rtol=1e-12, atol=1e-12)
