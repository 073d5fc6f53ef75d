"""`churn score`'s engine: every active customer scored, the run appended to risk_scores, the export written."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from serving_fixtures import TrainedStore, trained_store

from churn.settings import Settings, load_settings
from serving.batch import EXPORT_COLUMNS, score_all
from serving.tables import FOLDER_FILE, ScoringError, latest_run, read_run, run_history

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(tmp_path_factory.mktemp("serving_store"))


def _settings(store: TrainedStore, data: Path) -> Settings:
    return load_settings(data=str(data), tracking_uri=store.tracking_uri, model_name=store.model_name)


def test_score_all_ranks_every_active_customer_and_exports(store: TrainedStore, tmp_path: Path) -> None:
    own = store.copy(tmp_path / "db")
    out = tmp_path / "risk.csv"
    ranked = score_all(_settings(store, own.data), out=out, explain_top=25)
    exported = pd.read_csv(out)
    assert list(exported.columns) == list(EXPORT_COLUMNS)
    assert len(exported) == len(ranked) > 100
    assert exported["customer_id"].is_unique
    var = ranked["value_at_risk"].fillna(-1).to_numpy()
    assert (var[:-1] >= var[1:]).all()
    assert set(ranked["risk_band"]) <= {"high", "medium", "low"}
    at_risk = ranked[ranked["risk_band"] != "low"]
    assert at_risk["first_action"].notna().all(), "every at-risk customer gets an action"
    explained = ranked["top_reason"].notna()
    assert explained.sum() == min(25, len(at_risk))
    assert explained[at_risk.index[:25]].all(), "the reasons go to the at-risk customers at the top of the list"
    assert ranked.loc[ranked["risk_band"] == "low", "first_action"].isna().all()


def test_the_product_groups_at_risk_are_stored_and_exported_with_the_run(store: TrainedStore, tmp_path: Path) -> None:
    own = store.copy(tmp_path / "db")
    ranked = score_all(_settings(store, own.data), out=tmp_path / "risk.csv", explain_top=5)
    exported = pd.read_csv(tmp_path / "risk_groups.csv")
    assert list(exported.columns) == ["rank", "customer_id", "product_group", "probability", "group_revenue_12m", "value_at_risk", "days_since_bought"]
    assert len(exported) > len(ranked), "customers buy several product groups regularly"
    assert set(exported["customer_id"]) <= set(ranked["customer_id"].astype(str))
    assert not exported.duplicated(["customer_id", "product_group"]).any()
    assert exported["probability"].between(0, 1).all()
    assert exported["value_at_risk"].to_numpy() == pytest.approx((exported["probability"] * exported["group_revenue_12m"].clip(lower=0)).to_numpy(), rel=1e-4)  # 6 digits in the CSV
    assert exported["value_at_risk"].is_monotonic_decreasing
    with duckdb.connect(str(own.data), read_only=True) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT scored_at), min(model_version), min(as_of) FROM group_risk_scores").fetchone()
    assert stored[0] == len(exported) and stored[1] == 1 and stored[2] == "1"
    assert str(stored[3]) == str(ranked["as_of"].iloc[0])


def test_runs_are_appended_never_overwritten(store: TrainedStore, tmp_path: Path) -> None:
    own = store.copy(tmp_path / "db")
    settings = _settings(store, own.data)
    first = score_all(settings, explain_top=5)
    earlier = first["as_of"].iloc[0] - pd.Timedelta(days=30)
    score_all(settings, as_of=earlier, explain_top=5)
    history = run_history(own.data)
    assert len(history) == 2
    assert sorted(history["as_of"].astype(str)) == sorted([str(earlier), str(first["as_of"].iloc[0])])
    newest = latest_run(own.data)
    assert newest is not None and str(newest.as_of) == str(earlier) and newest.model_version == "1"
    with duckdb.connect(str(own.data), read_only=True) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT scored_at) FROM risk_scores").fetchone()
    assert rows[1] == 2 and rows[0] == int(history["customers"].sum())
    latest = read_run(own.data)
    assert latest is not None and (latest["as_of"].astype(str) == str(earlier)).all()


def test_folder_dataset_keeps_its_risk_list_in_a_parquet_file(store: TrainedStore, tmp_path: Path) -> None:
    from features.dataset import open_dataset, write_dataset

    data = open_dataset(store.data, validate=False)
    try:
        frames = {name: table.to_pandas() for name, table in data.tables.items()}
    finally:
        data.con.disconnect()
    folder = tmp_path / "crm"
    write_dataset(folder, frames)
    settings = _settings(store, folder)
    n = len(score_all(settings, explain_top=5, out=tmp_path / "list.parquet"))
    score_all(settings, explain_top=5)
    stored = pd.read_parquet(folder / FOLDER_FILE)
    assert len(stored) == 2 * n and stored["scored_at"].nunique() == 2
    assert list(pd.read_parquet(tmp_path / "list.parquet").columns) == list(EXPORT_COLUMNS)
    reopened = open_dataset(folder, validate=False)
    assert "risk_scores" not in reopened.tables


def test_without_a_champion_the_batch_says_what_to_run(store: TrainedStore, tmp_path: Path) -> None:
    settings = load_settings(data=str(store.data), tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}", model_name="churn")
    with pytest.raises(ScoringError, match="churn train"):
        score_all(settings)


def test_a_bad_export_name_is_refused(store: TrainedStore, tmp_path: Path) -> None:
    own = store.copy(tmp_path / "db")
    with pytest.raises(ScoringError, match=r"\.csv or \.parquet"):
        score_all(_settings(store, own.data), out=tmp_path / "list.xlsx", explain_top=0)


def test_a_risk_list_written_by_an_earlier_version_gains_the_new_columns(store: TrainedStore, tmp_path: Path) -> None:
    from serving.batch import RISK_SCORE_TYPES

    own = store.copy(tmp_path / "db")
    settings = _settings(store, own.data)
    first = score_all(settings, explain_top=5)
    old_columns = list(RISK_SCORE_TYPES)[: list(RISK_SCORE_TYPES).index("stage")]
    with duckdb.connect(str(own.data)) as con:
        for column in list(RISK_SCORE_TYPES)[len(old_columns):]:
            con.execute(f"ALTER TABLE risk_scores DROP COLUMN {column}")
    score_all(settings, explain_top=5)
    with duckdb.connect(str(own.data), read_only=True) as con:
        columns = [row[0] for row in con.execute("DESCRIBE risk_scores").fetchall()]
        empty_old = con.execute("SELECT count(*) FROM risk_scores WHERE stage IS NULL").fetchone()[0]
    assert columns == list(RISK_SCORE_TYPES)
    assert empty_old == len(first), "the earlier run keeps its rows, with no stage"
    assert (read_run(own.data)["stage"].isin(["retain", "win_back"])).all()


def test_holdout_marks_a_seeded_share_of_each_band_as_control(store: TrainedStore, tmp_path: Path) -> None:
    from serving.batch import CONTROL_NOTE

    own = store.copy(tmp_path / "db")
    settings = _settings(store, own.data).model_copy(update={"holdout": 0.2})
    first = score_all(settings, explain_top=5)
    again = score_all(settings, explain_top=5)
    assert first["control"].tolist() == again["control"].tolist(), "the same seed and date hold out the same customers"
    for band, rows in first.groupby("risk_band"):
        assert rows["control"].sum() == round(0.2 * len(rows)), band
    control = first[first["control"]]
    assert (control["first_action"] == CONTROL_NOTE).all() and control["first_action_owner"].isna().all()
    stored = read_run(own.data)
    assert stored is not None and (stored["holdout"] == 0.2).all()
    assert stored.loc[stored["control"], "actions_json"].notna().all(), "control rows keep the actions they would have had"
    other = score_all(settings.model_copy(update={"seed": settings.seed + 1}), explain_top=5)
    assert other["control"].tolist() != first["control"].tolist()
    none = score_all(settings.model_copy(update={"holdout": 0.0}), explain_top=5)
    assert not none["control"].any() and none["first_action"].ne(CONTROL_NOTE).all()
