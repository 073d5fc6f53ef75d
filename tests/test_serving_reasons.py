"""Reasons: plain sentences, and agreement with the model's own contributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_fixtures import TrainedStore, trained_store

from serving.playbook import load_playbook
from serving.reasons import TEMPLATES, explain_row, registry_maps, sentence, top_indices
from serving.scoring import ScoredSnapshot, Scorer, capacity_thresholds, choose_explained, encode_records, risk_bands, with_capacity_bands
from training.dataset import LABEL
from training.reference import on_risky_side, risk_reference


def test_recency_reads_against_the_customer_rhythm() -> None:
    row = {"days_since_last_order": 41.0, "median_gap_days": 12.0}
    assert sentence("days_since_last_order", row) == "ordered 41 days ago against a usual rhythm of 12 days"
    assert sentence("days_since_last_order", {"days_since_last_order": 1.0}) == "last ordered 1 day ago"


@pytest.mark.parametrize(
    ("feature", "row", "expected"),
    [
        ("orders_trend_90d", {"orders_trend_90d": -0.5}, "orders fell by 67% in the last 90 days against the 90 days before"),
        ("revenue_trend_90d", {"revenue_trend_90d": -1.0}, "revenue fell to nothing in the last 90 days against the 90 days before"),
        ("open_complaints", {"open_complaints": 2.0, "oldest_open_complaint_days": 19.0}, "2 complaints still unresolved, the oldest open for 19 days"),
        ("complaints_90d", {"complaints_90d": 0.0}, "no complaints in the last 90 days"),
        ("overdue_balance", {"overdue_balance": 12345.6}, "12,346 past due"),
        ("late_paid_share_365d", {"late_paid_share_365d": 0.4}, "40% of the invoices due in the last year were paid late or not at all"),
        ("days_to_pay_change_90d", {"days_to_pay_change_90d": 12.0}, "pays 12 days slower than in the 90 days before"),
        ("days_since_last_contact", {"days_since_last_contact": None}, "no account-manager contact on record"),
        ("debt_class", {"debt_class": "long_term"}, "receivables: long term"),
    ],
)
def test_sentences(feature: str, row: dict, expected: str) -> None:
    assert sentence(feature, row) == expected


def test_every_registry_feature_gets_a_sentence() -> None:
    groups, descriptions = registry_maps()
    for name in groups:
        assert name in TEMPLATES, f"{name} has no sentence template"
        assert sentence(name, {name: 3.0}, descriptions[name])
        assert sentence(name, {name: None}, descriptions[name])


def test_unknown_feature_falls_back_to_its_description() -> None:
    assert sentence("shiny_new_feature", {"shiny_new_feature": 2.5}, "something new") == "something new: 2.5"


def test_top_indices_keep_only_risk_raising_contributions() -> None:
    contrib = np.array([[0.1, -2.0, 0.5, 0.0], [-0.1, -0.2, -0.3, -0.4]])
    assert top_indices(contrib, 3) == [[2, 0], []]
    reasons = explain_row(contrib[0], ["a", "b", "c", "d"], {"a": 1.0, "c": "x"}, n=1)
    assert [(r.feature, r.impact, r.value) for r in reasons] == [("c", 0.5, "x")]


def test_a_raising_feature_on_the_safe_side_of_the_typical_value_is_not_a_reason() -> None:
    names = ["btyd_p_no_order_30d", "last_gap_ratio", "complaints_90d"]
    row = {"btyd_p_no_order_30d": 0.004, "last_gap_ratio": 4.5, "complaints_90d": 0.0}
    contrib = np.array([0.9, 0.4, 0.2])
    reference = {
        "btyd_p_no_order_30d": {"median": 0.2, "risk_side": 1.0},
        "last_gap_ratio": {"median": 1.0, "risk_side": 1.0},
        "complaints_90d": {"median": 0.0, "risk_side": 1.0},
    }
    cited = explain_row(contrib, names, row, n=3, reference=reference)
    assert [r.feature for r in cited] == ["last_gap_ratio"]
    assert [r.feature for r in explain_row(contrib, names, row, n=3)] == names, "without a reference every raising feature is cited"
    no_side = {**reference, "btyd_p_no_order_30d": {"median": 0.2, "risk_side": 0.0}}
    assert [r.feature for r in explain_row(contrib, names, {**row, "btyd_p_no_order_30d": None}, n=3, reference=reference)][0] == "btyd_p_no_order_30d"
    assert [r.feature for r in explain_row(contrib, names, row, n=3, reference=no_side)] == ["btyd_p_no_order_30d", "last_gap_ratio"]


def test_the_reference_learns_the_typical_value_and_the_side_that_goes_with_churn() -> None:
    rng = np.random.default_rng(7)
    silence = rng.exponential(30, 4000)
    rows = pd.DataFrame(
        {
            "days_since_last_order": silence,
            "orders_365d": rng.poisson(8, 4000),
            "noise": rng.normal(size=4000),
            "segment": ["a"] * 4000,
            LABEL: (silence + rng.normal(0, 10, 4000) > 40).astype(int),
        }
    )
    rows.loc[rows[LABEL] == 1, "orders_365d"] //= 3
    ref = risk_reference(rows, ["days_since_last_order", "orders_365d", "noise", "segment"], {"segment": ["a"]})
    assert ref["days_since_last_order"]["risk_side"] == 1.0
    assert ref["orders_365d"]["risk_side"] == -1.0
    assert ref["noise"]["risk_side"] == 0.0
    assert "segment" not in ref
    assert ref["days_since_last_order"]["median"] == pytest.approx(float(np.median(silence)))


def test_auto_explains_the_at_risk_customers_largest_value_first() -> None:
    bands = ["low", "high", "medium", "high", "low"]
    values = [900.0, 10.0, 50.0, None, 5.0]
    assert choose_explained(bands, values, "auto") == [False, True, True, True, False]
    assert choose_explained(bands, values, "auto", budget=1) == [False, False, True, False, False]
    assert choose_explained(bands, values, "all") == [True] * 5
    assert choose_explained(bands, values, "none") == [False] * 5


def _value(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(tmp_path_factory.mktemp("serving_store"))


@pytest.fixture(scope="module")
def scored(store: TrainedStore) -> tuple[Scorer, ScoredSnapshot]:
    from features.dataset import open_dataset
    from features.snapshot import build_snapshot
    from training.register import load_model

    loaded = load_model(store.tracking_uri, store.model_name)
    data = open_dataset(store.data, validate=False)
    try:
        as_of = data.end_date()
        snapshot = build_snapshot(data, as_of)
    finally:
        data.con.disconnect()
    scorer = Scorer(loaded, load_playbook())
    return scorer, ScoredSnapshot.build(scorer, snapshot, as_of)


@pytest.mark.slow
def test_encoded_scores_equal_the_model(scored: tuple[Scorer, ScoredSnapshot]) -> None:
    scorer, snap = scored
    model = scorer.model
    np.testing.assert_allclose(scorer.probabilities(snap.x), model.predict_proba(snap.frame), rtol=0, atol=1e-12)
    np.testing.assert_allclose(snap.table.frame["churn_probability"].to_numpy(), model.predict_proba(snap.frame), atol=1e-12)


@pytest.mark.slow
def test_contributions_plus_base_give_the_raw_score(scored: tuple[Scorer, ScoredSnapshot]) -> None:
    scorer, snap = scored
    rows = snap.frame.head(60)
    contrib, base = scorer.contributions(snap.x[:60])
    np.testing.assert_allclose(contrib.sum(axis=1) + base, scorer.model.raw_score(rows), atol=1e-9)
    own, own_base = scorer.model.contributions(rows)
    np.testing.assert_allclose(contrib, own, atol=1e-12)
    np.testing.assert_allclose(base, own_base, atol=1e-12)


@pytest.mark.slow
def test_top_reason_is_the_largest_positive_contribution(scored: tuple[Scorer, ScoredSnapshot]) -> None:
    scorer, snap = scored
    high = snap.table.ranked("probability")[:40].tolist()
    answers = snap.answers(scorer, high, [True] * len(high))
    own, _ = scorer.model.contributions(snap.frame.iloc[high])
    names = scorer.model.feature_names
    reference = scorer.model.metadata["reference"]
    for answer, contrib, (_, row) in zip(answers, own, snap.frame.iloc[high].iterrows(), strict=True):
        assert answer.explained
        citable = [j for j in range(len(names)) if contrib[j] > 0 and on_risky_side(_value(row[names[j]]), reference.get(names[j]))]
        if not citable:
            assert answer.reasons == []
            continue
        top = answer.reasons[0]
        best = max(citable, key=lambda j: contrib[j])
        assert top.feature == names[best]
        assert top.impact == pytest.approx(contrib[best], abs=1e-6)
        assert [r.impact for r in answer.reasons] == sorted((r.impact for r in answer.reasons), reverse=True)
        assert all(r.impact > 0 and r.sentence for r in answer.reasons)
        if answer.risk_band != "low":
            assert answer.actions and answer.actions[0].driver == (top.driver if answer.stage == "retain" else "win_back")
            assert answer.actions[0].because == top.sentence


@pytest.mark.slow
def test_customer_supplied_features_score_like_the_snapshot(scored: tuple[Scorer, ScoredSnapshot]) -> None:
    scorer, snap = scored
    from features.registry import FEATURES

    rows = snap.frame.head(25)
    records = []
    for record in rows[scorer.model.feature_names].to_dict("records"):
        records.append({k: (None if (isinstance(v, float) and np.isnan(v)) or v in ("None", "nan") else v) for k, v in record.items()})
    x = encode_records(scorer.model, records, known=FEATURES)
    np.testing.assert_allclose(x, scorer.model.encode(rows), equal_nan=True)
    np.testing.assert_allclose(scorer.probabilities(x), scorer.model.predict_proba(pd.DataFrame(records)), atol=1e-12)


def test_store_fixture_paths_exist(store: TrainedStore) -> None:
    assert Path(store.data).exists()


def test_capacity_sets_the_bands_from_the_riskiest_customers_the_team_can_reach() -> None:
    p = np.array([0.9, 0.8, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1])
    assert capacity_thresholds(p, 2) == (0.8, 0.6)
    bands = risk_bands(p, *capacity_thresholds(p, 2))
    assert bands.tolist() == ["high", "high", "high", "medium", "low", "low", "low", "low"], "ties at the cut-off go up"
    assert capacity_thresholds(p, 100) == (0.1, 0.1)
    assert capacity_thresholds(np.array([]), 3) == (1.0, 1.0)


@pytest.mark.slow
def test_a_scorer_with_capacity_bands_puts_the_reachable_customers_in_the_high_band(scored: tuple[Scorer, ScoredSnapshot]) -> None:
    scorer, snap = scored
    managers = snap.frame["account_manager"].nunique()
    banded = with_capacity_bands(scorer, snap.frame, per_manager_week=0.5, horizon_days=14)
    reachable = int(np.ceil(managers * 0.5 * 2))
    again = ScoredSnapshot.build(banded, snap.frame, snap.as_of)
    high = (again.table.frame["risk_band"] == "high").sum()
    assert reachable <= high <= reachable + 5, "ties at the cut-off aside, the high band is what the team can reach"
    assert banded.risk_medium <= banded.risk_high and (banded.risk_high, banded.risk_medium) != (scorer.risk_high, scorer.risk_medium)
