"""One training run: choose on a later period, test on a still later one, serve a refit on everything known.

1. The matured labelled snapshots are split by time into training, validation and test periods
   (:func:`training.dataset.split_for_training`).
2. Every candidate (:mod:`training.candidates`: the baselines, LightGBM with and without the BG/NBD
   start, a blend) is fitted on the training period; the validation period chooses one, with its
   trees and blend weights. A baseline that wins is chosen like any other candidate.
3. The chosen recipe, and every baseline, is fitted on everything known before the test period,
   calibrated on the validation period and measured once on the test period: the reported figures
   and the margin over the best baseline, with its interval.
4. The served model is the same recipe refitted on every matured snapshot, calibrated on the test
   period (the latest matured one) by the tested model's forward margins.
5. With order lines, the partial-churn model (:mod:`training.partial`: which product groups a
   customer buys regularly are about to stop) is chosen, tested and refitted the same way, and
   logged to the same run.

:func:`fit_frame` does all that without side effects; :func:`train_frame` logs it to MLflow,
registers the served model and decides champion or challenger; :func:`train` starts from a CRM
dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.dataset import DataError
from features.group_risk import build_group_training_set
from features.labels import build_training_set
from features.registry import CATEGORICAL, FEATURE_SET_VERSION, model_features
from features.stage import StageRule
from training import evaluate as ev
from training.candidates import BASELINES, Context, Recipe, Selection, build_model, fit_recipe, select
from training.dataset import LABEL, SplitConfig, TimeSplit, matured, split_for_training
from training.model import ChurnModel, PlattCalibrator, category_lists
from training.partial import GroupRiskResult, fit_group_risk
from training.reference import risk_reference
from training.tracking import Logged, log_group_risk, log_training_run

if TYPE_CHECKING:
    from features.dataset import CRMDataset

NUM_THREADS = 2
Progress = Callable[[str], None]


@dataclass
class Fitted:
    """What a training run decided and built, before anything is logged.

    Attributes:
        split: the time split.
        selection: the candidates' validation figures and the chosen recipe.
        model: the served model: the chosen recipe refitted on every matured snapshot.
        tested: the chosen recipe fitted on what was known before the test period (what the test figures measure).
        served_baselines: each baseline refitted and calibrated like the served model.
        test_proba: method (``model`` and each baseline) to its probabilities on the test period.
        comparison: the methods' test figures per subset, with the model's margin over the best baseline.
        metrics: the model's test metrics (ranking, probability, profit).
        baselines: each baseline's test metrics.
        tiers: the model's test metrics per ABC class.
    """

    split: TimeSplit
    selection: Selection
    model: ChurnModel
    tested: ChurnModel
    served_baselines: dict[str, ChurnModel]
    test_proba: dict[str, np.ndarray]
    comparison: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    tiers: dict[str, dict[str, float]]


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
        fitted: everything the run built (models, split, selection, test figures).
        tracking_uri: where the run was logged.
        seconds: wall time of the run.
        groups: the partial-churn model (product groups at risk), when the data has order lines.
    """

    run_id: str
    experiment: str
    model_name: str
    model_version: str
    promoted: bool
    reason: str
    fitted: Fitted
    tracking_uri: str
    seconds: float = 0.0
    groups: GroupRiskResult | None = None

    @property
    def model(self) -> ChurnModel:
        """The served (registered) model."""
        return self.fitted.model

    @property
    def metrics(self) -> dict[str, float]:
        """The model's test metrics."""
        return self.fitted.metrics

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        """Each baseline's test metrics."""
        return self.fitted.baselines

    @property
    def tiers(self) -> dict[str, dict[str, float]]:
        """The model's test metrics per ABC class."""
        return self.fitted.tiers

    @property
    def split(self) -> dict[str, Any]:
        """Sizes, periods and churn rates of the parts."""
        return self.fitted.split.summary()

    @property
    def version(self) -> str:
        """The registered version (same as ``model_version``)."""
        return self.model_version


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
    exclude: Sequence[str] = (),
    stage_rule: StageRule | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and (maybe) promote a churn model on a CRM dataset.

    Args:
        data: the CRM dataset.
        horizon_days: a customer is lost after this many days without an order.
        trials: Optuna trial budget.
        timeout_s: Optuna time budget in seconds (``None``: trials only).
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
        exclude: features to leave out.
        stage_rule: when a customer counts as gone quiet (the test figures are also given for the ``retain`` rest).

    Returns:
        The run's result.

    Raises:
        DataError: the data cannot give an honest model (too short, one class, too few customers).
    """
    say = progress or _quiet
    end = as_of or data.end_date()
    known = data.cut(end) if as_of is not None else data
    frame = labelled_snapshots(known, horizon_days=horizon_days, as_of=as_of, active_days=active_days, progress=say)
    features = [f for f in model_features(known) if f not in set(exclude)]
    result = train_frame(
        frame, feature_names=features, categorical=categorical_of(features), horizon_days=horizon_days, as_of=end,
        dataset_name=data.name(), fingerprint=data.fingerprint(), data_start=known.start_date(), feature_set_version=FEATURE_SET_VERSION,
        trials=trials, timeout_s=timeout_s, seed=seed, tracking_uri=tracking_uri, artifact_root=artifact_root, model_name=model_name,
        progress=progress, active_days=active_days, split=split, profit=profit, stage_rule=stage_rule,
    )
    if not known.has("order_lines"):
        return result
    groups = train_group_risk(known, horizon_days=horizon_days, as_of=as_of, active_days=active_days, seed=seed, progress=say)
    if groups is not None:
        log_group_risk(result.run_id, groups, tracking_uri=result.tracking_uri)
    return replace(result, groups=groups)


def _quiet(_msg: str) -> None:
    """The progress callback when nobody listens."""


def train_group_risk(known: CRMDataset, *, horizon_days: int, as_of: date | None, active_days: int, seed: int, progress: Progress) -> GroupRiskResult | None:
    """The partial-churn model (a regularly bought product group stopping), or None when the lines cannot feed one.

    Args:
        known: the dataset (already cut at ``as_of``), with order lines.
        horizon_days: the label horizon.
        as_of: the training date, or None for the end of the data.
        active_days: the activity window.
        seed: LightGBM's seed.
        progress: one-line status messages.

    Returns:
        The fitted and tested model, or None (the reason is said through ``progress``).
    """
    progress("partial churn: labelled rows of the product groups each customer buys regularly")
    try:
        rows = build_group_training_set(known, horizon_days, as_of=as_of, active_days=active_days)
        groups = fit_group_risk(rows, horizon_days=horizon_days, seed=seed, as_of=as_of or known.end_date())
    except DataError as err:
        progress(f"partial churn skipped: {err}")
        return None
    best = groups.comparison[groups.comparison["subset"] == "all"].set_index("method")["roc_auc"].to_dict()
    progress(f"partial churn: serving {groups.chosen} (test ROC-AUC " + ", ".join(f"{m} {v:.3f}" for m, v in best.items()) + ")")
    return groups


def labelled_snapshots(known: CRMDataset, *, horizon_days: int, as_of: date | None, active_days: int, progress: Progress) -> pd.DataFrame:
    """The labelled snapshots a training run learns from, with progress messages.

    Args:
        known: the dataset (already cut at ``as_of``).
        horizon_days: the label horizon.
        as_of: the training date, or None for the end of the data.
        active_days: the activity window.
        progress: one-line status messages.

    Returns:
        The stacked snapshots with ``churned``.
    """
    progress(f"building labelled snapshots up to {as_of or known.end_date()} (horizon {horizon_days} days)")

    def step(i: int, n: int, t: date) -> None:
        progress(f"snapshot {i}/{n} ({t})")

    return build_training_set(known, horizon_days=horizon_days, as_of=as_of, active_days=active_days, progress=step)


def categorical_of(features: Sequence[str]) -> list[str]:
    """The categorical ones among ``features`` (by the registry)."""
    return [name for name in features if name in CATEGORICAL]


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
    stage_rule: StageRule | None = None,
) -> TrainResult:
    """Everything :func:`train` does after the labelled snapshots are built.

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
        stage_rule: the ``retain`` subset's rule.

    Returns:
        The run's result.

    Raises:
        DataError: no matured snapshot, one class of label, too little history or too few test customers.
    """
    started = time.perf_counter()
    say = progress or _quiet
    profit = profit or ev.ProfitParams()
    metadata = {
        "feature_set_version": feature_set_version,
        "active_days": active_days,
        "dataset_name": dataset_name,
        "dataset_fingerprint": fingerprint,
        "data_start": data_start.isoformat() if data_start else None,
    }
    fitted = fit_frame(
        frame, feature_names=feature_names, categorical=categorical, horizon_days=horizon_days, as_of=as_of, trials=trials,
        timeout_s=timeout_s, seed=seed, split=split, profit=profit, progress=say, metadata=metadata, stage_rule=stage_rule,
    )
    say("logging the run to MLflow")
    logged = log_training_run(
        fitted, profit=profit, trials=trials, timeout_s=timeout_s, tracking_uri=tracking_uri, artifact_root=artifact_root, model_name=model_name
    )
    say(f"registered {model_name} version {logged.version} as {logged.decision.alias}: {logged.decision.reason}")
    return _result(fitted, logged, model_name, seconds=time.perf_counter() - started)


def _result(fitted: Fitted, logged: Logged, model_name: str, *, seconds: float) -> TrainResult:
    """The run's result from what was fitted and how it was logged and registered."""
    return TrainResult(
        run_id=logged.run_id,
        experiment=logged.experiment,
        model_name=model_name,
        model_version=logged.version,
        promoted=logged.decision.promoted,
        reason=logged.decision.reason,
        fitted=fitted,
        tracking_uri=logged.tracking_uri,
        seconds=seconds,
    )


