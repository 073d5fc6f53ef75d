"""The closed loop on the sample company: score with a control group, record the actions, let the
simulated program run, and measure with `churn outcomes` what it changed against the generator's truth."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from serving_fixtures import CUSTOMERS, SEED, YEARS, TrainedStore, trained_store

from churn.settings import load_settings
from features.dataset import write_dataset
from features.sample_program import RetentionProgram, generate_with_program
from serving.actions import ActionDone, record_action
from serving.batch import score_all
from serving.drift import SCORE, psi, read_drift
from serving.outcomes import compare, latest_reports, outcomes
from serving.tables import read_run
from training.register import tracking

pytestmark = pytest.mark.slow

AS_OF = datetime.date(2025, 9, 1)
EFFECT = 0.7


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = trained_store(tmp_path_factory.mktemp("serving_store")).copy(tmp_path_factory.mktemp("outcomes"))
    settings = load_settings(data=str(store.data), tracking_uri=store.tracking_uri, model_name=store.model_name, holdout=0.1)
    score_all(settings, as_of=AS_OF, explain_top=50)
    run = read_run(store.data)
    assert run is not None
    treated = run[run["risk_band"].isin(["high", "medium"]) & ~run["control"]]
    done = {}
    for i, row in enumerate(treated.itertuples(index=False)):
        key = json.loads(row.actions_json)[0]["key"]
        day = AS_OF + datetime.timedelta(days=i % 10)
        record_action(store.data, ActionDone(id=f"crm-{i}", customer_id=row.customer_id, action=key, owner="Anna Li", done_at=datetime.datetime.combine(day, datetime.time(10)), outcome="reached"))
        done[str(row.customer_id)] = (key, day)
    program = RetentionProgram(AS_OF, done, {}, default_effect=EFFECT, seed=1)
    tables, truth = generate_with_program(CUSTOMERS, program, years=YEARS, seed=SEED)
    write_dataset(store.data, tables)  # time passes: the CRM tables now hold the months after the run
    reports = outcomes(settings.model_copy(update={"holdout": 0.0}))
    return {"store": store, "run": run, "tables": tables, "truth": truth, "reports": reports, "settings": settings}


def _report(loop: dict) -> dict:
    (report,) = [r for r in loop["reports"] if r["as_of"] == AS_OF.isoformat()]
    return report


def test_outcomes_recover_the_simulated_effect_within_the_interval(loop: dict) -> None:
    effects = _report(loop)["effects"]
    overall = effects["overall"]
    truth = loop["truth"].set_index("customer_id")
    run = loop["run"]
    at_risk = run[run["risk_band"].isin(["high", "medium"])]
    treated = truth.loc[at_risk.loc[~at_risk["control"], "customer_id"].astype(str)]
    true_effect = (treated["ordered_with_program"].astype(int) - treated["ordered_without_program"].astype(int)).mean()
    assert overall["treated"] == len(treated) and overall["control"] == int(at_risk["control"].sum()) >= 3
    assert overall["low"] <= true_effect <= overall["high"], (true_effect, overall)
    assert true_effect > 0.1, "the program's effect on the treated is clearly there"
    assert effects["touched_treated"] == 1.0 and effects["per_action"] and effects["per_driver"]


def test_realised_roc_auc_equals_an_independent_computation_from_the_stored_scores_and_the_orders(loop: dict) -> None:
    run, orders = loop["run"], loop["tables"]["orders"]
    end = pd.Timestamp(AS_OF) + pd.Timedelta(days=90)
    window = orders[(orders["order_date"] >= pd.Timestamp(AS_OF)) & (orders["order_date"] < end) & (orders["amount"] > 0)]
    churned = ~run["customer_id"].astype(str).isin(set(window["customer_id"].astype(str)))
    p = run["churn_probability"].to_numpy()
    pos, neg = p[churned.to_numpy()], p[~churned.to_numpy()]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    report = _report(loop)
    assert report["roc_auc"] == pytest.approx(pairs / (pos.size * neg.size), abs=1e-12)
    assert report["churn_rate"] == pytest.approx(churned.mean())
    assert sum(b["customers"] for b in report["bands"]) == len(run) == sum(d["customers"] for d in report["deciles"])


def test_the_figures_go_to_mlflow_the_store_and_the_drift_table(loop: dict) -> None:
    store: TrainedStore = loop["store"]
    report = _report(loop)
    with tracking(store.tracking_uri) as client:
        version = client.get_model_version(store.model_name, report["model_version"])
        history = client.get_metric_history(version.run_id, "outcome_roc_auc")
    assert [m.value for m in history if m.step == (AS_OF - datetime.date(1970, 1, 1)).days] == [pytest.approx(report["roc_auc"])]
    assert [r["as_of"] for r in latest_reports(store.data)] == [r["as_of"] for r in loop["reports"]]
    drift = read_drift(store.data)
    assert SCORE in set(drift["feature"]) and (drift["psi"] >= 0).all() and len(drift) > 10
    assert isinstance(report["retrain"], list)


def test_retrain_is_recommended_when_a_key_input_drifts(loop: dict) -> None:
    from serving.outcomes import retrain_advice

    report = _report(loop)
    drift = pd.DataFrame({"feature": ["days_since_last_order", "orders_90d"], "psi": [0.6, 0.01]})
    reasons = retrain_advice(report, test_pr_auc=(report["untreated_pr_auc"] or 0) + 0.3, drift=drift, settings=loop["settings"])
    assert any("PR-AUC" in r for r in reasons) and any("days_since_last_order" in r for r in reasons)
    assert not any("orders_90d" in r for r in reasons)
    assert retrain_advice(report, test_pr_auc=report["untreated_pr_auc"], drift=drift.assign(psi=0.01), settings=loop["settings"]) == []


def test_psi_is_zero_for_the_same_population_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=5000))
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-9)
    assert psi(reference, pd.Series(rng.normal(size=5000))) < 0.02 < psi(reference, pd.Series(rng.normal(0.5, size=5000)))
    assert psi(pd.Series(list("aab") * 100), pd.Series(list("abb") * 100)) > 0.1


def test_the_interval_of_the_difference_covers_and_narrows() -> None:
    wide = compare(np.array([True] * 8 + [False] * 2), np.array([True] * 5 + [False] * 5))
    narrow = compare(np.array([True] * 800 + [False] * 200), np.array([True] * 500 + [False] * 500))
    assert wide is not None and narrow is not None
    assert wide.uplift == narrow.uplift == pytest.approx(0.3)
    assert wide.low < 0.3 < wide.high and narrow.low < 0.3 < narrow.high
    assert narrow.high - narrow.low < (wide.high - wide.low) / 5
    assert compare(np.array([True]), np.array([], dtype=bool)) is None


def test_outcomes_cli_prints_the_report(loop: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from churn.cli import app

    store: TrainedStore = loop["store"]
    env = {"CHURN_TRACKING_URI": store.tracking_uri, "CHURN_MODEL_NAME": store.model_name}
    result = CliRunner().invoke(app, ["outcomes", "--data", str(store.data)], env=env)
    assert result.exit_code == 0, result.output
    assert f"run of {AS_OF}" in result.output and "treated vs control" in result.output and "ROC-AUC" in result.output


def test_the_scores_are_also_judged_as_if_no_action_had_been_taken(loop: dict) -> None:
    report, run, orders = _report(loop), loop["run"], loop["tables"]["orders"]
    end = pd.Timestamp(AS_OF) + pd.Timedelta(days=90)
    window = orders[(orders["order_date"] >= pd.Timestamp(AS_OF)) & (orders["order_date"] < end) & (orders["amount"] > 0)]
    run = run.assign(churned=~run["customer_id"].astype(str).isin(set(window["customer_id"].astype(str))))
    share = run[run["risk_band"] != "low"].groupby("risk_band")["control"].mean()
    kept = run[run["control"] | (run["risk_band"] == "low")]
    w = np.where(kept["risk_band"] == "low", 1.0, 1.0 / kept["risk_band"].map(share).fillna(1.0))
    pos, neg = kept["churned"].to_numpy(), ~kept["churned"].to_numpy()
    p = kept["churn_probability"].to_numpy()
    wins = (w[pos][:, None] * w[neg][None, :] * ((p[pos][:, None] > p[neg][None, :]) + 0.5 * (p[pos][:, None] == p[neg][None, :]))).sum()
    assert report["untreated_roc_auc"] == pytest.approx(wins / (w[pos].sum() * w[neg].sum()), abs=1e-9)
