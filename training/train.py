"""One training run, end to end: labelled snapshots, time split, baselines, tuned LightGBM,
calibration, test metrics and plots, MLflow run, registration and champion/challenger decision.

:func:`train` reads a CRM dataset; :func:`train_frame` does the rest on an already labelled frame
(what tests and notebooks use). Neither writes anywhere but the MLflow store it is given.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from features.dataset import DataError
from training import evaluate as ev
from training.baselines import Baseline, fit_baselines
from training.dataset import LABEL, CustomerFolds, SplitConfig, TimeSplit, matured, split_for_training
from training.model import ChurnModel, PlattCalibrator, category_lists, fit_booster, fit_rounds, lgb_params, prepare_features, prior_logit
from training.tune import CVResult, TuneResult, tune, tune_cv

if TYPE_CHECKING:
    from features.dataset import CRMDataset

NUM_THREADS = 2
TUNE_MAX_ROWS = 300_000
IMPORTANCE_ROWS = 3_000

Progress = Callable[[str], None]
PriorOption = bool | Literal["auto"]
PRIOR_FEATURE = "btyd_p_no_order_90d"


@dataclass
class TrainResult:
    """What a training run produced and decided.

    Attributes:
        run_id: the MLflow run.
        experiment: the MLflow experiment name (``churn/<dataset>``).
        model_name: the registered model name.
        model_version: the registered version.
        promoted: whether it became ``champion``.
        reason: why it is champion or challenger.
        metrics: the model's test metrics (``roc_auc``, ``pr_auc``, ``brier``, ``lift_top10``, ``emp`` ...).
        baselines: baseline name to its test metrics.
        tiers: ABC class to the model's test metrics in that class.
        split: sizes, periods and churn rates of train, validation and test.
        model: the trained model.
        tracking_uri: where the run was logged.
        seconds: wall time of the run.
        tuning: the search: best parameters, validation PR-AUC, trees, trial counts and history.
    """

    run_id: str
    experiment: str
    model_name: str
    model_version: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    tiers: dict[str, dict[str, float]]
    split: dict[str, Any]
    model: ChurnModel
    tracking_uri: str
    seconds: float = 0.0
    tuning: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The registered version (same as ``model_version``)."""
        return self.model_version


def _default_tracking_uri() -> str:
    from churn.settings import default_tracking_uri

    return default_tracking_uri()


def _default_artifact_root() -> str:
    from churn.settings import PROJECT_ROOT

    return str(PROJECT_ROOT / "mlruns" / "artifacts")


def train(
    data: CRMDataset,
    *,
    horizon_days: int = 90,
    trials: int = 20,
    timeout_s: float | None = 90.0,
    as_of: date | None = None,
    seed: int = 42,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    model_name: str = "churn",
    progress: Progress | None = None,
    active_days: int = 365,
    split: SplitConfig | None = None,
    profit: ev.ProfitParams | None = None,
    btyd_prior: PriorOption = "auto",
) -> TrainResult:
    """Train, evaluate, log, register and (maybe) promote a churn model on a CRM dataset.

    Args:
        data: the CRM dataset.
        horizon_days: a customer is lost after this many days without an order.
        trials: Optuna trial budget.
        timeout_s: Optuna time budget in seconds (``None``: trials only). Reproducibility holds
            when the trial budget, not the time budget, ends the search.
        as_of: train as if today were this day (nothing dated on or after it is read, every label
            matured before it); default: the day after the newest order.
        seed: seed for tuning and LightGBM.
        tracking_uri: MLflow tracking URI; default: the project's ``mlruns/mlflow.db``.
        artifact_root: artifact folder for a local store; default: ``mlruns/artifacts``.
        model_name: registered model name.
        progress: called with one-line status messages.
        active_days: a customer is active when it ordered within this many days.
        split: sizes of the time split; defaults when ``None``.
        profit: campaign economics for the profit metrics; defaults when ``None``.
        btyd_prior: start the booster from the BG/NBD chance of no order (see :func:`train_frame`).

    Returns:
        The run's result.

    Raises:
        DataError: the data cannot give an honest model (too short, one class, too few customers).
    """
    from features.registry import CATEGORICAL, FEATURE_SET_VERSION, model_features
    from features.snapshot import build_training_set

    say = progress or (lambda _msg: None)
    end = as_of or data.end_date()
    known = data.cut(end) if as_of is not None else data
    say(f"building labelled snapshots up to {end} (horizon {horizon_days} days)")

    def snapshot_progress(i: int, n: int, t: date) -> None:
        say(f"snapshot {i}/{n} ({t})")

    frame = build_training_set(known, horizon_days=horizon_days, as_of=as_of, active_days=active_days, progress=snapshot_progress)
    features = model_features(known)
    categorical = [name for name in features if name in CATEGORICAL]
    return train_frame(
        frame,
        feature_names=features,
        categorical=categorical,
        horizon_days=horizon_days,
        as_of=end,
        dataset_name=data.name(),
        fingerprint=data.fingerprint(),
        data_start=known.start_date(),
        feature_set_version=FEATURE_SET_VERSION,
        trials=trials,
        timeout_s=timeout_s,
        seed=seed,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        progress=progress,
        active_days=active_days,
        split=split,
        profit=profit,
        btyd_prior=btyd_prior,
    )


