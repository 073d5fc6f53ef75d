"""No leakage: nothing dated on or after T changes the snapshot at T.

A generated sample of 300 customers gets random extra rows on or after T in every table (orders
and their lines, returns, complaints, invoices, contacts, customers created later, changes of customer attributes),
and the open complaints and unpaid invoices get resolutions and payments on or after T. The snapshot
at T must not move, and must equal the snapshot of the data physically truncated to what was known
on T. Customer attributes that change (segment, credit limit, ...) are read from the customer
history as of T, on DuckDB and on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_features_values import T as TINY_T
from test_features_values import ago, tiny_tables

from features.contract import CHANNELS, MUTABLE_ATTRIBUTES, SETTLEMENT_TERMS
from features.dataset import CRMDataset, DataError, open_dataset, write_dataset
from features.labels import build_training_set
from features.sample_data import generate_sample
from features.snapshot import build_snapshot

END = date(2025, 12, 31)
VALID_UNTIL = date(2027, 12, 31)
AS_OF_DATES = (date(2025, 3, 1), date(2025, 9, 17))


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return generate_sample(300, years=2, seed=11, end=END)


def _days_from(t: date, rng: np.random.Generator, n: int, span: int = 500) -> pd.Series:
    """Random dates in [T, T + span), a tenth of them exactly on T."""
    offsets = rng.integers(0, span, n)
    offsets[rng.random(n) < 0.1] = 0
    return pd.Series(pd.Timestamp(t) + pd.to_timedelta(offsets, unit="D"))


def with_future_rows(tables: dict[str, pd.DataFrame], t: date, seed: int) -> dict[str, pd.DataFrame]:
    """``tables`` plus rows dated on or after T, and later resolutions and payments on existing rows."""
    rng = np.random.default_rng(seed)
    out = {name: frame.copy() for name, frame in tables.items()}
    for frame in out.values():
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype("str")
    known_ids = out["customers"]["customer_id"].to_numpy()
    new_ids = np.array([f"N{i:04d}" for i in range(40)])
    new_customers = pd.DataFrame(
        {
            "customer_id": new_ids,
            "name": [f"Newco {i}" for i in range(40)],
            "region": rng.choice(["North", "South"], 40),
            "segment": "independent shop",
            "channel": rng.choice(["direct", "agent"], 40),
            "account_manager": "Someone New",
            "settlement_terms": "credit",
            "credit_limit": 1000.0,
            "created_at": _days_from(t, rng, 40),
        }
    )
    out["customers"] = pd.concat([out["customers"], new_customers], ignore_index=True)
    ids = np.concatenate([known_ids, new_ids])

    n = 3000
    orders = pd.DataFrame(
        {
            "order_id": [f"X{i:06d}" for i in range(n)],
            "customer_id": rng.choice(ids, n),
            "order_date": _days_from(t, rng, n),
            "amount": np.where(rng.random(n) < 0.1, -1, 1) * rng.lognormal(6, 1, n).round(2),
            "margin": rng.normal(100, 30, n).round(2),
        }
    )
    n = 300
    opened = _days_from(t, rng, n)
    complaints = pd.DataFrame(
        {
            "complaint_id": [f"XK{i:05d}" for i in range(n)],
            "customer_id": rng.choice(ids, n),
            "opened_at": opened,
            "resolved_at": (opened + pd.to_timedelta(rng.integers(0, 60, n), unit="D")).where(rng.random(n) < 0.8),
            "severity": rng.choice(["low", "medium", "high"], n),
            "category": "delivery",
        }
    )
    n = 2000
    issued = _days_from(t, rng, n)
    due = issued + pd.to_timedelta(rng.choice([0, 30, 60], n), unit="D")
    invoices = pd.DataFrame(
        {
            "invoice_id": [f"XI{i:06d}" for i in range(n)],
            "customer_id": rng.choice(ids, n),
            "issued_at": issued,
            "due_at": due,
            "amount": rng.lognormal(6, 1, n).round(2),
            "paid_at": (due + pd.to_timedelta(rng.integers(-5, 90, n), unit="D")).clip(lower=issued).where(rng.random(n) < 0.7),
        }
    )
    n = 800
    contacts = pd.DataFrame({"customer_id": rng.choice(ids, n), "contacted_at": _days_from(t, rng, n), "kind": "call"})
    history = _attribute_changes(rng, ids, t, 600)
    lines = _lines_of(orders, out["order_lines"]["product_id"].unique(), rng)
    for name, extra in (("orders", orders), ("order_lines", lines), ("complaints", complaints), ("invoices", invoices), ("contacts", contacts), ("customer_history", history)):
        out[name] = pd.concat([out[name], extra], ignore_index=True).sample(frac=1.0, random_state=seed, ignore_index=True)
    out["customer_history"] = out["customer_history"].drop_duplicates(["customer_id", "column", "valid_from"], ignore_index=True)

    stamp = pd.Timestamp(t)
    c = out["complaints"]
    still_open = (c["opened_at"] < stamp) & (c["resolved_at"].isna() | (c["resolved_at"] >= stamp))
    c.loc[still_open, "resolved_at"] = _days_from(t, rng, int(still_open.sum()), span=120).to_numpy()
    i = out["invoices"]
    unpaid = (i["issued_at"] < stamp) & (i["paid_at"].isna() | (i["paid_at"] >= stamp))
    i.loc[unpaid, "paid_at"] = _days_from(t, rng, int(unpaid.sum()), span=120).to_numpy()
    return out


def _lines_of(orders: pd.DataFrame, products: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One to three lines of known products for every extra order, adding up to its amount."""
    count = rng.integers(1, 4, len(orders))
    order = np.repeat(np.arange(len(orders)), count)
    share = rng.random(order.size)
    share /= np.bincount(order, weights=share)[order]
    amount = orders["amount"].to_numpy()[order] * share
    return pd.DataFrame(
        {
            "order_id": orders["order_id"].to_numpy()[order],
            "product_id": rng.choice(products, order.size),
            "quantity": np.sign(amount) * rng.integers(1, 20, order.size),
            "amount": amount.round(2),
            "category": rng.choice(["beverages", "frozen", "a group nobody bought before"], order.size),
        }
    )


