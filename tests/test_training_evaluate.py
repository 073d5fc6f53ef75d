"""Test-period metrics: lift and capture, the profit curve and EMP, calibration error, tiers, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from training import evaluate as ev

Y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0])
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_lift_and_capture_on_a_hand_counted_ranking() -> None:
    out = ev.lift_and_capture(Y, SCORE, fractions=(0.1, 0.2, 0.3))
    assert out["precision_top10"] == 1.0
    assert out["lift_top10"] == pytest.approx(1.0 / 0.3)
    assert out["capture_top10"] == pytest.approx(1 / 3)
    assert out["capture_top20"] == pytest.approx(1 / 3)
    assert out["capture_top30"] == pytest.approx(2 / 3)
    assert out["lift_top30"] == pytest.approx((2 / 3) / 0.3)


def test_profit_curve_by_hand() -> None:
    params = ev.ProfitParams(contact_cost=10.0, incentive_cost=5.0, success_rate=0.5)
    values = np.full(len(Y), 100.0)
    curve = ev.profit_curve(Y, SCORE, values, params)
    # top 1: a churner kept half the time: 0.5 * (100 - 5) - 10; top 2 adds a loyal one taking the offer: -(10 + 5)
    assert curve.profit[0] == 0.0
    assert curve.profit[1] == pytest.approx(0.5 * 95 - 10)
    assert curve.profit[2] == pytest.approx(0.5 * 95 - 10 - 15)
    assert curve.profit[3] == pytest.approx(2 * (0.5 * 95 - 10) - 15)
    metrics = ev.profit_metrics(Y, SCORE, values, params)
    assert metrics["profit_max"] == pytest.approx(curve.profit.max())
    assert metrics["profit_best_fraction"] == pytest.approx(0.3)


def test_emp_rewards_a_better_ranking_and_never_goes_below_zero() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.15).astype(int)
    good = y + rng.normal(0, 0.6, y.size)
    random = rng.random(y.size)
    values = rng.lognormal(6, 0.5, y.size)
    params = ev.ProfitParams(contact_cost=40.0)
    emp_good = ev.profit_metrics(y, good, values, params)["emp"]
    emp_random = ev.profit_metrics(y, random, values, params)["emp"]
    assert emp_good > emp_random >= 0.0
    assert 0.0 <= ev.profit_metrics(y, good, values, params)["emp_fraction"] <= 1.0


def test_customer_value_uses_revenue_when_present() -> None:
    params = ev.ProfitParams(value_fraction=0.25, default_value=7.0)
    frame = pd.DataFrame({"revenue_365d": [400.0, np.nan, -50.0]})
    np.testing.assert_allclose(ev.customer_values(frame, params), [100.0, 0.0, 0.0])
    np.testing.assert_allclose(ev.customer_values(pd.DataFrame({"x": [1, 2]}), params), [7.0, 7.0])


def test_calibration_error_is_zero_for_calibrated_and_large_for_shifted_probabilities() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.6, 50_000)
    y = (rng.random(p.size) < p).astype(int)
    assert ev.expected_calibration_error(y, p) < 0.01
    assert ev.expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15
    curve = ev.reliability_curve(y, p, bins=10)
    assert len(curve) == 10 and curve["count"].sum() == p.size


def test_probability_metrics_and_tiers() -> None:
    frame = pd.DataFrame({"abc_class": ["A", "A", "B", "B", "C", "C", None, "C", "B", "A"]})
    proba = np.clip(SCORE, 0.01, 0.99)
    metrics = ev.probability_metrics(Y, proba)
    assert set(metrics) >= {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "base_rate"}
    tiers = ev.tier_metrics(frame, Y, proba)
    assert set(tiers) == {"A", "B", "C", "unknown"}
    assert tiers["A"]["n"] == 3
    assert np.isnan(tiers["unknown"]["roc_auc"])
    assert ev.tier_metrics(frame.rename(columns={"abc_class": "x"}), Y, proba) == {}


def test_plots_are_figures() -> None:
    scores = {"model": SCORE, "rule": SCORE[::-1]}
    values = np.full(len(Y), 100.0)
    figures = [
        ev.plot_roc(Y, scores),
        ev.plot_precision_recall(Y, scores),
        ev.plot_calibration(Y, {"calibrated": SCORE}),
        ev.plot_gain(Y, scores),
        ev.plot_profit(Y, scores, values, ev.ProfitParams()),
        ev.plot_importance(pd.Series([0.3, 0.1], index=["a", "b"])),
    ]
    assert all(isinstance(fig, Figure) for fig in figures)


def test_value_ranked_profit_contacts_the_costly_losses_first() -> None:
    y = np.array([1, 1, 0, 0])
    proba = np.array([0.9, 0.6, 0.2, 0.1])
    values = np.array([10.0, 1000.0, 5.0, 5.0])
    params = ev.ProfitParams(contact_cost=20.0, success_rate=0.5)
    metrics = ev.evaluate_scores(y, proba, values, params)
    assert metrics["value_ranked_profit_best_fraction"] == pytest.approx(0.25)
    assert metrics["value_ranked_profit_max"] == pytest.approx(0.5 * 1000 - 20)
    assert metrics["profit_max"] == pytest.approx(0.5 * 1010 - 40)


def test_the_margins_plot_draws_an_interval_that_misses_its_point() -> None:
    table = pd.DataFrame(
        {
            "as_of": ["2024-01-01", "2024-02-01"], "subset": ["all", "all"], "method": ["model", "model"],
            "margin_roc_auc": [0.0, 0.01], "margin_roc_auc_low": [0.001, -0.01], "margin_roc_auc_high": [0.004, 0.02],
            "margin_pr_auc": [0.0, 0.02], "margin_pr_auc_low": [-0.002, -0.01], "margin_pr_auc_high": [-0.001, 0.03],
        }
    )
    fig = ev.plot_margins(table)
    assert len(fig.axes) == 2 and all(ax.get_title().endswith("margin over the best baseline") for ax in fig.axes)
