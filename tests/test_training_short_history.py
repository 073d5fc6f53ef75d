"""The short-history mode (folds of customers) and the BG/NBD prior of the booster."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.dataset import DataError
from training.dataset import CUSTOMER_CV, CustomerFolds, ShortHistoryError, SplitConfig, TimeSplit, split_for_training
from training.model import PRIOR_NAME, ChurnModel, PriorBooster, fit_booster, lgb_params, prepare_features, prior_logit
from training.train import train_frame
from training_fixtures import CATEGORICAL, FEATURES, synthetic_training_set

PRIOR = "btyd_p_no_order_90d"


def with_prior(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noisy = 0.6 * frame["churned"].to_numpy() + 0.4 * rng.random(len(frame))
    return frame.assign(**{PRIOR: np.clip(noisy, 0.01, 0.99)})


@pytest.fixture(scope="module")
def short() -> pd.DataFrame:
    return with_prior(synthetic_training_set(customers=400, snapshots=4))


def test_a_short_history_falls_back_to_folds_of_customers(short: pd.DataFrame) -> None:
    parts = split_for_training(short, horizon_days=90, config=SplitConfig(min_test_customers=50))
    assert isinstance(parts, CustomerFolds) and parts.evaluation == CUSTOMER_CV
    assert parts.frame.groupby("customer_id").apply(lambda g: parts.fold[g.index].tolist().count(parts.fold[g.index[0]]) == len(g)).all()
    assert sorted(set(parts.fold.tolist())) == list(range(parts.k))
    assert parts.summary()["evaluation"] == CUSTOMER_CV
    with pytest.raises(ShortHistoryError, match="too little matured history"):
        split_for_training(short, horizon_days=90, config=SplitConfig(min_test_customers=50, short_history="fail"))


def test_a_long_history_keeps_the_time_split() -> None:
    frame = synthetic_training_set(customers=300, snapshots=14)
    parts = split_for_training(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))
    assert isinstance(parts, TimeSplit) and parts.evaluation == "later-period"


def test_prior_model_contributions_add_up_and_name_the_prior(short: pd.DataFrame, tmp_path: Path) -> None:
    features = [*FEATURES, PRIOR]
    categories = {c: sorted(short[c].dropna().astype(str).unique()) for c in CATEGORICAL}
    x = prepare_features(short, features, categories)
    y = short["churned"].to_numpy(dtype=int)
    init = prior_logit(x[PRIOR])
    params = lgb_params({"num_leaves": 7, "learning_rate": 0.05})
    booster = fit_booster(x, y, x, y, params, num_boost_round=30, init_scores=(init, init))
    model = ChurnModel(booster, features, categories, prior_feature=PRIOR)
    assert isinstance(model.booster, PriorBooster)
    assert model.contribution_names == [*features, PRIOR_NAME]
    contrib, base = model.contributions(short)
    assert contrib.shape == (len(short), len(features) + 1)
    np.testing.assert_allclose(contrib.sum(1) + base, model.raw_score(short), atol=1e-9)
    np.testing.assert_allclose(contrib[:, -1], init, atol=1e-12)
    np.testing.assert_allclose(model.raw_score(short), booster.predict(x, raw_score=True) + init, atol=1e-9)
    encoded = x.assign(**{c: x[c].cat.codes.replace(-1, np.nan).astype(float) for c in CATEGORICAL}).to_numpy(dtype=float)
    np.testing.assert_allclose(model.booster.predict(encoded, raw_score=True), model.raw_score(short), atol=1e-9)
    lgb_shaped = model.booster.predict(encoded, pred_contrib=True)
    assert lgb_shaped.shape == (len(short), len(features) + 1)
    np.testing.assert_allclose(lgb_shaped.sum(1), model.raw_score(short), atol=1e-9)
    loaded = ChurnModel.load(model.save(tmp_path / "m"))
    assert loaded.prior_feature == PRIOR and loaded.contribution_names == model.contribution_names
    np.testing.assert_allclose(loaded.predict_proba(short), model.predict_proba(short), atol=1e-12)


def test_short_history_training_is_cross_validated_and_starts_from_the_prior(short: pd.DataFrame, tmp_path: Path) -> None:
    result = train_frame(
        short, feature_names=[*FEATURES, PRIOR], categorical=CATEGORICAL, horizon_days=90, as_of=date(2023, 1, 1),
        dataset_name="short", fingerprint="f", trials=2, timeout_s=None,
        tracking_uri=f"sqlite:///{(tmp_path / 'm.db').as_posix()}", artifact_root=str(tmp_path / "a"),
        split=SplitConfig(min_test_customers=50),
    )
    meta = result.model.metadata
    assert meta["evaluation"] == CUSTOMER_CV and meta["btyd_prior"] is True
    assert result.split["evaluation"] == CUSTOMER_CV and result.split["train_rows"] == len(short)
    assert result.model.prior_feature == PRIOR and result.model.contribution_names[-1] == PRIOR_NAME
    assert result.tuning["trees"] >= 1 and len(result.tuning["fold_trees"]) == 5
    assert 0.5 < result.metrics["roc_auc"] <= 1.0 and set(result.baselines) >= {"recency_rule", "logistic_rfm"}


def test_forcing_the_prior_without_its_column_is_a_clear_error(tmp_path: Path) -> None:
    frame = synthetic_training_set(customers=200, snapshots=4)
    with pytest.raises(DataError, match="btyd_prior needs the btyd_p_no_order_90d feature"):
        train_frame(
            frame, feature_names=FEATURES, categorical=CATEGORICAL, horizon_days=90, as_of=date(2023, 1, 1),
            dataset_name="x", fingerprint="f", trials=1, tracking_uri=f"sqlite:///{(tmp_path / 'm.db').as_posix()}",
            artifact_root=str(tmp_path / "a"), split=SplitConfig(min_test_customers=50), btyd_prior=True,
        )
