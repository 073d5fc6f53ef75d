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

from training.model import fit_booster, lgb_params, make_datasets

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
        for _data, metric, value, *_ in env.evaluation_result_list:
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

    Returns:
        The best parameters, its booster (the trees only) and the trial history.
    """
    started = time.perf_counter()
    datasets = make_datasets(train_x, train_y, valid_x, valid_y, seed=seed, num_threads=num_threads, init_scores=init_scores)
    valid_init = np.zeros(len(valid_y)) if init_scores is None else np.asarray(init_scores[1], dtype=float)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(1, trials // 3)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=WARMUP_ROUNDS, interval_steps=PRUNE_EVERY)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name="churn-lightgbm")
    study.enqueue_trial(DEFAULT_TRIAL)
    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = lgb_params(search_space(trial), seed=seed, num_threads=num_threads)
        t0 = time.perf_counter()
        booster = fit_booster(train_x, train_y, valid_x, valid_y, params, callbacks=[_pruning_callback(trial)], datasets=datasets)
        score = _average_precision(valid_y, booster.predict(valid_x, raw_score=True) + valid_init)
        trial.set_user_attr("best_iteration", booster.num_trees())
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        if not best or score > best["score"]:
            best.update(score=score, booster=booster, params=params, tuned=dict(trial.params))
        return score

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            done = len(study.trials)
            shown = f"{best['score']:.4f}" if best else "-"
            progress(f"trial {done}/{trials} {trial.state.name.lower()}; best validation PR-AUC {shown}")

    try:
        study.optimize(objective, n_trials=max(1, trials), timeout=timeout_s, callbacks=[report], gc_after_trial=False)
    finally:
        optuna.logging.set_verbosity(previous)
    history = _history(study)
    return TuneResult(
        params=best["params"],
        tuned=best["tuned"],
        valid_pr_auc=float(best["score"]),
        best_iteration=int(best["booster"].num_trees()),
        booster=best["booster"],
        trials=history,
        seconds=time.perf_counter() - started,
    )


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
"""The strongly regularised defaults of the short-history (customer-cv) mode: a few months of data, small trees."""


def short_history_space(trial: optuna.Trial) -> dict[str, Any]:
    """The search space of the short-history mode: small, regularised trees around :data:`SHORT_HISTORY_TRIAL`.

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


@dataclass
class CVResult:
    """What the cross-validated search found.

    Attributes:
        params: the best LightGBM parameters (full set).
        tuned: only the searched parameters of the best trial.
        valid_pr_auc: the best trial's pooled out-of-fold PR-AUC.
        best_iterations: the early-stopped trees of each fold's booster in the best trial.
        out_of_fold: the best trial's out-of-fold margins (prior included), one per row.
        trials: one dict per trial.
        seconds: wall time of the search.
    """

    params: dict[str, Any]
    tuned: dict[str, Any]
    valid_pr_auc: float
    best_iterations: list[int]
    out_of_fold: np.ndarray
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

    @property
    def rounds(self) -> int:
        """Trees for the refit on all rows: the mean of the folds' early-stopped trees."""
        return max(1, int(round(float(np.mean(self.best_iterations)))))


def tune_cv(
    x: pd.DataFrame,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    init_score: np.ndarray | None = None,
    trials: int = 20,
    timeout_s: float | None = 90.0,
    seed: int = 42,
    num_threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> CVResult:
    """Search LightGBM parameters by out-of-fold PR-AUC over folds of customers (the short-history mode).

    Each trial trains one booster per fold, early-stopped on that fold's held-out customers, and
    is scored by the PR-AUC of the pooled held-out margins. The first trial is
    :data:`SHORT_HISTORY_TRIAL`; the median pruner compares trials fold by fold.

    Args:
        x: prepared features of all rows.
        y: labels.
        folds: ``(fit, held_out)`` boolean row masks.
        init_score: initial margins (the prior's logit), or None.
        trials: most trials (at least 1).
        timeout_s: stop starting new trials after this many seconds (``None``: no limit).
        seed: seed of the sampler and of LightGBM.
        num_threads: LightGBM threads.
        progress: called with a short message after each trial.

    Returns:
        The best parameters, the folds' trees and out-of-fold margins, and the trial history.
    """
    started = time.perf_counter()
    y = np.asarray(y, dtype=int)
    init = np.zeros(len(y)) if init_score is None else np.asarray(init_score, dtype=float)
    datasets = [
        make_datasets(x.loc[fit], y[fit], x.loc[held], y[held], seed=seed, num_threads=num_threads, init_scores=(init[fit], init[held]))
        for fit, held in folds
    ]
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(1, trials // 3)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name="churn-lightgbm-cv")
    study.enqueue_trial(SHORT_HISTORY_TRIAL)
    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = lgb_params(short_history_space(trial), seed=seed, num_threads=num_threads)
        t0 = time.perf_counter()
        margin = np.zeros(len(y))
        iterations = []
        for j, ((fit, held), pair) in enumerate(zip(folds, datasets, strict=True)):
            booster = fit_booster(x.loc[fit], y[fit], x.loc[held], y[held], params, early_stopping_rounds=50, datasets=pair)
            margin[held] = booster.predict(x.loc[held], raw_score=True) + init[held]
            iterations.append(int(booster.num_trees()))
            done = np.any([h for _f, h in folds[: j + 1]], axis=0)
            trial.report(_average_precision(y[done], margin[done]), j)
            if j < len(folds) - 1 and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {j + 1}")
        score = _average_precision(y, margin)
        trial.set_user_attr("best_iteration", int(round(float(np.mean(iterations)))))
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        if not best or score > best["score"]:
            best.update(score=score, params=params, tuned=dict(trial.params), iterations=iterations, margin=margin.copy())
        return score

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            shown = f"{best['score']:.4f}" if best else "-"
            progress(f"trial {len(study.trials)}/{trials} {trial.state.name.lower()}; best out-of-fold PR-AUC {shown}")

    try:
        study.optimize(objective, n_trials=max(1, trials), timeout=timeout_s, callbacks=[report], gc_after_trial=False)
    finally:
        optuna.logging.set_verbosity(previous)
    return CVResult(
        params=best["params"],
        tuned=best["tuned"],
        valid_pr_auc=float(best["score"]),
        best_iterations=best["iterations"],
        out_of_fold=best["margin"],
        trials=_history(study),
        seconds=time.perf_counter() - started,
    )


def _average_precision(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(np.asarray(y, dtype=int), np.asarray(score, dtype=float)))
