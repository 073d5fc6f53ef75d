"""Direct tests of :func:`training.tune.tune` on a small synthetic problem (two features carry the label)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from training.tune import DEFAULT_TRIAL, SHORT_HISTORY_TRIAL, TuneResult, tune

TRIALS = 4


def _rows(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    x = pd.DataFrame({f"f{j}": rng.normal(size=n) for j in range(4)})
    logit = 1.5 * x["f0"] - 1.0 * x["f1"] - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return x, y


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    train_x, train_y = _rows(800, rng)
    valid_x, valid_y = _rows(400, rng)
    return train_x, train_y, valid_x, valid_y


@pytest.fixture(scope="module")
def result(data: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]) -> TuneResult:
    return tune(*data, trials=TRIALS, timeout_s=None, seed=1, num_threads=1)


def test_the_first_trial_is_the_default_parameter_set(result: TuneResult) -> None:
    assert result.trials[0]["params"] == pytest.approx(DEFAULT_TRIAL)
    assert len(result.trials) == TRIALS


def test_the_result_is_the_best_trial_and_its_booster_scores_what_it_says(
    result: TuneResult, data: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]
) -> None:
    _, _, valid_x, valid_y = data
    finished = [t for t in result.trials if t["value"] is not None]
    best = max(finished, key=lambda t: t["value"])
    assert 0 < best["number"] < TRIALS - 1  # with this seed neither the first nor the last trial wins, so both mistakes show
    assert result.valid_pr_auc == pytest.approx(best["value"])
    assert result.tuned == best["params"]
    assert result.best_iteration == best["best_iteration"] == result.booster.num_trees()
    rescored = average_precision_score(valid_y, result.booster.predict(valid_x, raw_score=True))
    assert rescored == pytest.approx(result.valid_pr_auc)
    assert result.valid_pr_auc > valid_y.mean() + 0.1  # the signal is found, well above the base rate


def test_the_same_seed_and_trial_budget_give_the_same_search(
    result: TuneResult, data: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]
) -> None:
    again = tune(*data, trials=TRIALS, timeout_s=None, seed=1, num_threads=1)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials]
    assert again.valid_pr_auc == result.valid_pr_auc


def test_a_short_history_starts_from_its_own_trial_and_reports_each_trial(
    data: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray],
) -> None:
    messages: list[str] = []
    short = tune(*data, trials=2, timeout_s=None, seed=1, num_threads=1, short_history=True, progress=messages.append)
    assert short.trials[0]["params"] == pytest.approx(SHORT_HISTORY_TRIAL)
    assert short.params["num_leaves"] <= 15
    assert [m.split(" ")[1] for m in messages] == ["1/2", "2/2"]
