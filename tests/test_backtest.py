"""`churn backtest`: trained as of each date on nothing dated on or after it, measured against what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from features.dataset import DataError, open_dataset, write_dataset
from features.sample_data import generate_sample
from training.backtest import COLUMNS, BacktestConfig, BacktestResult, as_of_dates, lead_times, run_backtest

CHURN = Path(sys.executable).with_name("churn")
END = date(2025, 12, 31)
DATES = (date(2025, 5, 1), date(2025, 8, 1))


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return generate_sample(400, years=2.0, seed=21, end=END)


def _run(store: Path, *, ablate: tuple[str, ...] = ()) -> BacktestResult:
    outcomes = open_dataset(store)
    config = BacktestConfig(start=DATES[0], end=DATES[1], every="3M", trials=1, ablate=ablate)
    try:
        return run_backtest(lambda t: open_dataset(store, cut_at=t), outcomes, config)
    finally:
        outcomes.close()


@pytest.fixture(scope="module")
def result(sample: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    store = tmp_path_factory.mktemp("bt") / "crm.duckdb"
    write_dataset(store, sample)
    return _run(store, ablate=("complaints",))


@pytest.mark.slow
def test_the_table_has_every_date_subset_and_method(result: BacktestResult) -> None:
    table = result.table
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert sorted(table["as_of"].unique()) == [d.isoformat() for d in DATES]
    assert set(table["subset"]) == {"all", "ordered_90d", "retain"}
    assert set(table["method"]) == {"model", "recency", "bgnbd", "logistic_rfm"}
    assert len(table) == 2 * 3 * 4
    model = table[table["method"] == "model"]
    assert (model["margin_roc_auc_low"] <= model["margin_roc_auc"]).all() and (model["margin_roc_auc"] <= model["margin_roc_auc_high"]).all()
    assert table.loc[table["method"] != "model", "margin_roc_auc_low"].isna().all()


@pytest.mark.slow
def test_the_figures_are_the_scores_against_the_outcome(result: BacktestResult) -> None:
    from sklearn.metrics import roc_auc_score

    for (as_of, subset, method), row in result.table.set_index(["as_of", "subset", "method"]).iterrows():
        scores = result.scores[result.scores["as_of"] == as_of]
        if subset == "ordered_90d":
            scores = scores[scores["ordered_90d"]]
        if subset == "retain":
            scores = scores[scores["stage"] == "retain"]
        assert row["customers"] == len(scores) and row["churn_rate"] == pytest.approx(scores["churned"].mean())
        assert row["roc_auc"] == pytest.approx(roc_auc_score(scores["churned"], scores[method]))


@pytest.mark.slow
def test_summary_and_ablation(result: BacktestResult) -> None:
    summary = result.summary.set_index(["subset", "metric"])
    assert set(summary.index) == {(s, m) for s in ("all", "ordered_90d", "retain") for m in ("roc_auc", "pr_auc")}
    mean = result.table[(result.table["method"] == "model") & (result.table["subset"] == "all")]["margin_roc_auc"].mean()
    assert summary.loc[("all", "roc_auc"), "mean_margin"] == pytest.approx(mean)
    low, high = summary.loc[("all", "roc_auc"), ["low", "high"]]
    assert low <= mean <= high
    assert set(result.ablation["variant"]) == {"all features", "without complaints"}
    fewer = result.ablation.set_index(["as_of", "variant"])["features"]
    assert (fewer.xs("without complaints", level="variant") < fewer.xs("all features", level="variant")).all()
    assert set(result.runs["as_of"]) == {d.isoformat() for d in DATES}
    assert (pd.to_datetime(result.runs["train_last"]) + pd.Timedelta(days=90) <= pd.to_datetime(result.runs["as_of"])).all()


@pytest.mark.slow
def test_rows_dated_on_or_after_t_change_no_score_at_t(sample: dict[str, pd.DataFrame], result: BacktestResult, tmp_path: Path) -> None:
    t = DATES[0]
    changed = {name: frame.copy() for name, frame in sample.items()}
    orders = changed["orders"]
    later = pd.to_datetime(orders["order_date"]) >= pd.Timestamp(t)
    orders.loc[later, "amount"] *= 3
    lines = changed["order_lines"]
    later_lines = lines["order_id"].isin(orders.loc[later, "order_id"])
    lines.loc[later_lines, "amount"] *= 3
    lines.loc[later_lines, "product_id"] = lines.loc[later_lines, "product_id"].to_numpy()[::-1]
    store = tmp_path / "changed.duckdb"
    write_dataset(store, changed)
    outcomes = open_dataset(store)
    try:
        again = run_backtest(lambda d: open_dataset(store, cut_at=d), outcomes, BacktestConfig(start=t, end=t, trials=1))
    finally:
        outcomes.close()
    before = result.scores[result.scores["as_of"] == t.isoformat()].reset_index(drop=True)
    after = again.scores.reset_index(drop=True)
    pd.testing.assert_frame_equal(before.drop(columns="churned"), after.drop(columns="churned"))


def test_as_of_dates_and_their_mistakes() -> None:
    assert as_of_dates(date(2011, 1, 31), date(2011, 4, 30), "1M") == [date(2011, 1, 31), date(2011, 2, 28), date(2011, 3, 31), date(2011, 4, 30)]
    assert as_of_dates(date(2011, 1, 1), date(2011, 1, 20), "1W") == [date(2011, 1, 1), date(2011, 1, 8), date(2011, 1, 15)]
    with pytest.raises(DataError, match="--every must look like 1M"):
        as_of_dates(date(2011, 1, 1), date(2011, 2, 1), "monthly")
    with pytest.raises(DataError, match="--from must not be after --to"):
        as_of_dates(date(2011, 3, 1), date(2011, 2, 1), "1M")


def test_an_unknown_ablation_is_named(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "crm.duckdb"
    write_dataset(store, sample)
    config = BacktestConfig(start=DATES[0], end=DATES[0], ablate=("complaints,no_such_feature",))
    with pytest.raises(DataError, match="--ablate no_such_feature: not a feature or feature group"):
        run_backtest(lambda t: open_dataset(store, cut_at=t), open_dataset(store), config)


@pytest.mark.slow
def test_the_command_writes_the_table_and_an_mlflow_run(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "crm.duckdb"
    write_dataset(store, sample)
    env = {**os.environ, "CHURN_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CHURN_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    out, scores = tmp_path / "bt.csv", tmp_path / "scores.csv"
    args = [CHURN, "backtest", "--data", str(store), "--from", "2025-08-01", "--to", "2025-08-01", "--trials", "1", "--out", str(out), "--scores", str(scores)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr
    assert "mean margin" in done.stdout and "ordered_90d" in done.stdout and "retain" in done.stdout
    table = pd.read_csv(out)
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS) and len(table) == 12
    assert "lead time" in done.stdout
    assert set(pd.read_csv(scores).columns) >= {"customer_id", "model", "recency", "bgnbd", "logistic_rfm", "churned"}
    client = MlflowClient(tracking_uri=env["CHURN_TRACKING_URI"])
    experiment = client.get_experiment_by_name("churn-backtest/crm")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"backtest.csv", "summary.csv", "plots"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} == {"plots/margins.png"}
    assert "all_roc_auc_mean_margin" in parent.data.metrics
    assert any(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in runs)


def test_an_outcome_not_yet_known_is_a_clear_message(sample: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "crm.duckdb"
    write_dataset(store, sample)
    done = subprocess.run([CHURN, "backtest", "--data", str(store), "--from", "2025-11-01", "--to", "2025-11-01"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "not known yet" in done.stderr and "--to 2025-10-03" in done.stderr and "2025-12-31" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_lead_times_cover_every_method_on_both_lists(result: BacktestResult) -> None:
    lead = result.lead_times
    assert set(lead["method"]) == {"model", "recency", "bgnbd", "logistic_rfm"}
    assert set(lead["list"]) == {"top 10% of retain", "probability >= 0.5"}
    top = lead[lead["list"] == "top 10% of retain"].set_index("method")
    assert top["flags"].nunique() == 1, "every method flags as many customers (the top 10% of each date's retain list)"
    assert ((top["flagged"] >= 0) & (top["flagged"] <= 1)).all() and ((top["precision"] >= 0) & (top["precision"] <= 1)).all()


def test_lead_time_by_hand() -> None:
    scores = pd.DataFrame(
        {
            "as_of": ["2024-01-01"] * 4 + ["2024-02-01"] * 4,
            "customer_id": ["a", "b", "c", "d"] * 2,
            "stage": ["retain", "retain", "retain", "win_back", "retain", "retain", "retain", "retain"],
            "model": [0.9, 0.2, 0.1, 0.99, 0.1, 0.8, 0.3, 0.2],
            "recency": [0.1, 0.2, 0.9, 0.99, 0.1, 0.3, 0.8, 0.2],
            "churned": [1, 0, 0, 1, 0, 1, 0, 0],
        }
    )
    last = pd.Series(pd.to_datetime(["2024-03-01", "2024-04-10", "2024-05-01", "2023-11-01"]), index=["a", "b", "c", "d"])
    table = lead_times(scores, last, horizon_days=90, end=date(2024, 12, 31), top=0.34).set_index(["list", "method"])
    top = table.loc["top 34% of retain"]
    # model flags a on 2024-01-01 (60 days before its last order) and b on 2024-02-01 (69 days)
    assert top.loc["model", "median_lead_days"] == pytest.approx((60 + 69) / 2)
    assert top.loc["model", "flagged"] == pytest.approx(2 / 4) and top.loc["model", "lost"] == 4
    # recency flags c on both dates: first on 2024-01-01, 121 days before its last order
    assert top.loc["recency", "median_lead_days"] == 121 and top.loc["recency", "precision"] == 0.0
    high = table.loc["probability >= 0.5"]
    assert high.loc["model", "flags"] == 2 and high.loc["model", "precision"] == 1.0
