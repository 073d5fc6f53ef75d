"""The time split: ordered, disjoint, labels matured before the next part starts; bad input explained."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from training_fixtures import synthetic_training_set

from features.dataset import DataError
from training.dataset import SplitConfig, matured, time_split


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_training_set(customers=200, snapshots=16, seed=3)


def test_parts_are_disjoint_ordered_and_cover_no_customer_date_twice(frame: pd.DataFrame) -> None:
    split = time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))
    keys = [set(zip(p["customer_id"], p["as_of"], strict=True)) for p in (split.train, split.valid, split.test)]
    assert not keys[0] & keys[1] and not keys[1] & keys[2] and not keys[0] & keys[2]
    assert split.train["as_of"].max() < split.valid["as_of"].min()
    assert split.valid["as_of"].max() < split.test["as_of"].min()
    assert split.test["as_of"].max() == frame["as_of"].max()
    assert split.test["as_of"].nunique() == 3 and split.valid["as_of"].nunique() == 3


def test_labels_of_each_part_mature_before_the_next_part_starts(frame: pd.DataFrame) -> None:
    split = time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))
    horizon = pd.Timedelta(days=90)
    assert split.train["as_of"].max() + horizon <= split.valid["as_of"].min()
    assert split.valid["as_of"].max() + horizon <= split.test["as_of"].min()
    dropped = set(frame["as_of"]) - set(split.train["as_of"]) - set(split.valid["as_of"]) - set(split.test["as_of"])
    assert dropped, "a 90-day gap between monthly parts must leave snapshots out"


def test_split_does_not_reorder_or_touch_the_input(frame: pd.DataFrame) -> None:
    before = frame.copy()
    time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))
    pd.testing.assert_frame_equal(frame, before)


def test_matured_drops_labels_not_yet_known(frame: pd.DataFrame) -> None:
    last = frame["as_of"].max()
    today = (last + pd.Timedelta(days=60)).date()
    kept = matured(frame, horizon_days=90, as_of=today)
    assert kept["as_of"].max() + pd.Timedelta(days=90) <= pd.Timestamp(today)
    assert last not in set(kept["as_of"])


def test_no_matured_snapshot_says_what_to_change(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"no matured snapshot.*horizon"):
        time_split(frame.iloc[0:0], horizon_days=90)


def test_single_class_says_no_customer_was_lost(frame: pd.DataFrame) -> None:
    loyal = frame.assign(churned=0)
    with pytest.raises(DataError, match=r"no customer was lost.*shorter horizon"):
        time_split(loyal, horizon_days=90)
    lost = frame.assign(churned=1)
    with pytest.raises(DataError, match="every customer was lost"):
        time_split(lost, horizon_days=90)


def test_too_few_test_customers_names_the_numbers(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"test period .* has \d+ customers .* at least 10000 customers"):
        time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=10_000))


def test_too_short_history_asks_for_more_history_or_a_shorter_horizon(frame: pd.DataFrame) -> None:
    short = frame[frame["as_of"] >= frame["as_of"].max() - pd.Timedelta(days=200)]
    with pytest.raises(DataError, match=r"too little matured history.*shorter horizon"):
        time_split(short, horizon_days=90, config=SplitConfig(min_test_customers=10))


def test_duplicate_customer_dates_are_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="appear twice"):
        time_split(pd.concat([frame, frame.head(1)]), horizon_days=90)


def test_split_by_date_not_by_row_order(frame: pd.DataFrame) -> None:
    shuffled = frame.sample(frac=1.0, random_state=0)
    a = time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))
    b = time_split(shuffled, horizon_days=90, config=SplitConfig(min_test_customers=50))
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        pd.testing.assert_frame_equal(x, y)
    assert a.periods()["test"][1] == date(2023, 4, 1).isoformat()
