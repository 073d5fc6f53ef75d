"""Churn labels and the training set: matured labels only, as-of dates on short histories, clear errors."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from features.dataset import CRMDataset, DataError
from features.labels import SHORT_WARMUP_DAYS, build_training_set, snapshot_dates
from features.registry import BTYD, FEATURES
from features.sample_data import generate_sample
from features.snapshot import build_snapshot

START = date(2023, 1, 2)
T = date(2024, 7, 1)


def rhythm_orders(days: int, customers: int = 12) -> pd.DataFrame:
    """Customer k orders every 5 + 2k days from START; odd customers stop half-way through."""
    rows = []
    for k in range(customers):
        stop = days if k % 2 == 0 else days // 2
        for d in range(k, stop, 5 + 2 * k):
            rows.append((f"c{k:02d}", START + timedelta(days=d), 100.0 + k))
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    frame.insert(0, "order_id", [f"o{i}" for i in range(len(frame))])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


def dataset(orders: pd.DataFrame) -> CRMDataset:
    return CRMDataset.from_frames({"orders": orders}, as_of=date(2030, 1, 1))


def test_churned_means_no_order_in_the_horizon_starting_on_T() -> None:
    rows = [
        ("a", -10, 50.0),
        ("a", 0, 50.0),  # on T: inside [T, T + 90)
        ("b", -10, 50.0),
        ("b", 89, 50.0),  # last day inside the horizon
        ("c", -10, 50.0),
        ("c", 90, 50.0),  # first day after it: churned
        ("d", -10, 50.0),
        ("d", 30, -20.0),  # a return is not an order: churned
        ("e", 10, 50.0),  # not active at T: no row
        ("z", 200, 1.0),  # the data runs past T + 90
    ]
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "customer_id": [r[0] for r in rows],
            "order_date": [T + timedelta(days=r[1]) for r in rows],
            "amount": [r[2] for r in rows],
        }
    )
    frame = build_training_set(dataset(orders), dates=[T])
    assert frame.set_index("customer_id")["churned"].to_dict() == {"a": 0, "b": 0, "c": 1, "d": 1}
    assert frame["churned"].dtype == "int64"
    assert (frame["as_of"] == pd.Timestamp(T)).all()


def test_training_set_keeps_only_matured_labels_and_the_as_of_column() -> None:
    data = dataset(rhythm_orders(520))
    end = data.end_date()
    calls: list[tuple[int, int, date]] = []
    frame = build_training_set(data, horizon_days=90, freq="monthly", progress=lambda i, n, t: calls.append((i, n, t)))
    dates = sorted(frame["as_of"].unique())
    assert frame["as_of"].dtype.kind == "M"
    assert max(dates) == pd.Timestamp(end - timedelta(days=90))
    assert all(d + pd.Timedelta(days=90) <= pd.Timestamp(end) for d in dates)
    assert min(dates) >= pd.Timestamp(data.start_date() + timedelta(days=90))
    assert [c[0] for c in calls] == list(range(1, len(dates) + 1)) and {c[1] for c in calls} == {len(dates)}
    assert frame["churned"].isin([0, 1]).all() and 0 < frame["churned"].mean() < 1
    latest = frame[frame["as_of"] == max(dates)].drop(columns="churned").reset_index(drop=True)
    pd.testing.assert_frame_equal(latest, build_snapshot(data, max(dates).date()))


def test_monthly_dates_step_back_from_the_latest_matured_date() -> None:
    dates = snapshot_dates(date(2022, 1, 1), date(2024, 1, 1), 90, "auto", min_snapshots=12)
    assert dates[-1] == date(2023, 10, 3)
    assert dates[-2] == date(2023, 9, 3) and dates[0] >= date(2022, 4, 1)
    assert len(dates) == 19


def test_auto_frequency_goes_weekly_on_a_short_history() -> None:
    data = dataset(rhythm_orders(250))
    end, start = data.end_date(), data.start_date()
    frame = build_training_set(data, freq="auto", min_snapshots=8)
    dates = sorted(frame["as_of"].dt.date.unique())
    assert dates[-1] == end - timedelta(days=90)
    assert {(b - a).days for a, b in zip(dates, dates[1:], strict=False)} == {7}
    assert len(dates) >= 8 and dates[0] >= start + timedelta(days=SHORT_WARMUP_DAYS)
    assert dates[0] - timedelta(days=7) < start + timedelta(days=SHORT_WARMUP_DAYS)
    assert len(snapshot_dates(start, end, 90, "biweekly")) < len(dates)


def test_auto_frequency_on_a_long_history_goes_finer_only_when_monthly_is_too_few() -> None:
    start, end = date(2022, 1, 1), date(2023, 6, 1)
    monthly = snapshot_dates(start, end, 90, "monthly")
    assert snapshot_dates(start, end, 90, "auto", min_snapshots=3) == monthly
    assert monthly[0] >= start + timedelta(days=90)
    biweekly = snapshot_dates(start, end, 90, "auto", min_snapshots=len(monthly) + 1)
    assert {(b - a).days for a, b in zip(biweekly, biweekly[1:], strict=False)} == {14}


def test_a_short_history_takes_weekly_dates_after_a_short_warm_up() -> None:
    data = dataset(rhythm_orders(150))
    frame = build_training_set(data)
    dates = frame["as_of"].dt.date.unique().tolist()
    assert dates[-1] == data.end_date() - timedelta(days=90)
    earliest = data.start_date() + timedelta(days=SHORT_WARMUP_DAYS)
    assert dates[0] >= earliest and dates[0] - timedelta(days=7) < earliest
    assert all((b - a).days == 7 for a, b in zip(dates, dates[1:], strict=False)) and len(dates) > 5


def test_a_history_too_short_for_the_warm_up_gives_one_snapshot() -> None:
    data = dataset(rhythm_orders(110))
    frame = build_training_set(data)
    assert frame["as_of"].dt.date.unique().tolist() == [data.end_date() - timedelta(days=90)]


def test_no_matured_label_is_a_clear_error() -> None:
    data = dataset(rhythm_orders(80))
    with pytest.raises(DataError, match="no churn label can mature.*90-day horizon"):
        build_training_set(data)
    with pytest.raises(DataError, match="has not matured"):
        build_training_set(dataset(rhythm_orders(700)), dates=[START + timedelta(days=650)])


def test_as_of_cuts_the_data_and_every_label_matures_before_it() -> None:
    data = dataset(rhythm_orders(700))
    as_of = START + timedelta(days=400)
    frame = build_training_set(data, as_of=as_of, horizon_days=60, freq="monthly")
    assert (frame["as_of"] + pd.Timedelta(days=60) <= pd.Timestamp(as_of)).all()
    assert frame["as_of"].max() == pd.Timestamp(as_of - timedelta(days=60))
    with pytest.raises(DataError, match="empty"):
        build_training_set(data, as_of=START)


def test_absent_optional_tables_leave_their_features_out_of_the_training_set() -> None:
    frame = build_training_set(dataset(rhythm_orders(400)), dates=[START + timedelta(days=200), START + timedelta(days=300)])
    groups = {FEATURES[c].group for c in frame.columns if c in FEATURES}
    assert groups == {"orders", "tiers", "btyd"}
    assert list(frame.columns[:2]) == ["customer_id", "as_of"] and frame.columns[-1] == "churned"


def test_the_training_set_equals_the_snapshots_of_its_dates_row_for_row() -> None:
    """Shared gaps and BG/NBD warm starts change nothing: every date's rows are its snapshot and its labels."""
    tables = generate_sample(300, years=2, seed=21)
    data = CRMDataset.from_frames(tables, validate=False)
    dates = [date(2024, 9, 1), date(2024, 10, 1), date(2025, 3, 15)]
    frame = build_training_set(data, horizon_days=90, dates=dates)
    orders = tables["orders"]
    for t in dates:
        rows = frame[frame["as_of"] == pd.Timestamp(t)].reset_index(drop=True)
        snapshot = build_snapshot(data, t)
        assert len(snapshot) > 100 and snapshot.attrs == {} == frame.attrs  # to_parquet writes attrs as JSON
        model = [c for c in snapshot.columns if c not in BTYD]
        pd.testing.assert_frame_equal(rows[model], snapshot[model], check_exact=False, rtol=1e-12, atol=1e-12)
        pd.testing.assert_frame_equal(rows[list(BTYD)], snapshot[list(BTYD)], check_exact=False, rtol=1e-6, atol=1e-9)
        window = orders[(orders["amount"] > 0) & (orders["order_date"] >= pd.Timestamp(t)) & (orders["order_date"] < pd.Timestamp(t + timedelta(days=90)))]
        assert rows["churned"].tolist() == [int(c not in set(window["customer_id"])) for c in rows["customer_id"]]