def fit_frame(
    frame: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    horizon_days: int,
    as_of: date,
    trials: int = 20,
    timeout_s: float | None = 90.0,
    seed: int = 42,
    split: SplitConfig | None = None,
    profit: ev.ProfitParams | None = None,
    progress: Progress | None = None,
    metadata: Mapping[str, Any] | None = None,
    stage_rule: StageRule | None = None,
) -> Fitted:
    """Split, choose, test and refit (no side effects): the heart of a training run.

    Args:
        frame: labelled snapshots (``customer_id``, ``as_of``, ``churned``, features).
        feature_names: the model's features (columns of ``frame``).
        categorical: which of them are categorical.
        horizon_days: the label horizon.
        as_of: the training date; labels maturing later are dropped.
        trials: Optuna trial budget.
        timeout_s: Optuna time budget in seconds.
        seed: seed for tuning, LightGBM and the bootstrap.
        split: sizes of the time split and the short-history policy.
        profit: campaign economics.
        progress: one-line status messages.
        metadata: recorded with both models (dataset, feature set version ...).
        stage_rule: the ``retain`` subset's rule.

    Returns:
        The models and every figure.

    Raises:
        DataError: see :func:`train_frame`.
    """
    say = progress or _quiet
    profit = profit or ev.ProfitParams()
    parts = _split(frame, feature_names, horizon_days=horizon_days, as_of=as_of, split=split, seed=seed, say=say)
    ctx = Context(list(feature_names), category_lists(parts.everything(), categorical), seed, NUM_THREADS)
    selection = select(parts, ctx, trials=trials, timeout_s=timeout_s, progress=say)
    meta = _metadata(parts, selection, horizon_days=horizon_days, as_of=as_of, seed=seed, extra=metadata or {})
    say(f"testing {selection.chosen.kind} and the baselines on the test period")
    tested, served, test_proba = _test_all(selection, parts, ctx, meta)
    comparison, metrics, baselines = _evaluate(parts, test_proba, profit, seed=seed, stage_rule=stage_rule)
    for model in (served["model"], tested["model"]):
        model.metadata["test_metrics"] = {f"test_{k}": v for k, v in metrics.items()}
        model.metadata["test_pr_auc"] = metrics["pr_auc"]
    return Fitted(
        split=parts,
        selection=selection,
        model=served.pop("model"),
        tested=tested["model"],
        served_baselines=served,
        test_proba=test_proba,
        comparison=comparison,
        metrics=metrics,
        baselines=baselines,
        tiers=ev.tier_metrics(parts.test, parts.test[LABEL].to_numpy(dtype=int), test_proba["model"]),
    )