def train_frame(
    frame: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    horizon_days: int,
    as_of: date,
    dataset_name: str,
    fingerprint: str,
    data_start: date | None = None,
    feature_set_version: str = "unversioned",
    trials: int = 20,
    timeout_s: float | None = 90.0,
    seed: int = 42,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    model_name: str = "churn",
    progress: Progress | None = None,
    active_days: int = 365,
    split: SplitConfig | None = None,
    profit: ev.ProfitParams | None = None,
    btyd_prior: PriorOption = "auto",
) -> TrainResult:
    """Everything :func:`train` does after the labelled snapshots are built.

    On a history long enough for the time split, the model is tuned and calibrated on the
    validation period and measured on the later test period (``evaluation`` "later-period"). On a
    shorter one (see :func:`training.dataset.split_for_training`) it is tuned by cross-validation
    over folds of customers with strongly regularised trees, calibrated on the out-of-fold margins,
    measured out of fold (``evaluation`` "customer-cv"), and refitted on every row with the
    folds' mean number of trees.

    Args:
        frame: labelled snapshots (``customer_id``, ``as_of``, ``churned``, features).
        feature_names: the model's features (columns of ``frame``).
        categorical: which of them are categorical.
        horizon_days: the label horizon.
        as_of: the training date ("today"); labels maturing later are dropped.
        dataset_name: names the MLflow experiment ``churn/<dataset_name>``.
        fingerprint: the dataset's fingerprint, logged and stored with the model.
        data_start: the oldest order date, for the logged date range.
        feature_set_version: the version of the feature set.
        trials: Optuna trial budget.
        timeout_s: Optuna time budget in seconds.
        seed: seed for tuning and LightGBM.
        tracking_uri: MLflow tracking URI; default: the project's store.
        artifact_root: artifact folder for a local store.
        model_name: registered model name.
        progress: called with one-line status messages.
        active_days: logged only (the population definition used to build ``frame``).
        split: sizes of the time split and the short-history policy.
        profit: campaign economics.
        btyd_prior: start the booster from ``logit(btyd_p_no_order_90d)`` (``init_score``) so that
            it learns corrections to the BG/NBD model; "auto" does so in the short-history mode
            (where it wins on real data) and not on a long history (where it does not help).
            Needs the ``btyd_p_no_order_90d`` feature.

    Returns:
        The run's result.

    Raises:
        DataError: no matured snapshot, one class of label, too little history or too few test customers.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    profit = profit or ev.ProfitParams()
    tracking_uri = tracking_uri or _default_tracking_uri()
    artifact_root = artifact_root or _default_artifact_root()
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise DataError(f"the labelled snapshots lack the feature column(s) {', '.join(missing)}")
    if LABEL not in frame.columns:
        raise DataError(f"the labelled snapshots have no {LABEL} column")

    ready = matured(frame, horizon_days=horizon_days, as_of=as_of)
    parts = split_for_training(ready, horizon_days=horizon_days, config=split, seed=seed)
    summary = parts.summary()
    use_prior = _use_prior(btyd_prior, parts, feature_names)
    summary["btyd_prior"] = use_prior
    if isinstance(parts, TimeSplit):
        say(
            f"split: train {summary['train_rows']} rows ({summary['train_first']} to {summary['train_last']}), "
            f"validation {summary['valid_rows']}, test {summary['test_rows']} ({summary['test_first']} to {summary['test_last']})"
        )
        fitted = _fit_later_period(parts, feature_names, categorical, use_prior=use_prior, trials=trials, timeout_s=timeout_s, seed=seed, progress=say)
    else:
        say(
            f"short history: {summary['train_rows']} rows over {summary['train_snapshots']} snapshot dates "
            f"({summary['train_first']} to {summary['train_last']}) are too few for the time split; "
            f"{parts.k} folds of customers instead (metrics cross-validated on customers)"
        )
        fitted = _fit_customer_cv(parts, feature_names, categorical, use_prior=use_prior, trials=trials, timeout_s=timeout_s, seed=seed, progress=say)
    booster, categories, calibrator, tuned = fitted.booster, fitted.categories, fitted.calibrator, fitted.tuned
    periods = parts.periods()
    labels_known_until = (pd.Timestamp(periods["valid"][1]) + pd.Timedelta(days=horizon_days)).date().isoformat()
    metadata: dict[str, Any] = {
        "feature_set_version": feature_set_version,
        "horizon_days": horizon_days,
        "active_days": active_days,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": as_of.isoformat(),
        "train_first": periods["train"][0],
        "train_last": periods["train"][1],
        "valid_first": periods["valid"][0],
        "valid_last": periods["valid"][1],
        "test_first": periods["test"][0],
        "test_last": periods["test"][1],
        "labels_known_until": labels_known_until,
        "dataset_name": dataset_name,
        "dataset_fingerprint": fingerprint,
        "data_start": data_start.isoformat() if data_start else None,
        "seed": seed,
        "evaluation": parts.evaluation,
        "btyd_prior": use_prior,
    }
    model = ChurnModel(booster, feature_names, categories, calibrator, metadata, prior_feature=PRIOR_FEATURE if use_prior else None)

    test = fitted.test
    test_y = test[LABEL].to_numpy(dtype=int)
    say("evaluating on the test period" if parts.evaluation == "later-period" else "evaluating out of fold (held-out customers)")
    values = ev.customer_values(test, profit)
    if fitted.test_margin is None:
        proba = model.predict_proba(test)
        raw_proba = model.uncalibrated_proba(test)
    else:
        proba = calibrator(fitted.test_margin)
        raw_proba = 1.0 / (1.0 + np.exp(-fitted.test_margin))
    metrics = ev.evaluate_scores(test_y, proba, values, profit)
    uncalibrated = ev.probability_metrics(test_y, raw_proba)
    metrics["brier_uncalibrated"] = uncalibrated["brier"]
    metrics["ece_uncalibrated"] = uncalibrated["ece"]
    metrics["log_loss_uncalibrated"] = uncalibrated["log_loss"]
    baselines, baseline_proba = fitted.baselines, fitted.baseline_proba
    baseline_metrics = {name: ev.evaluate_scores(test_y, p, values, profit) for name, p in baseline_proba.items()}
    tiers = ev.tier_metrics(test, test_y, proba)
    model.metadata["test_metrics"] = {f"test_{k}": v for k, v in metrics.items()}
    model.metadata["test_pr_auc"] = metrics["pr_auc"]
    importance = model.importance(test.sample(n=min(IMPORTANCE_ROWS, len(test)), random_state=seed))

    say("logging the run to MLflow")
    from training.register import apply_promotion, decide_promotion, ensure_experiment, log_churn_model, register, tracking

    import mlflow

    experiment = f"churn/{dataset_name}"
    with tracking(tracking_uri) as client:
        experiment_id = ensure_experiment(client, experiment, tracking_uri=tracking_uri, artifact_root=artifact_root)
        run_name = f"lgbm-h{horizon_days}-{as_of.isoformat()}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            run_id = run.info.run_id
            mlflow.set_tags(
                {
                    "dataset": dataset_name,
                    "dataset_fingerprint": fingerprint,
                    "feature_set_version": feature_set_version,
                    "model_name": model_name,
                    "evaluation": parts.evaluation,
                    "btyd_prior": str(use_prior).lower(),
                }
            )
            mlflow.log_params(_params(metadata, summary, tuned, profit, trials, timeout_s, len(feature_names)))
            mlflow.log_metrics(_flat_metrics(metrics, baseline_metrics, tiers, tuned))
            _log_artifacts(
                feature_names=feature_names,
                categories=categories,
                feature_set_version=feature_set_version,
                metrics=metrics,
                baselines={name: {"description": baselines[name].description, **m} for name, m in baseline_metrics.items()},
                tiers=tiers,
                summary=summary,
                tuned=tuned,
                importance=importance,
                calibration={
                    "method": "platt scaling of the LightGBM margin, fitted on the "
                    + ("validation period" if parts.evaluation == "later-period" else "out-of-fold margins of held-out customers"),
                    "slope": calibrator.slope,
                    "intercept": calibrator.intercept,
                    "calibrated": ev.reliability_curve(test_y, proba).to_dict(orient="records"),
                    "uncalibrated": ev.reliability_curve(test_y, raw_proba).to_dict(orient="records"),
                },
                plots=_plots(test_y, proba, raw_proba, baseline_proba, values, profit, importance),
            )
            model_uri = log_churn_model(model, test)
        version = register(client, model_uri, model_name, run_id=run_id, tags={"dataset": dataset_name, "horizon_days": str(horizon_days)})
        decision = decide_promotion(client, model_name, new_model=model, new_pr_auc=metrics["pr_auc"], test_frame=test, test_labels=test_y)
        apply_promotion(client, model_name, version, decision)
        client.set_tag(run_id, "promotion", decision.alias)
        client.set_tag(run_id, "promotion_reason", decision.reason)
        client.set_tag(run_id, "model_version", version)
    say(f"registered {model_name} version {version} as {decision.alias}: {decision.reason}")
    return TrainResult(
        run_id=run_id,
        experiment=experiment,
        model_name=model_name,
        model_version=version,
        promoted=decision.promoted,
        reason=decision.reason,
        metrics=metrics,
        baselines=baseline_metrics,
        tiers=tiers,
        split=summary,
        model=model,
        tracking_uri=tracking_uri,
        seconds=time.perf_counter() - started,
        tuning=tuned,
    )


@dataclass
class _Fitted:
    """What one training mode hands to the shared evaluation and logging."""

    booster: Any
    categories: dict[str, list[str]]
    calibrator: PlattCalibrator
    tuned: dict[str, Any]
    test: pd.DataFrame
    test_margin: np.ndarray | None
    baselines: dict[str, Baseline]
    baseline_proba: dict[str, np.ndarray]


def _use_prior(option: PriorOption, parts: TimeSplit | CustomerFolds, feature_names: Sequence[str]) -> bool:
    """Whether the booster starts from the BG/NBD prior."""
    if option not in (True, False, "auto"):
        raise DataError(f"btyd_prior must be true, false or 'auto', not {option!r}")
    available = PRIOR_FEATURE in feature_names
    if option is True and not available:
        raise DataError(f"btyd_prior needs the {PRIOR_FEATURE} feature, which the data do not give (it needs the orders table)")
    if option == "auto":
        return available and isinstance(parts, CustomerFolds)
    return bool(option)


def _fit_later_period(
    parts: TimeSplit,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    *,
    use_prior: bool,
    trials: int,
    timeout_s: float | None,
    seed: int,
    progress: Progress,
) -> _Fitted:
    """The time-split mode: tune and early-stop on the validation period, calibrate there, test on the later period."""
    categories = category_lists(parts.train, categorical)
    train_x, valid_x = (prepare_features(p, feature_names, categories) for p in (parts.train, parts.valid))
    train_y, valid_y = (p[LABEL].to_numpy(dtype=int) for p in (parts.train, parts.valid))
    init = (prior_logit(train_x[PRIOR_FEATURE]), prior_logit(valid_x[PRIOR_FEATURE])) if use_prior else None
    progress("fitting baselines")
    baselines = fit_baselines(parts, seed=seed)
    progress(f"tuning LightGBM: up to {trials} trials, {timeout_s or 'no'} s budget")
    tuned, booster = _tune_and_fit(parts, train_x, train_y, valid_x, valid_y, init, trials=trials, timeout_s=timeout_s, seed=seed, progress=progress)
    valid_margin = booster.predict(valid_x, raw_score=True) + (init[1] if init is not None else 0.0)
    return _Fitted(
        booster=booster,
        categories=categories,
        calibrator=PlattCalibrator.fit(valid_margin, valid_y),
        tuned=tuned,
        test=parts.test,
        test_margin=None,
        baselines=baselines,
        baseline_proba={name: b.predict_proba(parts.test) for name, b in baselines.items()},
    )


def _fit_customer_cv(
    parts: CustomerFolds,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    *,
    use_prior: bool,
    trials: int,
    timeout_s: float | None,
    seed: int,
    progress: Progress,
) -> _Fitted:
    """The short-history mode: tune by out-of-fold PR-AUC over customer folds, calibrate out of fold, refit on all rows."""
    frame = parts.frame
    categories = category_lists(frame, categorical)
    x = prepare_features(frame, feature_names, categories)
    y = frame[LABEL].to_numpy(dtype=int)
    init = prior_logit(x[PRIOR_FEATURE]) if use_prior else None
    folds = parts.pairs()
    progress(f"fitting baselines on {parts.k} folds of customers")
    baselines: dict[str, Baseline] = {}
    baseline_proba: dict[str, np.ndarray] = {}
    for fit, held in folds:
        rest = frame.loc[fit]
        fold_baselines = fit_baselines(TimeSplit(train=rest, valid=rest, test=frame.loc[held], horizon_days=parts.horizon_days, gap_days=0), seed=seed)
        for name, baseline in fold_baselines.items():
            baselines.setdefault(name, baseline)
            baseline_proba.setdefault(name, np.zeros(len(frame)))[held] = baseline.predict_proba(frame.loc[held])
    progress(f"tuning LightGBM by {parts.k}-fold cross-validation on customers: up to {trials} trials, {timeout_s or 'no'} s budget")
    result = tune_cv(x, y, folds, init_score=init, trials=trials, timeout_s=timeout_s, seed=seed, num_threads=NUM_THREADS, progress=progress)
    progress(f"refitting on all {len(frame)} rows with {result.rounds} trees (the folds' mean)")
    booster = fit_rounds(x, y, result.params, result.rounds, init_score=init)
    tuned = _tuning_summary(result, booster) | {"fold_trees": result.best_iterations}
    return _Fitted(
        booster=booster,
        categories=categories,
        calibrator=PlattCalibrator.fit(result.out_of_fold, y),
        tuned=tuned,
        test=frame,
        test_margin=result.out_of_fold,
        baselines=baselines,
        baseline_proba=baseline_proba,
    )


def _tune_and_fit(
    parts: TimeSplit,
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    init: tuple[np.ndarray, np.ndarray] | None,
    *,
    trials: int,
    timeout_s: float | None,
    seed: int,
    progress: Progress,
) -> tuple[dict[str, Any], Any]:
    """Tune on the training rows (a customer sample of them when there are very many), then fit the final booster."""
    sample = _customer_sample(parts.train, TUNE_MAX_ROWS, seed)
    if sample is None:
        result = tune(
            train_x, train_y, valid_x, valid_y,
            trials=trials, timeout_s=timeout_s, seed=seed, num_threads=NUM_THREADS, progress=progress, init_scores=init,
        )
        booster = result.booster
    else:
        progress(f"tuning on {int(sample.sum())} of {len(sample)} training rows (a sample of customers)")
        result = tune(
            train_x.loc[sample], train_y[sample], valid_x, valid_y,
            trials=trials, timeout_s=timeout_s, seed=seed, num_threads=NUM_THREADS, progress=progress,
            init_scores=None if init is None else (init[0][sample], init[1]),
        )
        progress("fitting the final model on all training rows")
        booster = fit_booster(train_x, train_y, valid_x, valid_y, lgb_params(result.tuned, seed=seed, num_threads=NUM_THREADS), init_scores=init)
    return _tuning_summary(result, booster), booster


def _customer_sample(train: pd.DataFrame, max_rows: int, seed: int) -> np.ndarray | None:
    if len(train) <= max_rows:
        return None
    customers = np.sort(train["customer_id"].astype(str).unique())
    rng = np.random.default_rng(seed)
    keep = rng.choice(customers, size=max(1, int(len(customers) * max_rows / len(train))), replace=False)
    return train["customer_id"].astype(str).isin(set(keep)).to_numpy()


def _tuning_summary(result: TuneResult | CVResult, booster: Any) -> dict[str, Any]:
    return {
        "params": result.tuned,
        "valid_pr_auc": result.valid_pr_auc,
        "trees": int(booster.num_trees()),
        "trials": len(result.trials),
        "trials_complete": result.n_complete,
        "trials_pruned": result.n_pruned,
        "seconds": round(result.seconds, 2),
        "history": result.trials,
    }


def _params(
    metadata: Mapping[str, Any],
    summary: Mapping[str, Any],
    tuned: Mapping[str, Any],
    profit: ev.ProfitParams,
    trials: int,
    timeout_s: float | None,
    n_features: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: metadata[key]
        for key in (
            "horizon_days", "active_days", "as_of", "feature_set_version", "dataset_name", "dataset_fingerprint",
            "data_start", "train_first", "train_last", "valid_first", "valid_last", "test_first", "test_last", "seed",
            "evaluation", "btyd_prior",
        )
    }
    out["data_end"] = metadata["as_of"]
    out |= {f"split_{k}": v for k, v in summary.items() if k.endswith(("_rows", "_customers", "_snapshots")) or k == "gap_days"}
    out |= {f"lgbm_{k}": v for k, v in tuned["params"].items()}
    out |= {f"profit_{k}": v for k, v in profit.as_dict().items()}
    out |= {"trials_budget": trials, "timeout_s": timeout_s, "num_features": n_features, "num_threads": NUM_THREADS, "calibration": "platt"}
    return out


def _flat_metrics(
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    tiers: Mapping[str, Mapping[str, float]],
    tuned: Mapping[str, Any],
) -> dict[str, float]:
    out = {f"test_{k}": v for k, v in metrics.items()}
    for name, m in baselines.items():
        out |= {f"baseline_{name}_test_{k}": v for k, v in m.items()}
    for tier, m in tiers.items():
        out |= {f"tier_{_metric_key(tier)}_{k}": v for k, v in m.items()}
    out |= {
        "valid_pr_auc": tuned["valid_pr_auc"],
        "trees": tuned["trees"],
        "trials_complete": tuned["trials_complete"],
        "trials_pruned": tuned["trials_pruned"],
        "tuning_seconds": tuned["seconds"],
    }
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(float(v))}


def _metric_key(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(text))


def _plots(
    y: np.ndarray,
    proba: np.ndarray,
    raw_proba: np.ndarray,
    baseline_proba: Mapping[str, np.ndarray],
    values: np.ndarray,
    profit: ev.ProfitParams,
    importance: pd.Series,
) -> dict[str, Any]:
    scores = {"LightGBM": proba, **baseline_proba}
    return {
        "roc.png": ev.plot_roc(y, scores),
        "precision_recall.png": ev.plot_precision_recall(y, scores),
        "calibration.png": ev.plot_calibration(y, {"LightGBM calibrated": proba, "LightGBM uncalibrated": raw_proba}),
        "lift_gain.png": ev.plot_gain(y, scores),
        "profit_curve.png": ev.plot_profit(y, scores, values, profit),
        "feature_importance.png": ev.plot_importance(importance),
    }


def _log_artifacts(
    *,
    feature_names: Sequence[str],
    categories: Mapping[str, list[str]],
    feature_set_version: str,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Any],
    tiers: Mapping[str, Any],
    summary: Mapping[str, Any],
    tuned: Mapping[str, Any],
    importance: pd.Series,
    calibration: Mapping[str, Any],
    plots: Mapping[str, Any],
) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_json(folder / "features.json", {"feature_set_version": feature_set_version, "features": list(feature_names), "categorical": dict(categories)})
        _write_json(folder / "metrics.json", {"model": dict(metrics), "baselines": dict(baselines), "tiers": dict(tiers)})
        _write_json(folder / "split.json", dict(summary))
        _write_json(folder / "tuning.json", dict(tuned))
        _write_json(folder / "calibration.json", dict(calibration))
        importance.rename("mean_abs_contribution").to_csv(folder / "feature_importance.csv", index_label="feature")
        for name in ("features.json", "metrics.json", "split.json", "tuning.json", "calibration.json", "feature_importance.csv"):
            mlflow.log_artifact(str(folder / name))
        plot_dir = folder / "plots"
        plot_dir.mkdir()
        for name, fig in plots.items():
            fig.savefig(plot_dir / name, dpi=110)
            plt.close(fig)
        mlflow.log_artifacts(str(plot_dir), artifact_path="plots")


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, date | datetime | pd.Timestamp):
        return value.isoformat()
    return str(value)
