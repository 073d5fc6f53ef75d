"""Partial churn: the chance that a product group a customer buys regularly stops in the next horizon.

Learnt like the customer model, forward in time: the labelled group rows
(:func:`features.group_risk.build_group_training_set`) are split by as-of date into training,
validation (a horizon later) and test (the latest date, a horizon after validation). LightGBM
(fixed, conservative parameters; its tree count from early stopping on validation) competes with
the baseline a buyer would use, the group's own recency (days since the customer last bought it).
The one that ranks the validation rows better is tested once on the test date, next to the other,
on every row and on the rows of customers who went on ordering (partial churn proper: the group
stopped while the customer stayed). The served model is the chosen recipe refitted on every date,
calibrated on the test date by the tested model's scores, as for the customer model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from features.dataset import DataError
from features.group_risk import LABEL, STAYED
from features.registry import GROUP_FEATURES
from training.model import ChurnModel, PlattCalibrator, TreeComponent, fit_booster, fit_rounds, lgb_params, make_dataset, score_column

MODEL = "lightgbm"
BASELINE = "group_recency"
PARAMS: dict[str, Any] = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 100, "lambda_l2": 5.0}
"""LightGBM parameters of the group model: small trees, many rows per leaf (the rows of one customer are alike)."""
MIN_ROWS = 200


@dataclass(frozen=True)
class GroupSplit:
    """The as-of dates of each part (training dates end a horizon before validation, which ends a horizon before test)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def periods(self) -> dict[str, str]:
        return {f"{name}_{end}": str(getattr(self, name)["as_of"].agg(end).date()) for name in ("train", "valid", "test") for end in ("min", "max")}


