"""The sample data generator: determinism, the data contract, and the realism the demo relies on."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

from features.contract import TABLES
from features.sample_data import BLOCK_SIZE, DATE_DTYPE, generate_sample, iter_sample_chunks

END = datetime.date(2025, 12, 31)
END_TS = pd.Timestamp(END)
COLUMNS = {
    "customers": [
        "customer_id", "name", "region", "segment", "channel", "account_manager",
        "settlement_terms", "credit_limit", "created_at",
    ],
    "orders": ["order_id", "customer_id", "order_date", "amount", "margin"],
    "complaints": ["complaint_id", "customer_id", "opened_at", "resolved_at", "severity", "category"],
    "invoices": ["invoice_id", "customer_id", "issued_at", "due_at", "amount", "paid_at"],
    "contacts": ["customer_id", "contacted_at", "kind"],
    "customer_history": ["customer_id", "column", "value", "valid_from"],
}
IDS = {"customers": "customer_id", "orders": "order_id", "complaints": "complaint_id", "invoices": "invoice_id"}
CATEGORICAL = {
    "customers": ["region", "segment", "channel", "account_manager", "settlement_terms"],
    "complaints": ["severity", "category"],
    "contacts": ["kind"],
}


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return generate_sample(2_000, seed=7, end=END)


def _assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    for name in COLUMNS:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=True)


def _churn_snapshot(data: dict[str, pd.DataFrame], as_of: pd.Timestamp, horizon_days: int = 90) -> pd.DataFrame:
    """Customers that ordered in the year before ``as_of``, flagged if they place no order in the horizon."""
    sales = data["orders"][data["orders"]["amount"] > 0]
    before = sales[(sales["order_date"] >= as_of - pd.Timedelta(days=365)) & (sales["order_date"] < as_of)]
    after = sales[(sales["order_date"] >= as_of) & (sales["order_date"] < as_of + pd.Timedelta(days=horizon_days))]
    snapshot = before.groupby("customer_id").agg(orders=("order_id", "size"))
    snapshot["churned"] = ~snapshot.index.isin(after["customer_id"])
    return snapshot


def test_same_seed_gives_same_frames() -> None:
    _assert_same(generate_sample(600, seed=3, end=END), generate_sample(600, seed=3, end=END))


def test_different_seed_gives_different_frames() -> None:
    first = generate_sample(600, seed=3, end=END)
    second = generate_sample(600, seed=4, end=END)
    assert not first["orders"]["amount"].equals(second["orders"]["amount"])
    assert not first["customers"]["name"].equals(second["customers"]["name"])


def test_chunks_concatenate_to_the_whole_dataset_whatever_the_chunk_size() -> None:
    customers = 2 * BLOCK_SIZE + 300
    whole = generate_sample(customers, seed=11, end=END)
    for chunk_size in (1, 1_500):
        chunks = list(iter_sample_chunks(customers, seed=11, end=END, chunk_size=chunk_size))
        assert len(chunks) == -(-customers // max(BLOCK_SIZE, -(-chunk_size // BLOCK_SIZE) * BLOCK_SIZE))
        joined = {name: pd.concat([c[name] for c in chunks], ignore_index=True) for name in COLUMNS}
        _assert_same(joined, whole)
        for chunk in chunks:
            for name in ("orders", "complaints", "invoices", "contacts"):
                assert chunk[name]["customer_id"].isin(chunk["customers"]["customer_id"]).all()


def test_no_customers_gives_empty_tables_with_the_contract_columns() -> None:
    empty = generate_sample(0, end=END)
    for name, columns in COLUMNS.items():
        assert list(empty[name].columns) == columns
        assert empty[name].empty


def test_columns_and_dtypes(data: dict[str, pd.DataFrame]) -> None:
    for name, columns in COLUMNS.items():
        frame = data[name]
        assert list(frame.columns) == columns
        for column in TABLES[name].dates:
            assert frame[column].dtype == DATE_DTYPE, (name, column)
        for column in TABLES[name].numbers:
            assert frame[column].dtype == np.float64, (name, column)
        for column in CATEGORICAL.get(name, []):
            assert isinstance(frame[column].dtype, pd.CategoricalDtype), (name, column)
        for column, allowed in TABLES[name].choices.items():
            assert set(frame[column].dropna().unique()) <= set(allowed), (name, column)
        assert pd.api.types.is_string_dtype(frame["customer_id"])
    assert pd.api.types.is_string_dtype(data["customers"]["name"])


def test_ids_are_unique_and_every_row_belongs_to_a_customer(data: dict[str, pd.DataFrame]) -> None:
    for name, key in IDS.items():
        assert data[name][key].notna().all()
        assert data[name][key].is_unique, name
    assert data["customers"]["customer_id"].iloc[0] == "C000001"
    for name in ("orders", "complaints", "invoices", "contacts"):
        assert data[name]["customer_id"].isin(data["customers"]["customer_id"]).all(), name


def test_dates_are_days_and_none_is_after_end(data: dict[str, pd.DataFrame]) -> None:
    for name in COLUMNS:
        for column in TABLES[name].dates:
            values = data[name][column].dropna()
            if column != "due_at":  # an invoice issued near the end may fall due after it
                assert (values <= END_TS).all(), (name, column)
            assert (values == values.dt.normalize()).all(), (name, column)
    late = data["invoices"]["due_at"] > END_TS
    assert late.any()  # not yet due at the end of the history


def test_row_rules(data: dict[str, pd.DataFrame]) -> None:
    invoices, complaints, customers = data["invoices"], data["complaints"], data["customers"]
    assert (invoices["amount"] >= 0).all()
    assert (invoices["due_at"] >= invoices["issued_at"]).all()
    paid = invoices["paid_at"].notna()
    assert (invoices.loc[paid, "paid_at"] >= invoices.loc[paid, "issued_at"]).all()
    resolved = complaints["resolved_at"].notna()
    assert (complaints.loc[resolved, "resolved_at"] >= complaints.loc[resolved, "opened_at"]).all()
    first_order = data["orders"].groupby("customer_id")["order_date"].min()
    created = customers.set_index("customer_id")["created_at"].reindex(first_order.index)
    assert (created <= first_order).all()
    credit = customers["settlement_terms"] == "credit"
    assert customers.loc[credit, "credit_limit"].notna().all()
    assert customers.loc[~credit, "credit_limit"].isna().all()
    cash_like = invoices["customer_id"].isin(customers.loc[~credit, "customer_id"])
    assert (invoices.loc[cash_like, "paid_at"] == invoices.loc[cash_like, "issued_at"]).all()
    assert 10 <= customers["account_manager"].nunique() <= 40


def test_the_dataset_validator_accepts_the_sample(data: dict[str, pd.DataFrame]) -> None:
    from features.dataset import validate_frames

    _, report = validate_frames(data, as_of=END)
    assert not [p for p in report.problems if p.rows]


def test_customer_history_ends_at_the_customers_table(data: dict[str, pd.DataFrame]) -> None:
    history, customers = data["customer_history"], data["customers"].set_index("customer_id")
    assert not history.duplicated(["customer_id", "column", "valid_from"]).any()
    first = history.groupby(["customer_id", "column"])["valid_from"].min().unstack()
    assert (first.drop(columns="credit_limit").eq(customers["created_at"].reindex(first.index), axis=0)).all().all()
    last = history.sort_values("valid_from").groupby(["customer_id", "column"])["value"].last().unstack().reindex(customers.index)
    for column in ("region", "segment", "channel", "settlement_terms"):
        assert (last[column] == customers[column].astype(str)).all(), column
    limit = pd.to_numeric(last["credit_limit"])
    assert limit.fillna(-1).eq(customers["credit_limit"].fillna(-1)).all()
    changes = history.groupby(["customer_id", "column"]).size()
    changed = changes[changes > 1].reset_index()["column"].value_counts()
    credit = (customers["settlement_terms"] == "credit").sum()
    assert 0.1 < changed["settlement_terms"] / credit < 0.2  # earned credit after starting on cash terms
    assert 0.2 < changed["credit_limit"] / credit < 0.4  # a first limit other than today's


def test_customers_join_over_the_window_and_some_predate_it(data: dict[str, pd.DataFrame]) -> None:
    created = data["customers"]["created_at"]
    start = END_TS - pd.Timedelta(days=3 * 365)
    assert 0.3 < (created < start).mean() < 0.6
    joined = created[created >= start]
    assert joined.dt.year.nunique() == 3


def test_a_fifth_of_customers_make_most_of_the_revenue(data: dict[str, pd.DataFrame]) -> None:
    revenue = data["orders"].groupby("customer_id")["amount"].sum().sort_values(ascending=False)
    top = revenue.iloc[: len(revenue) // 5].sum()
    assert top / revenue.sum() > 0.6


def test_returns_are_rare_and_smaller_than_orders(data: dict[str, pd.DataFrame]) -> None:
    amount = data["orders"]["amount"]
    assert 0.01 < (amount < 0).mean() < 0.05
    assert (-amount[amount < 0]).median() < amount[amount > 0].median()
    margin_share = data["orders"]["margin"] / amount
    assert 0.15 < margin_share.median() < 0.35
    assert data["orders"]["margin"].isna().any()


def test_some_complaints_are_open_at_end_and_some_were_slow(data: dict[str, pd.DataFrame]) -> None:
    complaints = data["complaints"]
    days_open = (complaints["resolved_at"] - complaints["opened_at"]).dt.days
    assert complaints["resolved_at"].isna().sum() > 0
    assert 0.02 < (days_open > 14).mean() < 0.3
    assert set(complaints["severity"]) == {"low", "medium", "high"}


def test_churn_in_90_days_is_plausible_for_b2b_wholesale(data: dict[str, pd.DataFrame]) -> None:
    snapshot = _churn_snapshot(data, END_TS - pd.Timedelta(days=182))
    assert len(snapshot) > 1_000
    assert 0.05 < snapshot["churned"].mean() < 0.35


def test_hidden_causes_leave_traces(data: dict[str, pd.DataFrame]) -> None:
    as_of = END_TS - pd.Timedelta(days=182)
    snapshot = _churn_snapshot(data, as_of)

    invoices = data["invoices"]
    due = invoices[(invoices["due_at"] > invoices["issued_at"]) & (invoices["due_at"] < as_of)]
    settled_late = due["paid_at"].isna() | (due["paid_at"] >= as_of) | (due["paid_at"] > due["due_at"] + pd.Timedelta(days=15))
    late_share = settled_late.groupby(due["customer_id"]).mean().reindex(snapshot.index)

    complaints = data["complaints"]
    year = complaints[(complaints["opened_at"] < as_of) & (complaints["opened_at"] >= as_of - pd.Timedelta(days=365))]
    per_order = year.groupby("customer_id").size().reindex(snapshot.index, fill_value=0) / snapshot["orders"]

    contacts = data["contacts"]
    last_contact = contacts[contacts["contacted_at"] < as_of].groupby("customer_id")["contacted_at"].max()
    days_since_contact = (as_of - last_contact.reindex(snapshot.index)).dt.days

    churned = snapshot["churned"]
    assert late_share[churned].mean() > late_share[~churned].mean()
    assert per_order[churned].mean() > per_order[~churned].mean()
    assert days_since_contact[churned].mean() > days_since_contact[~churned].mean()


def test_contacts_continue_for_some_customers_after_their_last_order(data: dict[str, pd.DataFrame]) -> None:
    last_order = data["orders"].groupby("customer_id")["order_date"].max()
    gone = last_order[last_order < END_TS - pd.Timedelta(days=365)]
    contacts = data["contacts"]
    after = contacts[contacts["customer_id"].isin(gone.index)]
    after = after[after["contacted_at"] > after["customer_id"].map(gone)]
    assert after["customer_id"].nunique() > 0.1 * len(gone)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        next(iter_sample_chunks(-1))
    with pytest.raises(ValueError):
        next(iter_sample_chunks(10, years=0))
    with pytest.raises(ValueError):
        next(iter_sample_chunks(10, chunk_size=0))
