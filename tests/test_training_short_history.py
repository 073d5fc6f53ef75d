"""A short history: the same forward order without the gaps, each part with its own customers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from training_fixtures import CATEGORICAL, FEATURES, synthetic_training_set

from training.dataset import OVERLAPPING, ShortHistoryError, SplitConfig, split_for_training
from training.train import fit_frame

PRIOR = "btyd_p_no_order_90d"


def with_prior(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noisy = 0.6 * frame["churned"].to_numpy() + 0.4 * rng.random(len(frame))
    return frame.assign(**{PRIOR: np.clip(noisy, 0.01, 0.99)})


@pytest.fixture(scope="module")
def short() -> pd.DataFrame:
    weekly = synthetic_training_set(customers=600, snapshots=6)
    weekly["as_of"] = pd.Timestamp("2022-01-03") + pd.to_timedelta(weekly["as_of"].rank(method="dense").astype(int) * 7, unit="D")
    return with_prior(weekly)


def test_a_short_history_keeps_time_order_without_gaps_and_gives_each_part_its_own_customers(short: pd.DataFrame) -> None:
    split = split_for_training(short, horizon_days=90, config=SplitConfig(min_test_customers=50))
    assert split.evaluation == OVERLAPPING and split.short and split.gap_days == 0
    assert split.train["as_of"].max() < split.valid["as_of"].min() <= split.valid["as_of"].max() < split.test["as_of"].min()
    assert split.test["as_of"].max() == short["as_of"].max()
    customers = [set(p["customer_id"]) for p in (split.train, split.valid, split.test)]
    assert not customers[0] & customers[1] and not customers[1] & customers[2] and not customers[0] & customers[2]
    assert not set(split.before_test()["customer_id"]) & customers[2], "the tested model must not learn the test customers' earlier weeks"
    assert len(split.everything()) == len(short)


def test_the_customer_groups_follow_the_seed_not_the_row_order(short: pd.DataFrame) -> None:
    config = SplitConfig(min_test_customers=50)
    one = split_for_training(short, horizon_days=90, config=config, seed=1)
    again = split_for_training(short.sample(frac=1.0, random_state=3), horizon_days=90, config=config, seed=1)
    other = split_for_training(short, horizon_days=90, config=config, seed=2)
    assert set(one.test["customer_id"]) == set(again.test["customer_id"])
    assert set(one.test["customer_id"]) != set(other.test["customer_id"])


def test_a_long_history_keeps_the_gaps() -> None:
    split = split_for_training(synthetic_training_set(customers=200, snapshots=16, seed=3), horizon_days=90, config=SplitConfig(min_test_customers=50))
    assert not split.short and split.gap_days == 90


def test_fewer_than_three_snapshot_dates_is_explained(short: pd.DataFrame) -> None:
    two = short[short["as_of"] >= sorted(short["as_of"].unique())[-2]]
    with pytest.raises(ShortHistoryError, match="2 snapshot date.*at least three are needed"):
        split_for_training(two, horizon_days=90, config=SplitConfig(min_test_customers=50))
    with pytest.raises(ShortHistoryError, match="honest time split"):
        split_for_training(short, horizon_days=90, config=SplitConfig(min_test_customers=50, short_history="fail"))


def test_short_history_training_tests_forward_and_serves_a_refit_on_every_week(short: pd.DataFrame, tmp_path: Path) -> None:
    latest = short["as_of"].max()
    fitted = fit_frame(
        short, feature_names=[*FEATURES, PRIOR], categorical=CATEGORICAL, horizon_days=90,
        as_of=(latest + pd.Timedelta(days=90)).date(), trials=2, timeout_s=None, split=SplitConfig(min_test_customers=50),
    )
    meta = fitted.model.metadata
    assert meta["evaluation"] == OVERLAPPING
    assert meta["train_last"] == latest.date().isoformat()
    assert fitted.tested.metadata["train_last"] < meta["test_first"]
    tuning = fitted.selection.tuning
    assert tuning["params"]["num_leaves"] <= 15, "a short history searches small trees"
    assert set(fitted.test_proba) == {"model", "recency", "bgnbd", "logistic_rfm"}
    assert 0.5 < fitted.metrics["roc_auc"] <= 1.0
