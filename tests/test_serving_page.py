"""The page's own JSON on tiny hand-made data: churn per period and class, a customer's history, the app."""

from __future__ import annotations

import warnings
from datetime import date

import pandas as pd
import pytest

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from features.dataset import CRMDataset
from serving.page import (
    PageContext,
    aging_bucket,
    churn_by_period,
    customer_detail,
    held,
    make_page_app,
    period_starts,
    summarise_periods,
)

END = date(2024, 12, 30)  # the day after the newest order


def _orders(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"order_id": f"O{i}", "customer_id": c, "order_date": d, "amount": a} for i, (c, d, a) in enumerate(rows)]
    )


@pytest.fixture()
def data() -> CRMDataset:
    orders = _orders(
        [
            ("K1", "2023-09-15", 1000.0),  # outside the 12 months before T = 2024-10-01
            ("K1", "2024-09-01", 9000.0),
            ("K1", "2024-10-20", 100.0),  # ordered again within H: kept
            ("K2", "2024-03-01", 500.0),  # no order after T: lost
            ("K3", "2023-09-15", 50.0),  # last order more than 365 days before T: not active
            ("K4", "2024-06-01", 400.0),
            ("K4", "2024-12-29", 10.0),  # on the last day of [T, T + 90): kept
        ]
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["K1", "K2", "K3", "K4"],
            "name": ["One Ltd", "Two Ltd", "Three Ltd", "Four Ltd"],
            "account_manager": ["Ann", "Ann", "Bo", "Bo"],
        }
    )
    invoices = pd.DataFrame(
        {
            "invoice_id": ["I1", "I2", "I3", "I4"],
            "customer_id": ["K1", "K1", "K1", "K2"],
            "issued_at": ["2024-09-01", "2024-10-20", "2024-11-01", "2024-03-01"],
            "due_at": ["2024-10-01", "2024-11-20", "2024-12-01", "2024-03-31"],
            "amount": [9000.0, 100.0, 50.0, 500.0],
            "paid_at": ["2024-09-20", None, "2024-12-29", None],
        }
    )
    complaints = pd.DataFrame(
        {
            "complaint_id": ["P1", "P2"],
            "customer_id": ["K1", "K1"],
            "opened_at": ["2024-11-01", "2024-12-01"],
            "resolved_at": ["2024-11-04", None],
            "severity": ["high", "low"],
        }
    )
    contacts = pd.DataFrame({"customer_id": ["K1", "K1"], "contacted_at": ["2024-08-01", "2024-12-10"], "kind": ["call", "visit"]})
    frames = {"orders": orders, "customers": customers, "invoices": invoices, "complaints": complaints, "contacts": contacts}
    return CRMDataset.from_frames(frames, as_of=END)


def test_period_starts_are_quarters_whose_outcome_is_known() -> None:
    assert period_starts(date(2022, 1, 10), date(2024, 12, 30), 90, 365) == [
        date(2023, 4, 1), date(2023, 7, 1), date(2023, 10, 1), date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1), date(2024, 10, 1)
    ]
    assert period_starts(date(2024, 6, 1), date(2024, 8, 1), 90, 365) == []


def test_churn_by_period_counts_lost_over_active_per_class(data: CRMDataset) -> None:
    frame = churn_by_period(data, END, horizon_days=90, active_days=365)
    assert set(frame["period_start"]) == {date(2024, 10, 1)}
    by_tier = frame.groupby("tier")[["active", "lost"]].sum()
    # revenue in the 12 months before T: K1 9000 (A), K2 500 (B: 9000/9900 before it), K4 400 (C)
    assert by_tier.to_dict("index") == {"A": {"active": 1, "lost": 0}, "B": {"active": 1, "lost": 1}, "C": {"active": 1, "lost": 0}}
    by_period, by_manager = summarise_periods(frame)
    everyone = next(r for r in by_period if r["tier"] == "all")
    assert (everyone["active"], everyone["lost"]) == (3, 1)
    assert everyone["churn_rate"] == pytest.approx(1 / 3)
    assert everyone["retention_rate"] == pytest.approx(2 / 3)
    assert everyone["period_label"] == "2024 Q4"
    assert [(m["account_manager"], m["active"], m["lost"]) for m in by_manager] == [("Ann", 2, 1), ("Bo", 1, 0)]


def test_aging_buckets() -> None:
    assert [aging_bucket(d) for d in (-5, 0, 30, 31, 90, 91, 180, 181)] == [
        "not due", "not due", "0–30 days", "31–90 days", "31–90 days", "91–180 days", "91–180 days", "over 180 days (bad debt)"
    ]


