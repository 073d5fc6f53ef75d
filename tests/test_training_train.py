"""A whole run on a labelled frame: MLflow logging, registry, promotion rule, reproducibility, loading."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from training_fixtures import CATEGORICAL, FEATURES, synthetic_training_set

from features.dataset import DataError
from training.register import load_model
from training.train import TrainResult, train_frame

AS_OF = date(2023, 6, 1)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_training_set(customers=300, snapshots=14, seed=11)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}", str(root / "artifacts")


def run(frame: pd.DataFrame, store: tuple[str, str], *, features: list[str] = FEATURES, trials: int = 3, seed: int = 42) -> TrainResult:
    return train_frame(
        frame,
        feature_names=features,
        categorical=[c for c in CATEGORICAL if c in features],
        horizon_days=90,
        as_of=AS_OF,
        dataset_name="synthetic",
        fingerprint="f" * 16,
        feature_set_version="test-v1",
        trials=trials,
        timeout_s=None,
        seed=seed,
        tracking_uri=store[0],
        artifact_root=store[1],
    )


@pytest.fixture(scope="module")
def first(frame: pd.DataFrame, store: tuple[str, str]) -> TrainResult:
    return run(frame, store)


@pytest.fixture(scope="module")
def repeat(frame: pd.DataFrame, store: tuple[str, str], first: TrainResult) -> TrainResult:
    return run(frame, store)


def test_first_model_becomes_champion_and_is_logged(first: TrainResult, store: tuple[str, str]) -> None:
    assert first.promoted and first.model_version == "1"
    assert "no champion" in first.reason
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    run_data = client.get_run(first.run_id).data
    assert run_data.metrics["test_pr_auc"] == pytest.approx(first.metrics["pr_auc"])
    assert {"baseline_recency_test_pr_auc", "baseline_logistic_rfm_test_pr_auc", "tier_A_pr_auc", "test_emp"} <= set(run_data.metrics)
    assert {"valid_recency_score", "valid_lightgbm_score", "test_margin_roc_auc", "test_margin_roc_auc_low", "test_ordered_90d_roc_auc"} <= set(run_data.metrics)
    assert run_data.params["dataset_fingerprint"] == "f" * 16 and run_data.params["test_last"] == "2023-02-01"
    assert run_data.params["kind"] == first.model.kind and run_data.params["train_last"] == "2023-02-01"
    assert run_data.params["tested_train_last"] < run_data.params["test_first"]
    artifacts = {a.path for a in client.list_artifacts(first.run_id)} | {a.path for a in client.list_artifacts(first.run_id, "plots")}
    plots = {"roc", "precision_recall", "calibration", "lift_gain", "profit_curve", "feature_importance"}
    assert {f"plots/{p}.png" for p in plots} | {"features.json", "metrics.json", "calibration.json", "candidates.csv", "test_comparison.csv"} <= artifacts
    assert client.get_experiment_by_name("churn/synthetic").artifact_location.startswith(Path(store[1]).resolve().as_uri())


def test_metadata_serving_relies_on(first: TrainResult) -> None:
    meta = first.model.metadata
    assert meta["feature_set_version"] == "test-v1" and meta["horizon_days"] == 90
    assert meta["test_pr_auc"] == first.metrics["pr_auc"]
    assert meta["dataset_fingerprint"] == "f" * 16
    assert meta["valid_last"] <= meta["tested_train_last"] < meta["test_first"] <= meta["train_last"]
    assert meta["kind"] in ("recency", "bgnbd", "logistic_rfm", "lightgbm", "lightgbm_bgnbd", "blend")
    assert date.fromisoformat(meta["trained_at"][:10])


def test_the_served_model_is_refitted_on_the_latest_matured_snapshots(first: TrainResult, frame: pd.DataFrame) -> None:
    latest_matured = frame.loc[frame["as_of"] + pd.Timedelta(days=90) <= pd.Timestamp(AS_OF), "as_of"].max()
    assert first.model.metadata["train_last"] == latest_matured.date().isoformat()
    assert first.fitted.tested.metadata["train_last"] < first.model.metadata["test_first"]
    tested, served = first.fitted.tested.predict_proba(frame), first.model.predict_proba(frame)
    assert not np.allclose(tested, served), "the served model is a refit, not the tested one"


def test_the_served_model_is_calibrated_on_the_latest_matured_period(first: TrainResult) -> None:
    test = first.fitted.split.test
    served = first.model.predict_proba(test)
    assert abs(served.mean() - test["churned"].mean()) < 0.03


def test_same_data_and_seed_give_the_same_model_and_metrics(first: TrainResult, repeat: TrainResult, frame: pd.DataFrame) -> None:
    assert repeat.metrics == first.metrics
    assert repeat.baselines == first.baselines
    assert repeat.model.kind == first.model.kind
    np.testing.assert_array_equal(repeat.model.predict_proba(frame), first.model.predict_proba(frame))


def test_an_equal_model_does_not_replace_the_champion(repeat: TrainResult) -> None:
    assert not repeat.promoted
    assert "does not beat the champion (version 1)" in repeat.reason and "recorded test PR-AUC on the same test period" in repeat.reason


def test_a_worse_model_stays_challenger_and_says_why(frame: pd.DataFrame, store: tuple[str, str], repeat: TrainResult) -> None:
    rng = np.random.default_rng(0)
    test_start = pd.Timestamp(repeat.split["test_first"])
    noisy = frame.copy()
    before_test = noisy["as_of"] < test_start
    noisy.loc[before_test, "churned"] = rng.permutation(noisy.loc[before_test, "churned"].to_numpy())
    worse = run(noisy, store, trials=1)
    assert not worse.promoted
    assert worse.metrics["pr_auc"] < repeat.metrics["pr_auc"]
    assert "recorded test PR-AUC on the same test period" in worse.reason
    assert "does not beat the champion (version 1)" in worse.reason and "kept as challenger" in worse.reason
    client = MlflowClient(tracking_uri=store[0], registry_uri=store[0])
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == worse.model_version
    assert client.get_model_version("churn", worse.model_version).tags["promotion_reason"] == worse.reason


def test_champion_loads_by_alias_with_the_same_predictions(first: TrainResult, store: tuple[str, str], frame: pd.DataFrame) -> None:
    loaded = load_model(store[0], "churn")
    assert (loaded.version, loaded.alias, loaded.run_id) == ("1", "champion", first.run_id)
    assert loaded.metrics["test_pr_auc"] == pytest.approx(first.metrics["pr_auc"])
    np.testing.assert_allclose(loaded.model.predict_proba(frame), first.model.predict_proba(frame))
    contrib, base = loaded.model.contributions(frame.head(50))
    np.testing.assert_allclose(contrib.sum(1) + base, loaded.model.raw_score(frame.head(50)), atol=1e-6)


def test_pyfunc_predicts_calibrated_probabilities(first: TrainResult, store: tuple[str, str], frame: pd.DataFrame) -> None:
    import mlflow

    from training.register import tracking

    with tracking(store[0]):
        pyfunc = mlflow.pyfunc.load_model("models:/churn@champion")
    rows = frame.head(20)[first.model.feature_names]
    np.testing.assert_allclose(np.asarray(pyfunc.predict(rows)), first.model.predict_proba(rows))
    assert pyfunc.unwrap_python_model().model.feature_names == first.model.feature_names


def test_champion_with_other_features_is_compared_by_recorded_metrics(frame: pd.DataFrame, store: tuple[str, str], repeat: TrainResult) -> None:
    reduced = [f for f in FEATURES if f != "open_complaints"]
    result = run(frame.drop(columns=["open_complaints"]), store, features=reduced, trials=1)
    assert "recorded test PR-AUC on the same test period" in result.reason


def test_a_champion_that_learned_from_the_new_test_period_is_not_compared(frame: pd.DataFrame, store: tuple[str, str], repeat: TrainResult) -> None:
    later = frame.assign(as_of=frame["as_of"] + pd.Timedelta(days=31))
    result = train_frame(
        later, feature_names=FEATURES, categorical=CATEGORICAL, horizon_days=90, as_of=date(2023, 7, 2), dataset_name="synthetic",
        fingerprint="g" * 16, trials=1, timeout_s=None, tracking_uri=store[0], artifact_root=store[1],
    )
    assert result.promoted and "cannot be compared fairly" in result.reason and "inside the new test period" in result.reason


def test_a_model_that_loses_to_a_baseline_on_validation_is_not_served(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    frame = synthetic_training_set(customers=300, snapshots=14, seed=12)
    frame["churned"] = (frame["days_since_last_order"] + rng.normal(0, 5, len(frame)) > frame["days_since_last_order"].median()).astype("int64")
    before_valid = frame["as_of"] < pd.Timestamp("2022-07-01")
    frame.loc[before_valid, "churned"] = rng.permutation(frame.loc[before_valid, "churned"].to_numpy())
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    result = train_frame(
        frame, feature_names=FEATURES, categorical=CATEGORICAL, horizon_days=90, as_of=AS_OF, dataset_name="rule", fingerprint="r" * 16,
        trials=2, timeout_s=None, tracking_uri=uri, artifact_root=str(tmp_path / "artifacts"),
    )
    scores = result.fitted.selection.metrics
    assert result.model.kind == "recency", "the trained candidates learned noise; the rule that needs no training wins"
    assert all(scores["recency"]["score"] > scores[k]["score"] for k in ("lightgbm", "logistic_rfm"))
    assert result.promoted and "the baseline recency won the validation period and is served" in result.reason
    loaded = load_model(uri, "churn")
    order = np.argsort(frame["days_since_last_order"].to_numpy(), kind="stable")
    assert np.all(np.diff(loaded.model.predict_proba(frame)[order]) >= 0), "the served model ranks by recency"


def test_missing_champion_is_a_lookup_error(store: tuple[str, str]) -> None:
    with pytest.raises(LookupError, match=r"no champion model: run `churn train`"):
        load_model(store[0], "no-such-model")


def test_bad_input_is_a_data_error_not_a_traceback(frame: pd.DataFrame, tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'bad.db').as_posix()}"
    common = dict(feature_names=FEATURES, categorical=CATEGORICAL, horizon_days=90, dataset_name="bad", fingerprint="0", tracking_uri=uri, artifact_root=str(tmp_path))
    with pytest.raises(DataError, match="no matured snapshot"):
        train_frame(frame, as_of=date(2022, 2, 1), **common)
    with pytest.raises(DataError, match="no customer was lost"):
        train_frame(frame.assign(churned=0), as_of=AS_OF, **common)
    with pytest.raises(DataError, match="lack the feature column"):
        train_frame(frame.drop(columns=["overdue_ratio"]), as_of=AS_OF, **common)
    assert not (tmp_path / "bad.db").exists()
