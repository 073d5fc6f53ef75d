"""BG/NBD and MBG/NBD: parameter recovery, probabilities checked against simulation, summaries without leakage."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.btyd import (
    FIT_SAMPLE_SIZE,
    BetaGeoModel,
    BTYDParams,
    _expected_given_alive_quadrature,
    _figures,
    btyd_feature_names,
    btyd_features,
    fit_on_sample,
    rfm_summary,
    simulate,
    stratified_sample,
)
from features.dataset import CRMDataset

TRUE = BTYDParams(r=0.8, alpha=4.0, a=0.7, b=2.5)
HORIZON = 13.0


@pytest.fixture(scope="module", params=["bgnbd", "mbgnbd"])
def fitted(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame, BetaGeoModel]:
    variant = request.param
    ages = np.random.default_rng(1).uniform(26, 78, 3000)
    data = simulate(3000, ages, TRUE, variant=variant, horizon=HORIZON, seed=7)
    model = BetaGeoModel(variant=variant, penalizer=0.0).fit(data["frequency"], data["recency"], data["T"])
    return variant, data, model


def test_recovers_the_parameters_it_was_simulated_from(fitted: tuple[str, pd.DataFrame, BetaGeoModel]) -> None:
    _, _, model = fitted
    got = model.params_
    assert model.converged_ and model.boundary_ == []
    assert got.r == pytest.approx(TRUE.r, rel=0.2)
    assert got.alpha == pytest.approx(TRUE.alpha, rel=0.25)
    assert got.a / (got.a + got.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), abs=0.06)


def test_predictions_match_what_the_simulated_customers_did_next(fitted: tuple[str, pd.DataFrame, BetaGeoModel]) -> None:
    variant, data, _ = fitted
    model = BetaGeoModel(variant=variant)  # type: ignore[arg-type]
    model.params_ = TRUE
    args = (data["frequency"], data["recency"], data["T"])
    n = len(data)
    silent = (data["future_orders"] == 0).to_numpy()
    assert model.p_no_order(HORIZON, *args).mean() == pytest.approx(silent.mean(), abs=4 * silent.std() / np.sqrt(n))
    future = data["future_orders"].to_numpy()
    assert model.expected_orders(HORIZON, *args).mean() == pytest.approx(future.mean(), abs=4 * future.std() / np.sqrt(n))
    alive = data["alive"].to_numpy()
    assert model.p_alive(*args).mean() == pytest.approx(alive.mean(), abs=4 * alive.std() / np.sqrt(n))


def test_probabilities_are_probabilities_and_move_the_right_way(fitted: tuple[str, pd.DataFrame, BetaGeoModel]) -> None:
    variant, _, model = fitted
    freq = np.arange(0, 30, dtype=float)
    recent = np.where(freq > 0, 50.0, 0.0)
    age = np.full_like(freq, 52.0)
    p0 = model.p_no_order(HORIZON, freq, recent, age)
    alive = model.p_alive(freq, recent, age)
    assert np.all((p0 >= 0) & (p0 <= 1)) and np.all((alive >= 0) & (alive <= 1))
    assert np.all(np.diff(p0[1:]) < 0), "more orders with the same recency: less likely to stay silent"
    silence = np.linspace(0, 40, 9)
    x = np.full_like(silence, 8.0)
    p_silent = model.p_no_order(HORIZON, x, 52.0 - silence, np.full_like(silence, 52.0))
    assert np.all(np.diff(p_silent) > 0), "a longer silence makes no order more likely"
    assert np.all(np.diff(model.p_alive(x, 52.0 - silence, np.full_like(silence, 52.0))) < 0)
    assert model.p_no_order(0.0, freq, recent, age) == pytest.approx(np.ones_like(freq))
    assert model.p_no_order(1e15, freq, recent, age) == pytest.approx(1 - alive, abs=1e-6)
    if variant == "bgnbd":
        assert model.p_alive([0.0], [0.0], [52.0])[0] == 1.0
    else:
        assert model.p_alive([0.0], [0.0], [52.0])[0] < 1.0


@pytest.mark.parametrize("variant", ["bgnbd", "mbgnbd"])
@pytest.mark.parametrize("a", [0.4, 3.0])
def test_expected_orders_closed_form_matches_quadrature(variant: str, a: float) -> None:
    model = BetaGeoModel(variant=variant)  # type: ignore[arg-type]
    model.params_ = BTYDParams(r=0.6, alpha=5.0, a=a, b=1.8)
    x = np.array([0, 1, 3, 10, 40], dtype=float)
    tx = np.array([0, 5, 20, 30, 49], dtype=float)
    age = np.full_like(x, 52.0)
    closed = model.expected_orders(HORIZON, x, tx, age)
    quad = model.p_alive(x, tx, age) * _expected_given_alive_quadrature(HORIZON, x, age, 0.6, 5.0, a, 1.8 + (variant == "mbgnbd"))
    assert closed == pytest.approx(quad, rel=1e-6)


def test_degenerate_fit_is_flagged_not_hidden() -> None:
    rng = np.random.default_rng(3)
    ages = rng.uniform(10, 40, 800)
    data = simulate(800, ages, BTYDParams(r=1.0, alpha=3.0, a=0.01, b=50.0), variant="bgnbd", seed=3)
    model = BetaGeoModel(variant="bgnbd", penalizer=0.1).fit(data["frequency"], data["recency"], data["T"])
    assert model.converged_
    assert set(model.boundary_) & {"a->0", "b->inf", "b->0"}
    out = model.expected_orders(HORIZON, data["frequency"], data["recency"], data["T"])
    assert np.all(np.isfinite(out)) and np.all(out >= 0)


def test_bad_summaries_are_refused() -> None:
    model = BetaGeoModel()
    with pytest.raises(ValueError, match="recency must be between 0 and T"):
        model.fit([1, 2], [5.0, 9.0], [4.0, 10.0])
    with pytest.raises(ValueError, match="recency must be 0"):
        model.fit([0], [1.0], [4.0])
    with pytest.raises(ValueError, match="variant"):
        BetaGeoModel(variant="pareto")  # type: ignore[arg-type]


def _orders() -> pd.DataFrame:
    rows = [
        ("o1", "A", "2024-01-01", 100.0),
        ("o2", "A", "2024-01-01", 50.0),
        ("o3", "A", "2024-01-15", 80.0),
        ("o4", "A", "2024-01-20", -30.0),
        ("o5", "B", "2024-01-08", 10.0),
        ("o6", "B", "2024-03-01", 10.0),
        ("o7", "C", "2024-02-26", 10.0),
    ]
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


def test_rfm_summary_in_pandas_and_in_the_engine_agree_and_ignore_returns_and_the_future() -> None:
    as_of = date(2024, 2, 26)
    summary = rfm_summary(_orders(), as_of)
    assert list(summary.index) == ["A", "B"]
    assert summary.loc["A", "frequency"] == 1 and summary.loc["A", "orders"] == 3
    assert summary.loc["A", "recency"] == pytest.approx(2.0)
    assert summary.loc["A", "T"] == pytest.approx(8.0)
    assert summary.loc["B", "frequency"] == 0 and summary.loc["B", "recency"] == 0.0
    by_order = rfm_summary(_orders(), as_of, count_by="order")
    assert by_order.loc["A", "frequency"] == 2
    ds = CRMDataset.from_frames({"orders": _orders()}, as_of=date(2024, 12, 31))
    in_engine = rfm_summary(ds.table("orders"), as_of)
    pd.testing.assert_frame_equal(in_engine[["frequency", "recency", "T", "orders"]], summary[["frequency", "recency", "T", "orders"]], check_names=False, check_index_type=False)


def test_btyd_features_are_point_in_time() -> None:
    ages = np.random.default_rng(5).uniform(20, 60, 400)
    sim = simulate(400, ages, TRUE, variant="mbgnbd", seed=5)
    end = pd.Timestamp("2024-06-01")
    rows = []
    rng = np.random.default_rng(6)
    for i, r in sim.iterrows():
        first = end - pd.Timedelta(weeks=float(r["T"]))
        days = [first] + [first + pd.Timedelta(weeks=float(w)) for w in np.sort(rng.uniform(0, r["recency"], int(r["frequency"])))]
        if r["frequency"] > 0:
            days[-1] = first + pd.Timedelta(weeks=float(r["recency"]))
        rows += [(f"{i}-{k}", f"c{i}", d.normalize(), 20.0) for k, d in enumerate(days)]
    orders = pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "amount"])
    later = pd.DataFrame([("late-1", "c0", end + pd.Timedelta(days=3), 99.0), ("late-2", "new", end, 5.0)], columns=orders.columns)
    as_of = end.date()
    features = btyd_features(orders, as_of, 90)
    with_future = btyd_features(pd.concat([orders, later], ignore_index=True), as_of, 90, customers=list(features.index) + ["new"])
    assert list(features.columns) == btyd_feature_names(90)
    pd.testing.assert_frame_equal(features, with_future.loc[features.index])
    assert with_future.loc["new"].isna().all()
    assert features.attrs["converged"]
    assert features.notna().all().all()
    assert ((features["btyd_p_no_order_90d"] >= 0) & (features["btyd_p_no_order_90d"] <= 1)).all()


def test_further_horizons_come_from_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    orders = _orders()
    as_of = date(2024, 2, 26)
    one = btyd_features(orders, as_of, 90)
    fits = []
    fit = BetaGeoModel.fit

    def counted_fit(self: BetaGeoModel, *args: pd.Series, **kwargs: object) -> BetaGeoModel:
        fits.append(args)
        return fit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BetaGeoModel, "fit", counted_fit)
    three = btyd_features(orders, as_of, 90, no_order_horizons=(30, 180, 90, 30))
    assert len(fits) == 1
    assert btyd_feature_names(90, (30, 180, 90, 30)) == [*btyd_feature_names(90), "btyd_p_no_order_30d", "btyd_p_no_order_180d"]
    assert list(three.columns) == btyd_feature_names(90, (30, 180))
    pd.testing.assert_frame_equal(three[one.columns], one)
    summary = rfm_summary(orders, as_of)
    model = fit(BetaGeoModel(variant="mbgnbd", penalizer=0.1), summary["frequency"], summary["recency"], summary["T"])
    for days in (30, 180):
        expected = model.p_no_order(days / 7.0, summary["frequency"], summary["recency"], summary["T"])
        np.testing.assert_allclose(three[f"btyd_p_no_order_{days}d"].to_numpy(), expected, rtol=1e-12)
    assert (three["btyd_p_no_order_30d"] >= three["btyd_p_no_order_90d"]).all()
    assert (three["btyd_p_no_order_90d"] >= three["btyd_p_no_order_180d"]).all()


def test_the_fit_on_a_stratified_sample_agrees_with_the_fit_on_everyone() -> None:
    """FIT_SAMPLE_SIZE of 100,000 customers: parameters within 5%, probabilities within 0.01, expected orders within 5%."""
    ages = np.round(np.random.default_rng(8).uniform(1, 156, 100_000) * 7) / 7  # whole days, in weeks, as rfm_summary gives
    data = simulate(100_000, ages, BTYDParams(r=0.87, alpha=1.0, a=0.06, b=0.65), variant="mbgnbd", seed=9)
    data["recency"] = np.minimum(np.round(data["recency"] * 7) / 7, data["T"])
    full = BetaGeoModel().fit(data["frequency"], data["recency"], data["T"])
    names = btyd_feature_names(90, (30, 180))
    horizons = [90 / 7, 30 / 7, 180 / 7]
    everyone = _figures(full, data, names, horizons)
    for seed in (0, 1):
        sampled = fit_on_sample(data, BetaGeoModel(), seed=seed)
        assert sampled.n_customers_ == pytest.approx(FIT_SAMPLE_SIZE, rel=0.01) and sampled.converged_
        assert sampled.params_.as_tuple() == pytest.approx(full.params_.as_tuple(), rel=0.05)
        figures = _figures(sampled, data, names, horizons)
        assert (figures[names[1:]] - everyone[names[1:]]).abs().max().max() < 0.01
        assert ((figures[names[0]] - everyone[names[0]]).abs() / everyone[names[0]].clip(lower=0.1)).max() < 0.05


def test_a_warm_start_ends_at_the_cold_start_optimum(fitted: tuple[str, pd.DataFrame, BetaGeoModel]) -> None:
    variant, data, cold = fitted
    nearby = BTYDParams(*(value * 1.3 for value in cold.params_.as_tuple()))
    warm = BetaGeoModel(variant=variant, penalizer=0.0).fit(data["frequency"], data["recency"], data["T"], start=nearby)  # type: ignore[arg-type]
    assert warm.converged_
    assert warm.params_.as_tuple() == pytest.approx(cold.params_.as_tuple(), rel=1e-5)


def test_stratified_sample_keeps_every_stratum_and_weighs_it_back() -> None:
    rng = np.random.default_rng(4)
    frequency = np.concatenate([np.zeros(9000), rng.integers(1, 200, 1000)])
    ages = rng.uniform(1, 100, 10_000)
    chosen, weights = stratified_sample(frequency, ages, 1000, seed=3)
    assert len(chosen) == pytest.approx(1000, abs=30) and len(np.unique(chosen)) == len(chosen)
    assert weights.sum() == pytest.approx(10_000)
    assert weights[frequency[chosen] == 0].sum() == pytest.approx(9000)
    assert np.array_equal(chosen, stratified_sample(frequency, ages, 1000, seed=3)[0])
    everyone, ones = stratified_sample(frequency, ages, 20_000, seed=3)
    assert len(everyone) == 10_000 and (ones == 1).all()