def _evaluate(
    parts: TimeSplit, test_proba: Mapping[str, np.ndarray], profit: ev.ProfitParams, *, seed: int, stage_rule: StageRule | None
) -> tuple[pd.DataFrame, dict[str, float], dict[str, dict[str, float]]]:
    """The test period's figures: the methods compared per subset, the model's metrics with its margins, each baseline's metrics.

    Returns:
        ``(comparison, model metrics, baseline metrics by baseline)``.
    """
    test_y = parts.test[LABEL].to_numpy(dtype=int)
    values = ev.customer_values(parts.test, profit)
    baselines = [b for b in BASELINES if b in test_proba]
    comparison = ev.compare_methods(parts.test, test_y, test_proba, model="model", baselines=baselines, seed=seed, stage_rule=stage_rule)
    metrics = ev.evaluate_scores(test_y, test_proba["model"], values, profit) | _margins(comparison)
    return comparison, metrics, {b: ev.evaluate_scores(test_y, p, values, profit) for b, p in test_proba.items() if b != "model"}


def _split(
    frame: pd.DataFrame, feature_names: Sequence[str], *, horizon_days: int, as_of: date, split: SplitConfig | None, seed: int, say: Progress
) -> TimeSplit:
    """The matured snapshots split by time, after checking that the frame has the features and the label."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise DataError(f"the labelled snapshots lack the feature column(s) {', '.join(missing)}")
    if LABEL not in frame.columns:
        raise DataError(f"the labelled snapshots have no {LABEL} column")
    parts = split_for_training(matured(frame, horizon_days=horizon_days, as_of=as_of), horizon_days=horizon_days, config=split, seed=seed)
    _say_split(parts, say)
    return parts


def _test_all(
    selection: Selection, parts: TimeSplit, ctx: Context, meta: Mapping[str, Any]
) -> tuple[dict[str, ChurnModel], dict[str, ChurnModel], dict[str, np.ndarray]]:
    """The chosen recipe (as ``model``) and every baseline, tested and refitted by :func:`_test_and_refit`.

    Returns:
        ``(tested, served, test probabilities)``, each by method.
    """
    served: dict[str, ChurnModel] = {}
    tested: dict[str, ChurnModel] = {}
    test_proba: dict[str, np.ndarray] = {}
    for name, recipe in {"model": selection.chosen, **{b: selection.recipes[b] for b in BASELINES if b in selection.recipes}}.items():
        tested[name], served[name], test_proba[name] = _test_and_refit(recipe, parts, ctx, selection.margins[recipe.kind], meta)
    return tested, served, test_proba


def _test_and_refit(
    recipe: Recipe, parts: TimeSplit, ctx: Context, valid_margin: np.ndarray, meta: Mapping[str, Any]
) -> tuple[ChurnModel, ChurnModel, np.ndarray]:
    """The recipe fitted before the test period (calibrated on validation) and refitted on everything (calibrated on the test period).

    Returns:
        ``(tested, served, tested probabilities on the test period)``.
    """
    known = parts.before_test()
    valid_y, test_y = (p[LABEL].to_numpy(dtype=int) for p in (parts.valid, parts.test))
    tested_meta = {**meta, **_period("train", known), "role": "tested", "reference": risk_reference(known, ctx.feature_names, ctx.categories)}
    tested = build_model(recipe, fit_recipe(recipe, known, ctx), ctx, PlattCalibrator.fit(valid_margin, valid_y), tested_meta)
    test_margin = tested.raw_score(parts.test)
    everything = parts.everything()
    served_meta = {
        **meta,
        **_period("train", everything),
        "tested_train_last": tested_meta["train_last"],
        "role": "served",
        "reference": risk_reference(everything, ctx.feature_names, ctx.categories),
    }
    served = build_model(recipe, fit_recipe(recipe, everything, ctx), ctx, PlattCalibrator.fit(test_margin, test_y), served_meta)
    return tested, served, tested.calibrator(test_margin)


def _period(name: str, rows: pd.DataFrame) -> dict[str, str]:
    dates = pd.to_datetime(rows["as_of"])
    return {f"{name}_first": dates.min().date().isoformat(), f"{name}_last": dates.max().date().isoformat()}


def _metadata(parts: TimeSplit, selection: Selection, *, horizon_days: int, as_of: date, seed: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """What both models record: horizon, periods, the candidate chosen and why."""
    latest = pd.to_datetime(parts.everything()["as_of"]).max().date()
    chosen = selection.chosen
    best_baseline = max((b for b in BASELINES if b in selection.metrics), key=lambda b: selection.metrics[b]["score"], default=None)
    return {
        **extra,
        "horizon_days": horizon_days,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": as_of.isoformat(),
        **_period("valid", parts.valid),
        **_period("test", parts.test),
        "labels_known_until": (latest + timedelta(days=horizon_days)).isoformat(),
        "seed": seed,
        "evaluation": parts.evaluation,
        "recipe": chosen.describe(),
        "valid_score": selection.metrics[chosen.kind]["score"],
        "best_baseline": best_baseline,
        "best_baseline_valid_score": selection.metrics[best_baseline]["score"] if best_baseline else None,
    }


def _margins(comparison: pd.DataFrame) -> dict[str, float]:
    """The model's margins over the best baseline per subset, as flat metrics."""
    out: dict[str, float] = {}
    rows = comparison[comparison["method"] == "model"] if not comparison.empty else comparison
    for _, row in rows.iterrows():
        prefix = "" if row["subset"] == "all" else f"{row['subset']}_"
        for key in ("margin_roc_auc", "margin_roc_auc_low", "margin_roc_auc_high", "margin_pr_auc", "margin_pr_auc_low", "margin_pr_auc_high"):
            if key in row and pd.notna(row[key]):
                out[f"{prefix}{key}"] = float(row[key])
        if prefix:
            out[f"{prefix}roc_auc"], out[f"{prefix}pr_auc"] = float(row["roc_auc"]), float(row["pr_auc"])
    return out


def _say_split(parts: TimeSplit, say: Progress) -> None:
    summary = parts.summary()
    overlap = "; short history: the parts' label windows overlap, so the test figures lean optimistic" if parts.short else ""
    say(
        f"split: train {summary['train_rows']} rows ({summary['train_first']} to {summary['train_last']}), "
        f"validation {summary['valid_rows']}, test {summary['test_rows']} ({summary['test_first']} to {summary['test_last']}){overlap}"
    )