@dataclass(frozen=True)
class GroupRiskResult:
    """The served group model and the figures that chose and tested it.

    Attributes:
        served: the model to score with (its ``kind`` is ``lightgbm`` or ``group_recency``).
        chosen: which recipe won the validation period.
        comparison: one row per method and subset (``all``, ``stayed``) on the test date.
        validation: method to its validation ROC-AUC and PR-AUC.
        periods: the as-of dates of the parts.
    """

    served: ChurnModel
    chosen: str
    comparison: pd.DataFrame
    validation: dict[str, dict[str, float]]
    periods: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow: ``groups_<method>_<subset>_<metric>``."""
        out = {f"groups_{r.method}_{r.subset}_{m}": float(getattr(r, m)) for r in self.comparison.itertuples() for m in ("roc_auc", "pr_auc")}
        out |= {f"groups_valid_{method}_{m}": v for method, figures in self.validation.items() for m, v in figures.items()}
        return out


def split_by_date(frame: pd.DataFrame, horizon_days: int) -> GroupSplit:
    """Test on the latest date, validate on the latest a horizon before it, train on the dates a horizon before that.

    Args:
        frame: labelled group rows with ``as_of``.
        horizon_days: H (label windows of different parts never overlap).

    Returns:
        The three parts.

    Raises:
        DataError: the history is too short for three parts, or a part is too small.
    """
    dates = sorted(frame["as_of"].dt.date.unique()) if len(frame) else []
    gap = timedelta(days=horizon_days)
    test = dates[-1] if dates else None
    valid = max((d for d in dates if test and d <= test - gap), default=None)
    train = [d for d in dates if valid and d <= valid - gap]
    if test is None or valid is None or not train:
        raise DataError(
            f"partial churn needs three as-of dates a horizon ({horizon_days} days) apart to train, validate and test; "
            f"the order lines give {len(dates)} date(s) ({dates[0] if dates else '-'} to {dates[-1] if dates else '-'})"
        )
    day = frame["as_of"].dt.date
    parts = GroupSplit(frame[day.isin(train)], frame[day == valid], frame[day == test])
    for name in ("train", "valid", "test"):
        rows = getattr(parts, name)
        if len(rows) < MIN_ROWS or rows[LABEL].nunique() < 2:
            raise DataError(f"partial churn: the {name} part has {len(rows)} rows ({rows[LABEL].nunique()} label value(s)); it needs {MIN_ROWS} rows of both kinds")
    return parts


def _features(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[list(GROUP_FEATURES)].astype("float64")


def _baseline(calibrator: PlattCalibrator | None = None, metadata: dict[str, Any] | None = None) -> ChurnModel:
    return ChurnModel(GROUP_FEATURES, {}, [score_column("group_days_since_last", "log")], calibrator=calibrator, metadata={"kind": BASELINE, **(metadata or {})})


def _trees(train: pd.DataFrame, valid: pd.DataFrame, seed: int) -> tuple[ChurnModel, float]:
    """LightGBM on the training rows, stopped early on validation; and its trees per training row."""
    params = lgb_params(PARAMS, seed=seed)
    fit = make_dataset(_features(train), train[LABEL].to_numpy(), seed=seed, num_threads=params["num_threads"])
    check = make_dataset(_features(valid), valid[LABEL].to_numpy(), seed=seed, num_threads=params["num_threads"], reference=fit)
    booster = fit_booster(fit, check, params)
    model = ChurnModel(GROUP_FEATURES, {}, [TreeComponent(booster, list(GROUP_FEATURES))], metadata={"kind": MODEL})
    return model, booster.num_trees() / len(train)


def _refit(chosen: str, rows: pd.DataFrame, trees_per_row: float, seed: int, calibrator: PlattCalibrator, metadata: dict[str, Any]) -> ChurnModel:
    if chosen == BASELINE:
        return _baseline(calibrator, metadata)
    rounds = max(1, round(trees_per_row * len(rows)))
    booster = fit_rounds(_features(rows), rows[LABEL].to_numpy(), lgb_params(PARAMS, seed=seed), rounds)
    return ChurnModel(GROUP_FEATURES, {}, [TreeComponent(booster, list(GROUP_FEATURES))], calibrator=calibrator, metadata={"kind": MODEL, **metadata})


def _figures(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {"roc_auc": float(roc_auc_score(y, score)), "pr_auc": float(average_precision_score(y, score))}


def compare(test: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """ROC-AUC and PR-AUC of each method on the test rows: all of them, and those of customers who went on ordering.

    Args:
        test: the labelled test rows (with :data:`~features.group_risk.STAYED`).
        scores: method to its scores on ``test`` (higher = more likely to stop).

    Returns:
        Columns ``subset, method, rows, stop_rate, roc_auc, pr_auc``.
    """
    out = []
    for subset, mask in (("all", np.ones(len(test), bool)), ("stayed", test[STAYED].to_numpy(dtype=bool))):
        y = test[LABEL].to_numpy()[mask]
        if len(np.unique(y)) < 2:
            continue
        for method, score in scores.items():
            out.append({"subset": subset, "method": method, "rows": int(mask.sum()), "stop_rate": float(y.mean())} | _figures(y, score[mask]))
    return pd.DataFrame(out)


def fit_group_risk(frame: pd.DataFrame, *, horizon_days: int, seed: int = 42, as_of: date | None = None) -> GroupRiskResult:
    """Choose, test once and refit the partial-churn model.

    Args:
        frame: labelled group rows (:func:`features.group_risk.build_group_training_set`).
        horizon_days: H.
        seed: LightGBM's seed.
        as_of: the training date (recorded).

    Returns:
        The served model and its figures.
    """
    parts = split_by_date(frame, horizon_days)
    candidate, trees_per_row = _trees(parts.train, parts.valid, seed)
    baseline = _baseline()
    valid_y = parts.valid[LABEL].to_numpy()
    valid_margin = {MODEL: candidate.raw_score(parts.valid), BASELINE: baseline.raw_score(parts.valid)}
    validation = {method: _figures(valid_y, margin) for method, margin in valid_margin.items()}
    chosen = max(validation, key=lambda m: (validation[m]["roc_auc"] + validation[m]["pr_auc"], m == BASELINE))
    before_test = pd.concat([parts.train, parts.valid], ignore_index=True)
    tested = {
        MODEL: _refit(MODEL, before_test, trees_per_row, seed, PlattCalibrator.fit(valid_margin[MODEL], valid_y), {}),
        BASELINE: _baseline(PlattCalibrator.fit(valid_margin[BASELINE], valid_y)),
    }
    test_scores = {method: model.raw_score(parts.test) for method, model in tested.items()}
    comparison = compare(parts.test, test_scores)
    everything = pd.concat([before_test, parts.test], ignore_index=True)
    metadata = {"horizon_days": horizon_days, "as_of": str(as_of) if as_of else None, "train_last": str(everything["as_of"].max().date()), "chosen_on": "validation"}
    served = _refit(chosen, everything, trees_per_row, seed, PlattCalibrator.fit(test_scores[chosen], parts.test[LABEL].to_numpy()), metadata)
    return GroupRiskResult(served=served, chosen=chosen, comparison=comparison, validation=validation, periods=parts.periods())