def _attribute_changes(rng: np.random.Generator, ids: np.ndarray, t: date, n: int) -> pd.DataFrame:
    """``n`` random changes of customer attributes valid from T or later, each value valid for its attribute."""
    column = rng.choice(MUTABLE_ATTRIBUTES, n)
    choices = {
        "credit_limit": [str(v) for v in (0, 2500, 40000)],
        "settlement_terms": list(SETTLEMENT_TERMS),
        "channel": list(CHANNELS),
        "segment": ["start-up", "institution"],
        "region": ["Far North", "Overseas"],
    }
    value = [choices[c][i % len(choices[c])] for i, c in enumerate(column)]
    return pd.DataFrame({"customer_id": rng.choice(ids, n), "column": column, "value": value, "valid_from": _days_from(t, rng, n)})


def as_known_on(tables: dict[str, pd.DataFrame], t: date) -> dict[str, pd.DataFrame]:
    """The tables as a CRM extract taken on the morning of T would hold them."""
    stamp = pd.Timestamp(t)
    c = tables["complaints"][tables["complaints"]["opened_at"] < stamp].copy()
    c["resolved_at"] = c["resolved_at"].where(c["resolved_at"] < stamp)
    i = tables["invoices"][tables["invoices"]["issued_at"] < stamp].copy()
    i["paid_at"] = i["paid_at"].where(i["paid_at"] < stamp)
    customers = tables["customers"]
    orders = tables["orders"][tables["orders"]["order_date"] < stamp]
    return {
        "customers": customers[customers["created_at"].isna() | (customers["created_at"] < stamp)],
        "orders": orders,
        "order_lines": tables["order_lines"][tables["order_lines"]["order_id"].isin(orders["order_id"])],
        "complaints": c,
        "invoices": i,
        "contacts": tables["contacts"][tables["contacts"]["contacted_at"] < stamp],
        "customer_history": tables["customer_history"][tables["customer_history"]["valid_from"] < stamp],
    }


