"""No leakage: nothing dated on or after T changes the snapshot at T.

A generated sample of 300 customers gets random extra rows on or after T in every table (orders,
returns, complaints, invoices, contacts, customers created later), and the open complaints and
unpaid invoices get resolutions and payments on or after T. The snapshot at T must not move, and
must equal the snapshot of the data physically truncated to what was known on T.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from features.dataset import CRMDataset, DataError
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
    for name, frame in out.items():
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
    for name, extra in (("orders", orders), ("complaints", complaints), ("invoices", invoices), ("contacts", contacts)):
        out[name] = pd.concat([out[name], extra], ignore_index=True).sample(frac=1.0, random_state=seed, ignore_index=True)

    stamp = pd.Timestamp(t)
    c = out["complaints"]
    still_open = (c["opened_at"] < stamp) & (c["resolved_at"].isna() | (c["resolved_at"] >= stamp))
    c.loc[still_open, "resolved_at"] = _days_from(t, rng, int(still_open.sum()), span=120).to_numpy()
    i = out["invoices"]
    unpaid = (i["issued_at"] < stamp) & (i["paid_at"].isna() | (i["paid_at"] >= stamp))
    i.loc[unpaid, "paid_at"] = _days_from(t, rng, int(unpaid.sum()), span=120).to_numpy()
    return out


def as_known_on(tables: dict[str, pd.DataFrame], t: date) -> dict[str, pd.DataFrame]:
    """The tables as a CRM extract taken on the morning of T would hold them."""
    stamp = pd.Timestamp(t)
    c = tables["complaints"][tables["complaints"]["opened_at"] < stamp].copy()
    c["resolved_at"] = c["resolved_at"].where(c["resolved_at"] < stamp)
    i = tables["invoices"][tables["invoices"]["issued_at"] < stamp].copy()
    i["paid_at"] = i["paid_at"].where(i["paid_at"] < stamp)
    customers = tables["customers"]
    return {
        "customers": customers[customers["created_at"].isna() | (customers["created_at"] < stamp)],
        "orders": tables["orders"][tables["orders"]["order_date"] < stamp],
        "complaints": c,
        "invoices": i,
        "contacts": tables["contacts"][tables["contacts"]["contacted_at"] < stamp],
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
