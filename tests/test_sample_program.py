"""The sample company's retention program: nothing before its start changes, its effect is known."""

from __future__ import annotations

import datetime

import pandas as pd
import pytest

from features.sample_data import generate_sample
from features.sample_program import RetentionProgram, generate_with_program

START = datetime.date(2025, 9, 1)
DATES = {"orders": "order_date", "complaints": "opened_at", "invoices": "issued_at", "contacts": "contacted_at"}
IDS = {"orders": "order_id", "complaints": "complaint_id", "invoices": "invoice_id"}


@pytest.fixture(scope="module")
def plain() -> dict:
    return generate_sample(300, years=2.0, seed=5)


def _quiet_customers(plain: dict) -> list[str]:
    orders = plain["orders"]
    last = orders[orders["order_date"] < pd.Timestamp(START)].groupby("customer_id")["order_date"].max()
    silent = (pd.Timestamp(START) - last).dt.days
    return sorted(silent[(silent > 20) & (silent < 365)].index.astype(str))


def _program(customers: list[str], effect: float) -> RetentionProgram:
    return RetentionProgram(START, {c: ("orders_reengagement_call", START + datetime.timedelta(days=5)) for c in customers}, {"orders_reengagement_call": effect})


def test_rows_before_the_start_are_those_without_the_program(plain: dict) -> None:
    tables, _ = generate_with_program(300, _program(_quiet_customers(plain)[::2], 0.7), years=2.0, seed=5)
    for name in ("customers", "customer_history"):
        pd.testing.assert_frame_equal(tables[name], plain[name])
    for name, column in DATES.items():
        before = tables[name][tables[name][column] < pd.Timestamp(START)].reset_index(drop=True)
        pd.testing.assert_frame_equal(before, plain[name][plain[name][column] < pd.Timestamp(START)].reset_index(drop=True))
    for name, column in IDS.items():
        assert tables[name][column].is_unique, name
    assert set(tables["order_lines"]["order_id"]) <= set(tables["orders"]["order_id"])


def test_without_an_effect_the_program_changes_nothing_but_ids(plain: dict) -> None:
    tables, truth = generate_with_program(300, _program(_quiet_customers(plain), 0.0), years=2.0, seed=5)
    for name, column in DATES.items():
        drop = [IDS[name]] if name in IDS else []
        pd.testing.assert_frame_equal(tables[name].drop(columns=drop).sort_values(["customer_id", column], kind="stable", ignore_index=True),
                                      plain[name].drop(columns=drop).sort_values(["customer_id", column], kind="stable", ignore_index=True))
    assert (truth["ordered_with_program"] == truth["ordered_without_program"]).all()


def test_treated_customers_order_again_and_the_others_do_not_change_on_average(plain: dict) -> None:
    quiet = _quiet_customers(plain)
    tables, truth = generate_with_program(300, _program(quiet[::2], 0.8), years=2.0, seed=5)
    treated = truth[truth["treated"]]
    assert set(treated["customer_id"]) == set(quiet[::2]) and (treated["effect"] == 0.8).all()
    lift = (treated["ordered_with_program"].astype(int) - treated["ordered_without_program"].astype(int)).mean()
    others = truth[~truth["treated"]]
    drift = (others["ordered_with_program"].astype(int) - others["ordered_without_program"].astype(int)).mean()
    assert lift > 0.15 and abs(drift) < 0.05, (lift, drift)
    window = tables["orders"][(tables["orders"]["order_date"] >= pd.Timestamp(START)) & (tables["orders"]["order_date"] < pd.Timestamp(START) + pd.Timedelta(days=90))]
    assert set(truth.loc[truth["ordered_with_program"], "customer_id"]) == set(window.loc[window["amount"] > 0, "customer_id"].astype(str))
