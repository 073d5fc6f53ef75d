"""Partial churn: the rows of the groups a customer buys regularly, their label, the time split and the choice of model."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from test_features_leakage import VALID_UNTIL, as_known_on, with_future_rows

from features.dataset import CRMDataset, DataError
from features.group_risk import LABEL, STAYED, build_group_rows, build_group_training_set
from features.registry import GROUP_FEATURES
from features.sample_data import generate_sample
from training.partial import BASELINE, MODEL, fit_group_risk, split_by_date

END = date(2025, 12, 31)
T = date(2025, 6, 1)


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return generate_sample(200, years=2, seed=13, end=END)


def _bought(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    lines = tables["order_lines"].merge(tables["orders"][["order_id", "customer_id", "order_date"]], on="order_id")
    lines = lines[lines["amount"] > 0].copy()
    lines["category"] = lines["category"].astype(str)
    return lines


def test_rows_are_the_regular_groups_and_the_label_is_what_happened(sample: dict[str, pd.DataFrame]) -> None:
    data = CRMDataset.from_frames(sample, as_of=END)
    rows = build_group_training_set(data, dates=[T])
    lines = _bought(sample)
    stamp = pd.Timestamp(T)
    d = (stamp - lines["order_date"]).dt.days
    before = lines[(d >= 1) & (d <= 360)].assign(quarter=lambda x: (stamp - x["order_date"]).dt.days.sub(1) // 90)
    quarters = before.groupby(["customer_id", "category"])["quarter"].nunique()
    active = set(sample["orders"].loc[(sample["orders"]["amount"] > 0) & (stamp - sample["orders"]["order_date"]).dt.days.between(1, 365), "customer_id"])
    regular = {k for k, n in quarters.items() if n >= 2 and k[0] in active}
    assert set(zip(rows["customer_id"], rows["product_group"], strict=True)) == regular
    ahead = lines[(lines["order_date"] >= stamp) & (lines["order_date"] < stamp + pd.Timedelta(days=90))]
    bought_again = set(zip(ahead["customer_id"], ahead["category"], strict=True))
    ordered_again = set(ahead["customer_id"])
    expected_stop = [int((c, g) not in bought_again) for c, g in zip(rows["customer_id"], rows["product_group"], strict=True)]
    assert rows[LABEL].tolist() == expected_stop
    assert rows[STAYED].tolist() == [int(c in ordered_again) for c in rows["customer_id"]]
    assert 0 < rows[LABEL].mean() < 1 and ((rows[LABEL] == 1) & (rows[STAYED] == 1)).any(), "some groups stop while the customer stays"
    last = before.groupby(["customer_id", "category"])["order_date"].max()
    days_since = [(stamp - last[(c, g)]).days for c, g in zip(rows["customer_id"], rows["product_group"], strict=True)]
    assert rows["group_days_since_last"].tolist() == days_since


def test_nothing_after_T_reaches_the_rows(sample: dict[str, pd.DataFrame]) -> None:
    original = build_group_rows(CRMDataset.from_frames(sample, as_of=VALID_UNTIL), T)
    grown = build_group_rows(CRMDataset.from_frames(with_future_rows(sample, T, seed=5), as_of=VALID_UNTIL), T)
    truncated = build_group_rows(CRMDataset.from_frames(as_known_on(sample, T), as_of=VALID_UNTIL), T)
    assert len(original) > 100
    pd.testing.assert_frame_equal(grown, original, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(truncated, original, check_exact=False, rtol=1e-9)


def _synthetic(rng: np.random.Generator, dates: list[date], rows: int, driver: str) -> pd.DataFrame:
    """Labelled rows whose stopping depends on ``driver`` alone (every other feature is noise)."""
    frames = []
    for t in dates:
        frame = pd.DataFrame({name: rng.normal(size=rows) for name in GROUP_FEATURES})
        frame["group_days_since_last"] = rng.exponential(40.0, rows)
        signal = np.log1p(frame["group_days_since_last"]) - 3.5 if driver == "recency" else 3.0 * np.sin(3.0 * frame[driver])
        frame[LABEL] = (rng.random(rows) < 1.0 / (1.0 + np.exp(-2.0 * signal))).astype(int)
        frame[STAYED] = 1
        frame["as_of"] = pd.Timestamp(t)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


DATES = [date(2024, 1, 1) + timedelta(days=30 * k) for k in range(12)]


def test_the_split_keeps_a_horizon_between_the_parts() -> None:
    parts = split_by_date(_synthetic(np.random.default_rng(1), DATES, 300, "recency"), horizon_days=90)
    test, valid, train_last = parts.test["as_of"].max(), parts.valid["as_of"].max(), parts.train["as_of"].max()
    assert parts.test["as_of"].nunique() == parts.valid["as_of"].nunique() == 1
    assert (test - valid).days >= 90 and (valid - train_last).days >= 90
    assert test == pd.Timestamp(DATES[-1])
    with pytest.raises(DataError, match="three as-of dates a horizon"):
        split_by_date(_synthetic(np.random.default_rng(1), DATES[:5], 300, "recency"), horizon_days=90)


def test_the_baseline_is_served_when_recency_is_all_there_is() -> None:
    result = fit_group_risk(_synthetic(np.random.default_rng(2), DATES, 1500, "recency"), horizon_days=90, seed=3)
    assert result.chosen == BASELINE and result.served.kind == BASELINE
    assert result.validation[BASELINE]["roc_auc"] >= result.validation[MODEL]["roc_auc"]


def test_the_model_is_served_when_it_sees_more_and_is_refitted_on_every_date() -> None:
    result = fit_group_risk(_synthetic(np.random.default_rng(4), DATES, 1500, "group_share_365d"), horizon_days=90, seed=3)
    assert result.chosen == MODEL and result.served.kind == MODEL
    assert result.served.metadata["train_last"] == str(DATES[-1])
    table = result.comparison.set_index(["subset", "method"])
    assert table.loc[("all", MODEL), "roc_auc"] > table.loc[("all", BASELINE), "roc_auc"] + 0.1
