"""ChurnModel: input preparation, contributions that add up to the margin, calibration, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss
from training_fixtures import CATEGORICAL, FEATURES, synthetic_training_set

from training.dataset import LABEL, SplitConfig, TimeSplit, time_split
from training.model import ChurnModel, PlattCalibrator, category_lists, fit_booster, lgb_params, prepare_features


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    frame = synthetic_training_set(customers=400, snapshots=16, seed=5)
    return time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))


def _fit(split: TimeSplit, **overrides: object) -> ChurnModel:
    categories = category_lists(split.train, CATEGORICAL)
    tx = prepare_features(split.train, FEATURES, categories)
    vx = prepare_features(split.valid, FEATURES, categories)
    ty, vy = split.train[LABEL].to_numpy(), split.valid[LABEL].to_numpy()
    booster = fit_booster(tx, ty, vx, vy, lgb_params(overrides, seed=7), num_boost_round=300)
    calibrator = PlattCalibrator.fit(booster.predict(vx, raw_score=True), vy)
    return ChurnModel(booster, FEATURES, categories, calibrator, {"horizon_days": 90})


@pytest.fixture(scope="module")
def model(split: TimeSplit) -> ChurnModel:
    return _fit(split)


def test_contributions_sum_to_the_raw_score(model: ChurnModel, split: TimeSplit) -> None:
    contrib, base = model.contributions(split.test)
    assert contrib.shape == (len(split.test), len(model.feature_names))
    assert base.shape == (len(split.test),)
    np.testing.assert_allclose(contrib.sum(axis=1) + base, model.raw_score(split.test), atol=1e-6)


def test_calibrated_probability_is_monotone_in_the_margin(model: ChurnModel, split: TimeSplit) -> None:
    margin = model.raw_score(split.test)
    proba = model.predict_proba(split.test)
    order = np.argsort(margin, kind="stable")
    assert np.all(np.diff(proba[order]) >= 0)
    assert model.calibrator.slope > 0


def test_calibration_repairs_a_miscalibrated_booster(split: TimeSplit) -> None:
    skewed = _fit(split, scale_pos_weight=4.0)
    y = split.test[LABEL].to_numpy()
    raw = brier_score_loss(y, skewed.uncalibrated_proba(split.test))
    calibrated = brier_score_loss(y, skewed.predict_proba(split.test))
    assert calibrated < raw
    assert abs(skewed.predict_proba(split.test).mean() - y.mean()) < 0.05


def test_prepare_orders_columns_and_reports_a_missing_one_by_name(model: ChurnModel, split: TimeSplit) -> None:
    shuffled = split.test[list(reversed(split.test.columns))]
    assert list(model.prepare(shuffled).columns) == model.feature_names
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(split.test))
    with pytest.raises(ValueError, match="missing feature column.*overdue_ratio"):
        model.prepare(split.test.drop(columns=["overdue_ratio"]))
    with pytest.raises(ValueError, match="orders_90d must be numeric"):
        model.prepare(split.test.assign(orders_90d="many"))


def test_unseen_category_becomes_missing_not_an_error(model: ChurnModel, split: TimeSplit) -> None:
    rows = split.test.head(5).copy()
    prepared = model.prepare(rows.assign(channel="telepathy"))
    assert prepared["channel"].isna().all()
    assert list(prepared["channel"].cat.categories) == model.categorical["channel"]
    missing = model.predict_proba(rows.assign(channel=None))
    unseen = model.predict_proba(rows.assign(channel="telepathy"))
    np.testing.assert_allclose(missing, unseen)


def test_save_and_load_give_the_same_predictions(model: ChurnModel, split: TimeSplit, tmp_path: Path) -> None:
    loaded = ChurnModel.load(model.save(tmp_path / "m"))
    assert loaded.feature_names == model.feature_names
    assert loaded.categorical == model.categorical
    assert loaded.metadata == model.metadata
    np.testing.assert_array_equal(loaded.predict_proba(split.test), model.predict_proba(split.test))
    np.testing.assert_array_equal(loaded.contributions(split.test)[0], model.contributions(split.test)[0])


def test_importance_ranks_every_feature(model: ChurnModel, split: TimeSplit) -> None:
    importance = model.importance(split.test)
    assert set(importance.index) == set(FEATURES)
    assert importance.is_monotonic_decreasing
    assert importance.index[0] in {"overdue_ratio", "open_complaints", "orders_trend_90d", "days_since_last_order"}


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 20_000)
    y = (rng.random(margin.size) < 1 / (1 + np.exp(-(0.5 * margin - 1.0)))).astype(float)
    cal = PlattCalibrator.fit(margin, y)
    assert cal.slope == pytest.approx(0.5, abs=0.05)
    assert cal.intercept == pytest.approx(-1.0, abs=0.08)
    assert isinstance(pd.Series(cal(margin)).between(0, 1).all(), bool | np.bool_)