@pytest.mark.parametrize("t", AS_OF_DATES, ids=str)
def test_rows_on_or_after_T_change_no_feature(sample: dict[str, pd.DataFrame], t: date) -> None:
    original = build_snapshot(CRMDataset.from_frames(sample, as_of=VALID_UNTIL), t)
    grown_data = CRMDataset.from_frames(with_future_rows(sample, t, seed=t.toordinal()), as_of=VALID_UNTIL)
    grown = build_snapshot(grown_data, t)
    truncated = build_snapshot(CRMDataset.from_frames(as_known_on(sample, t), as_of=VALID_UNTIL), t)
    in_training_set = build_training_set(grown_data, dates=[t]).drop(columns="churned")  # shares gaps across dates
    assert len(original) > 100
    pd.testing.assert_frame_equal(grown, original, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(truncated, original, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(in_training_set, original, check_exact=False, rtol=1e-9)


def test_the_extra_rows_do_reach_the_snapshot_at_a_later_date(sample: dict[str, pd.DataFrame]) -> None:
    t = AS_OF_DATES[0]
    later = t + timedelta(days=200)
    original = build_snapshot(CRMDataset.from_frames(sample, as_of=VALID_UNTIL), later)
    grown = build_snapshot(CRMDataset.from_frames(with_future_rows(sample, t, seed=1), as_of=VALID_UNTIL), later)
    assert len(grown) > len(original)


def test_training_set_with_as_of_sees_nothing_after_it(sample: dict[str, pd.DataFrame]) -> None:
    as_of = date(2025, 6, 1)
    dates = [date(2024, 12, 1), as_of - timedelta(days=90)]
    grown = CRMDataset.from_frames(with_future_rows(sample, as_of, seed=3), as_of=VALID_UNTIL)
    training = build_training_set(grown, as_of=as_of, dates=dates)
    baseline = build_training_set(CRMDataset.from_frames(as_known_on(sample, as_of), as_of=VALID_UNTIL), dates=dates)
    assert sorted(training["as_of"].dt.date.unique()) == dates
    pd.testing.assert_frame_equal(training, baseline, check_exact=False, rtol=1e-9)
    with pytest.raises(DataError, match="has not matured"):
        build_training_set(grown, as_of=as_of, dates=[as_of - timedelta(days=89)])


def test_the_snapshot_sees_the_attributes_of_T_not_of_today(sample: dict[str, pd.DataFrame]) -> None:
    t = AS_OF_DATES[0]
    snapshot = build_snapshot(CRMDataset.from_frames(sample, as_of=VALID_UNTIL), t).set_index("customer_id")
    today = sample["customers"].set_index("customer_id").loc[snapshot.index, "settlement_terms"].astype(str)
    changed = snapshot["settlement_terms"] != today
    assert changed.any()  # customers that earned credit after T were still on cash terms at T
    assert (snapshot.loc[changed, "settlement_terms"] == "cash").all() and (today[changed] == "credit").all()


D = TINY_T - timedelta(days=30)  # the day c1 becomes a retail chain and its credit limit halves to 2000
BEFORE_D = TINY_T - timedelta(days=40)


def tiny_with_history() -> dict[str, pd.DataFrame]:
    """The tiny tables, c1's segment and credit limit with a history: shop and 4000 until D, then today's."""
    tables = tiny_tables()
    tables["customer_history"] = pd.DataFrame(
        {
            "customer_id": ["c1"] * 4,
            "column": ["segment", "segment", "credit_limit", "credit_limit"],
            "value": ["shop", "retail_chain", "4000", "2000"],
            "valid_from": [ago(500), ago(30), ago(500), ago(30)],
        }
    )
    return tables


def _c1(snapshot: pd.DataFrame) -> pd.Series:
    return snapshot.set_index("customer_id").loc["c1"]


def test_an_attribute_change_shows_from_its_day_on() -> None:
    data = CRMDataset.from_frames(tiny_with_history(), as_of=VALID_UNTIL)
    without = CRMDataset.from_frames(tiny_tables(), as_of=VALID_UNTIL)
    assert data.mutable_attributes_known() and not without.mutable_attributes_known()
    before, after = _c1(build_snapshot(data, BEFORE_D)), _c1(build_snapshot(data, TINY_T))
    assert before["segment"] == "shop" and after["segment"] == "retail_chain"
    # the open balance over the limit of the day: 4000 before D (half of today's ratio), 2000 after
    assert before["balance_to_credit_limit"] == pytest.approx(_c1(build_snapshot(without, BEFORE_D))["balance_to_credit_limit"] / 2)
    assert after["balance_to_credit_limit"] == pytest.approx(0.5)
    at_t = build_snapshot(data, TINY_T).set_index("customer_id")
    assert at_t.loc["c2", ["segment", "balance_to_credit_limit"]].isna().all()  # no history: unknown at T
    assert at_t.loc["c2", "channel"] == "agent"  # an attribute the history does not cover keeps its value


def test_a_history_row_on_or_after_T_changes_nothing() -> None:
    tables = tiny_with_history()
    original = build_snapshot(CRMDataset.from_frames(tables, as_of=VALID_UNTIL), TINY_T)
    later = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2"],
            "column": ["segment", "credit_limit", "segment"],
            "value": ["institution", "999999", "shop"],
            "valid_from": [ago(0), ago(-10), ago(0)],
        }
    )
    tables["customer_history"] = pd.concat([tables["customer_history"], later], ignore_index=True)
    grown = build_snapshot(CRMDataset.from_frames(tables, as_of=VALID_UNTIL), TINY_T)
    pd.testing.assert_frame_equal(grown, original)


@pytest.mark.postgres
def test_attributes_as_of_T_are_the_same_on_postgres(tmp_path: Path, pg_url: str) -> None:
    write_dataset(tmp_path / "crm.duckdb", tiny_with_history())
    write_dataset(pg_url, tiny_with_history())
    duck, pg = open_dataset(tmp_path / "crm.duckdb", as_of=VALID_UNTIL), open_dataset(pg_url, as_of=VALID_UNTIL)
    assert pg.kind == "postgres" and pg.mutable_attributes_known()
    for t in (BEFORE_D, TINY_T):
        on_pg = build_snapshot(pg, t)
        pd.testing.assert_frame_equal(on_pg, build_snapshot(duck, t), check_exact=False, rtol=1e-9)
        assert _c1(on_pg)["segment"] == ("shop" if t < D else "retail_chain")
