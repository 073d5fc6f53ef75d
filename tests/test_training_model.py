"""ChurnModel: trees, linear parts and blends; contributions that add up to the margin; calibration; save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from training_fixtures import CATEGORICAL, FEATURES, synthetic_training_set

from training.candidates import Context, fit_part
from training.dataset import LABEL, SplitConfig, TimeSplit, time_split
from training.model import ChurnModel, LinearComponent, PlattCalibrator, TreeComponent, category_lists, fit_linear, fit_rounds, lgb_params, prepare_features, prior_logit

PRIOR = "btyd_p_no_order_90d"


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    frame = synthetic_training_set(customers=400, snapshots=16, seed=5)
    rng = np.random.default_rng(1)
    frame[PRIOR] = np.clip(0.2 + 0.5 * (frame["overdue_ratio"].fillna(1) > 1) + rng.normal(0, 0.1, len(frame)), 0.01, 0.99)
    return time_split(frame, horizon_days=90, config=SplitConfig(min_test_customers=50))


@pytest.fixture(scope="module")
def ctx(split: TimeSplit) -> Context:
    return Context([*FEATURES, PRIOR], category_lists(split.train, CATEGORICAL), seed=7)


def _model(ctx: Context, split: TimeSplit, parts: list[str], weights: list[float] | None = None) -> ChurnModel:
    components = [fit_part(p, split.train, ctx, params={"num_leaves": 7}, rounds=60) for p in parts]
    raw = ChurnModel(ctx.feature_names, ctx.categories, components, weights)
    calibrator = PlattCalibrator.fit(raw.raw_score(split.valid), split.valid[LABEL].to_numpy())
    return ChurnModel(ctx.feature_names, ctx.categories, components, weights, calibrator, {"horizon_days": 90, "kind": "+".join(parts)})


@pytest.fixture(scope="module")
def blend(ctx: Context, split: TimeSplit) -> ChurnModel:
    return _model(ctx, split, ["lightgbm_bgnbd", "logistic_rfm", "bgnbd"], [0.6, 0.3, 0.1])


@pytest.mark.parametrize("parts", [["lightgbm"], ["lightgbm_bgnbd"], ["logistic_rfm"], ["bgnbd"], ["recency"], ["lightgbm_bgnbd", "logistic_rfm", "bgnbd"]])
def test_contributions_sum_to_the_margin_for_every_kind_of_model(ctx: Context, split: TimeSplit, parts: list[str]) -> None:
    model = _model(ctx, split, parts, [0.5] * len(parts))
    contrib, base = model.contributions(split.test)
    assert contrib.shape == (len(split.test), len(model.feature_names)) and base.shape == (len(split.test),)
    np.testing.assert_allclose(contrib.sum(axis=1) + base, model.raw_score(split.test), atol=1e-9)


def test_a_blend_is_the_weighted_sum_of_its_parts(ctx: Context, split: TimeSplit, blend: ChurnModel) -> None:
    x = blend.encode(split.test)
    parts = [ChurnModel(ctx.feature_names, ctx.categories, [c]).margin(x) for c in blend.components]
    np.testing.assert_allclose(blend.margin(x), 0.6 * parts[0] + 0.3 * parts[1] + 0.1 * parts[2], atol=1e-12)


def test_the_prior_is_the_starting_margin_and_counts_for_its_own_column(ctx: Context, split: TimeSplit) -> None:
    tree = fit_part("lightgbm_bgnbd", split.train, ctx, params={"num_leaves": 7}, rounds=30)
    assert isinstance(tree, TreeComponent) and tree.prior == PRIOR
    model = ChurnModel(ctx.feature_names, ctx.categories, [tree])
    x = model.encode(split.test)
    np.testing.assert_allclose(model.margin(x), tree.booster.predict(x, raw_score=True) + prior_logit(split.test[PRIOR]), atol=1e-9)
    trees_only, _ = np.asarray(tree.booster.predict(x, pred_contrib=True))[:, :-1], None
    contrib, _ = model.explain(x)
    j = ctx.feature_names.index(PRIOR)
    np.testing.assert_allclose(contrib[:, j] - trees_only[:, j], prior_logit(split.test[PRIOR]) - tree.prior_mean, atol=1e-9)


def test_the_linear_part_is_scikit_learns_logistic_regression(split: TimeSplit) -> None:
    columns = ["days_since_last_order", "orders_365d", "revenue_365d", "rfm_recency_score"]
    part = fit_linear(split.train, split.train[LABEL].to_numpy(), columns, ["log", "log", "log", "identity"], seed=3)
    raw = split.train[columns].to_numpy(dtype=float)
    moved = np.column_stack([np.sign(raw[:, :3]) * np.log1p(np.abs(raw[:, :3])), raw[:, 3]])
    scaled = (moved - moved.mean(0)) / moved.std(0)
    reference = LogisticRegression(C=1.0, max_iter=2000, random_state=3).fit(scaled, split.train[LABEL])
    np.testing.assert_allclose(part.margin(split.train[columns].to_numpy(dtype=float)), reference.decision_function(scaled), atol=1e-8)


def test_a_missing_value_takes_the_training_median(split: TimeSplit) -> None:
    part = fit_linear(split.train, split.train[LABEL].to_numpy(), ["overdue_ratio"], ["log"])
    median = float(split.train["overdue_ratio"].median())
    assert part.fill == [pytest.approx(median)]
    np.testing.assert_allclose(part.margin(np.array([[np.nan]])), part.margin(np.array([[median]])))


def test_calibrated_probability_is_monotone_in_the_margin(blend: ChurnModel, split: TimeSplit) -> None:
    order = np.argsort(blend.raw_score(split.test), kind="stable")
    assert np.all(np.diff(blend.predict_proba(split.test)[order]) >= 0)
    assert blend.calibrator.slope > 0


def test_calibration_repairs_a_miscalibrated_booster(ctx: Context, split: TimeSplit) -> None:
    x = prepare_features(split.train, ctx.feature_names, ctx.categories)
    booster = fit_rounds(x, split.train[LABEL].to_numpy(), lgb_params({"scale_pos_weight": 4.0, "num_leaves": 7}, seed=7), 80)
    skewed = ChurnModel(ctx.feature_names, ctx.categories, [TreeComponent(booster, ctx.feature_names)])
    calibrated = ChurnModel(ctx.feature_names, ctx.categories, skewed.components, calibrator=PlattCalibrator.fit(skewed.raw_score(split.valid), split.valid[LABEL]))
    y = split.test[LABEL].to_numpy()
    assert brier_score_loss(y, calibrated.predict_proba(split.test)) < brier_score_loss(y, skewed.predict_proba(split.test))
    assert abs(calibrated.predict_proba(split.test).mean() - y.mean()) < 0.05


def test_prepare_orders_columns_and_reports_a_missing_one_by_name(blend: ChurnModel, split: TimeSplit) -> None:
    shuffled = split.test[list(reversed(split.test.columns))]
    assert list(blend.prepare(shuffled).columns) == blend.feature_names
    np.testing.assert_array_equal(blend.predict_proba(shuffled), blend.predict_proba(split.test))
    with pytest.raises(ValueError, match="missing feature column.*overdue_ratio"):
        blend.prepare(split.test.drop(columns=["overdue_ratio"]))
    with pytest.raises(ValueError, match="orders_90d must be numeric"):
        blend.prepare(split.test.assign(orders_90d="many"))


def test_unseen_category_becomes_missing_not_an_error(blend: ChurnModel, split: TimeSplit) -> None:
    rows = split.test.head(5).copy()
    prepared = blend.prepare(rows.assign(channel="telepathy"))
    assert prepared["channel"].isna().all()
    assert list(prepared["channel"].cat.categories) == blend.categorical["channel"]
    np.testing.assert_allclose(blend.predict_proba(rows.assign(channel=None)), blend.predict_proba(rows.assign(channel="telepathy")))


def test_save_and_load_give_the_same_predictions(blend: ChurnModel, split: TimeSplit, tmp_path: Path) -> None:
    loaded = ChurnModel.load(blend.save(tmp_path / "m"))
    assert loaded.feature_names == blend.feature_names and loaded.categorical == blend.categorical
    assert loaded.metadata == blend.metadata and loaded.weights == blend.weights
    assert [type(c) for c in loaded.components] == [TreeComponent, LinearComponent, LinearComponent]
    np.testing.assert_array_equal(loaded.predict_proba(split.test), blend.predict_proba(split.test))
    np.testing.assert_array_equal(loaded.contributions(split.test)[0], blend.contributions(split.test)[0])


def test_an_old_model_format_asks_for_retraining(blend: ChurnModel, tmp_path: Path) -> None:
    folder = blend.save(tmp_path / "old")
    spec = (folder / "churn_model.json").read_text().replace('"format_version": 3', '"format_version": 2')
    (folder / "churn_model.json").write_text(spec)
    with pytest.raises(ValueError, match="format 2.*retrain"):
        ChurnModel.load(folder)


def test_importance_ranks_every_feature(blend: ChurnModel, split: TimeSplit) -> None:
    importance = blend.importance(split.test)
    assert set(importance.index) == set(blend.feature_names)
    assert importance.is_monotonic_decreasing
    assert importance.index[0] in {"overdue_ratio", "open_complaints", "orders_trend_90d", "days_since_last_order", PRIOR}


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, 20_000)
    y = (rng.random(margin.size) < 1 / (1 + np.exp(-(0.5 * margin - 1.0)))).astype(float)
    cal = PlattCalibrator.fit(margin, y)
    assert cal.slope == pytest.approx(0.5, abs=0.05)
    assert cal.intercept == pytest.approx(-1.0, abs=0.08)
    assert pd.Series(cal(margin)).between(0, 1).all()
