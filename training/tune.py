"""Optuna search over LightGBM parameters, scored by PR-AUC on the validation period.

TPE sampling (seeded), the median pruner fed by the validation score during boosting, a trial
budget and a time budget. The first trial is always the default parameter set, so the search can
only improve on it. The same data, seed and budgets give the same result as long as the trial
budget, not the time budget, ends the search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import average_precision_score

from training.model import fit_booster, lgb_params, make_dataset

PRUNE_EVERY = 10
WARMUP_ROUNDS = 30


@dataclass
class TuneResult:
    """What the search found.

    Attributes:
        params: the best LightGBM parameters (full set, ready for :func:`lightgbm.train`).
        tuned: only the searched parameters of the best trial.
        valid_pr_auc: the best trial's PR-AUC on the validation period.
        best_iteration: trees in the best trial's model.
        booster: the best trial's booster (trimmed to its best iteration).
        trials: one dict per trial (number, state, value, params, seconds).
        seconds: wall time of the search.
    """

    params: dict[str, Any]
    tuned: dict[str, Any]
    valid_pr_auc: float
    best_iteration: int
    booster: lgb.Booster
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_complete(self) -> int:
        """Trials that ran to the end."""
        return sum(1 for t in self.trials if t["state"] == "COMPLETE")

    @property
    def n_pruned(self) -> int:
        """Trials stopped early by the pruner."""
        return sum(1 for t in self.trials if t["state"] == "PRUNED")


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """The parameters Optuna samples for one trial.

    Args:
        trial: the Optuna trial.

    Returns:
        LightGBM parameter overrides.
    """
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 50.0, log=True),
    }


DEFAULT_TRIAL: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "lambda_l2": 1.0,
    "lambda_l1": 0.001,
    "cat_smooth": 10.0,
}


def _pruning_callback(trial: optuna.Trial) -> Callable[[lgb.callback.CallbackEnv], None]:
    def callback(env: lgb.callback.CallbackEnv) -> None:
        step = env.iteration + 1
        if step % PRUNE_EVERY:
            return
        for _data, metric, value, *_ in env.evaluation_result_list or []:
            if metric == "average_precision":
                trial.report(float(value), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {step} (validation PR-AUC {value:.4f})")
                return

    callback.order = 25  # type: ignore[attr-defined]
    return callback


def tune(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    *,
    trials: int = 20,
    timeout_s: float | None = 90.0,
    seed: int = 42,
    num_threads: int = 2,
    progress: Callable[[str], None] | None = None,
    init_scores: tuple[np.ndarray, np.ndarray] | None = None,
    short_history: bool = False,
) -> TuneResult:
    """Search LightGBM parameters by validation PR-AUC, with early stopping in every trial.

    Args:
        train_x: prepared training features.
        train_y: training labels (0/1).
        valid_x: prepared validation features.
        valid_y: validation labels.
        trials: most trials (at least 1: the default parameters).
        timeout_s: stop starting new trials after this many seconds (``None``: no limit).
        seed: seed of the sampler and of LightGBM.
        num_threads: LightGBM threads.
        progress: called with a short message after each trial.
        init_scores: ``(train, valid)`` initial margins (the prior's logit); the validation score
            is then taken on the trees' margin plus the prior.
        short_history: search small, strongly regularised trees (:func:`short_history_space`),
            starting from :data:`SHORT_HISTORY_TRIAL`, as suits a few weeks of snapshots.

    Returns:
        The best parameters, its booster (the trees only) and the trial history.
    """
    started = time.perf_counter()
    train_init, valid_init = init_scores if init_scores is not None else (None, np.zeros(len(valid_y)))
    train_set = make_dataset(train_x, train_y, seed=seed, num_threads=num_threads, init_score=train_init)
    valid_set = make_dataset(valid_x, valid_y, seed=seed, num_threads=num_threads, init_score=valid_init, reference=train_set)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(trials=trials, seed=seed, short_history=short_history)
    search = _Search(train_set, valid_set, valid_x, valid_y, valid_init, short_history_space if short_history else search_space, seed, num_threads)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            shown = f"{search.best['score']:.4f}" if search.best else "-"
            progress(f"trial {len(study.trials)}/{trials} {trial.state.name.lower()}; best validation PR-AUC {shown}")

    try:
        study.optimize(search.objective, n_trials=max(1, trials), timeout=timeout_s, callbacks=[report], gc_after_trial=False)
    finally:
        optuna.logging.set_verbosity(previous)
    best = search.best
    return TuneResult(
        params=best["params"],
        tuned=best["tuned"],
        valid_pr_auc=float(best["score"]),
        best_iteration=int(best["booster"].num_trees()),
        booster=best["booster"],
        trials=_history(study),
        seconds=time.perf_counter() - started,
    )


def _study(*, trials: int, seed: int, short_history: bool) -> optuna.Study:
    """A maximising study: seeded TPE, the median pruner, and the default (or short-history) parameters as its first trial."""
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(1, trials // 3)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=WARMUP_ROUNDS, interval_steps=PRUNE_EVERY)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name="churn-lightgbm")
    study.enqueue_trial(SHORT_HISTORY_TRIAL if short_history else DEFAULT_TRIAL)
    return study


@dataclass
class _Search:
    """One search's data and the best trial so far (``best``: score, booster, params, tuned; empty before the first trial)."""

    train_set: lgb.Dataset
    valid_set: lgb.Dataset
    valid_x: pd.DataFrame
    valid_y: np.ndarray
    valid_init: np.ndarray
    space: Callable[[optuna.Trial], dict[str, Any]]
    seed: int
    num_threads: int
    best: dict[str, Any] = field(default_factory=dict)

    def objective(self, trial: optuna.Trial) -> float:
        """Fit the trial's parameters with early stopping and pruning; its score is the validation PR-AUC."""
        params = lgb_params(self.space(trial), seed=self.seed, num_threads=self.num_threads)
        t0 = time.perf_counter()
        booster = fit_booster(self.train_set, self.valid_set, params, callbacks=[_pruning_callback(trial)])
        score = _average_precision(self.valid_y, np.asarray(booster.predict(self.valid_x, raw_score=True), dtype=float) + self.valid_init)
        trial.set_user_attr("best_iteration", booster.num_trees())
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        if not self.best or score > self.best["score"]:
            self.best.update(score=score, booster=booster, params=params, tuned=dict(trial.params))
        return score


def _history(study: optuna.Study) -> list[dict[str, Any]]:
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "best_iteration": t.user_attrs.get("best_iteration"),
            "seconds": t.user_attrs.get("seconds"),
        }
        for t in study.trials
    ]


SHORT_HISTORY_TRIAL: dict[str, Any] = {
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "lambda_l2": 5.0,
    "lambda_l1": 0.001,
    "cat_smooth": 10.0,
}
"""The strongly regularised first trial on a short history: a few months of data, small trees."""


def short_history_space(trial: optuna.Trial) -> dict[str, Any]:
    """The search space on a short history: small, regularised trees around :data:`SHORT_HISTORY_TRIAL`.

    Args:
        trial: the Optuna trial.

    Returns:
        LightGBM parameter overrides.
    """
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.015, 0.08, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 15, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 50, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.6, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1.0, 30.0, log=True),
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 50.0, log=True),
    }


def _average_precision(y: np.ndarray, score: np.ndarray) -> float:
    return float(average_precision_score(np.asarray(y, dtype=int), np.asarray(score, dtype=float)))