def test_customer_detail_as_known_on_the_as_of_date(data: CRMDataset) -> None:
    as_of = date(2024, 12, 15)
    detail = customer_detail(data, "K1", as_of)
    assert detail is not None
    assert detail["customer"]["name"] == "One Ltd"
    assert [o["order_date"] for o in detail["orders"]] == ["2024-10-20", "2024-09-01", "2023-09-15"]
    # I3 was paid after the as-of date, so on that day it was still open; I1 was paid in time
    assert [(i["invoice_id"], i["days_past_due"], i["aging_bucket"]) for i in detail["invoices"]] == [
        ("I2", 25, "0–30 days"),
        ("I3", 14, "0–30 days"),
    ]
    assert detail["totals"]["open_balance"] == pytest.approx(150.0)
    assert [(c["complaint_id"], c["days_open"], c["days_to_resolve"]) for c in detail["complaints"]] == [("P2", 14, None), ("P1", None, 3)]
    assert detail["totals"]["open_complaints"] == 1
    assert [c["contacted_at"] for c in detail["contacts"]] == ["2024-12-10", "2024-08-01"]
    assert detail["totals"]["days_since_last_contact"] == 5
    assert customer_detail(data, "nobody", as_of) is None


def test_page_app_serves_the_page_and_guards_its_json(data: CRMDataset) -> None:
    scores = pd.DataFrame(
        {
            "customer_id": ["K1", "K2", "K4"],
            "churn_probability": [0.1, 0.8, 0.3],
            "risk_band": ["low", "high", "medium"],
            "tier": ["A", "B", "C"],
            "pyramid": ["platinum", "gold", "lead"],
            "revenue_12m": [9000.0, 500.0, 400.0],
            "value_at_risk": [900.0, 400.0, 120.0],
            "region": ["North", None, "South"],
            "account_manager": ["Ann", "Ann", "Bo"],
        }
    )
    ctx = PageContext(
        open_data=lambda: held(data),
        as_of=END,
        scores=scores,
        model={"name": "churn", "version": "3", "alias": "champion", "trained_at": "2025-01-02T10:00:00+00:00", "test_pr_auc": 0.41},
        horizon_days=90,
        active_days=365,
        authorized=lambda request: request.headers.get("authorization") == "Bearer k",
    )
    client = TestClient(make_page_app(lambda: ctx))
    page = client.get("/")
    assert page.status_code == 200 and "Churn radar" in page.text
    for answer in (page, client.get("/static/app.js"), client.get("/api/model"), client.get("/api/customers/K2", headers={"Authorization": "Bearer k"})):
        assert "script-src 'self'" in answer.headers["content-security-policy"] and "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/model").status_code == 401
    auth = {"Authorization": "Bearer k"}
    assert client.get("/api/model", headers=auth).json()["test_pr_auc"] == 0.41
    assert client.get("/api/filters", headers=auth).json()["region"] == ["North", "South"]
    assert client.get("/api/names?ids=K1,K9", headers=auth).json() == {"K1": "One Ltd"}
    assert client.get("/api/customers/K2", headers=auth).json()["invoices"][0]["aging_bucket"] == "over 180 days (bad debt)"
    assert client.get("/api/customers/K9", headers=auth).status_code == 404
    overview = client.get("/api/overview", headers=auth).json()
    assert overview["totals"] == {"customers": 3, "high_risk": 1, "value_at_risk": 1420.0}
    assert overview["value_at_risk_by_manager"][0] == {"account_manager": "Ann", "value_at_risk": 1300.0, "customers": 2, "high_risk": 1}
    assert {(r["tier"], r["risk_band"], r["customers"]) for r in overview["risk_by_tier"]} == {("A", "low", 1), ("B", "high", 1), ("C", "medium", 1)}
    assert [r["churn_rate"] for r in overview["churn_by_period"] if r["tier"] == "all"] == [pytest.approx(1 / 3)]


def test_a_control_character_in_a_customer_id_is_a_400(data: CRMDataset) -> None:
    ctx = PageContext(
        open_data=lambda: held(data), as_of=END, scores=pd.DataFrame(), model={}, horizon_days=90, active_days=365, authorized=lambda request: True
    )
    answer = TestClient(make_page_app(lambda: ctx)).get("/api/customers/K1%00x")
    assert answer.status_code == 400 and "control character" in answer.json()["error"]


def test_page_app_answers_503_while_the_service_loads() -> None:
    def loading() -> PageContext:
        raise LookupError("the service is loading the model")

    client = TestClient(make_page_app(loading))
    assert client.get("/api/model").status_code == 503
    assert client.get("/").status_code == 200
