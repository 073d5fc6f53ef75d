"""Baselines the model must beat, fitted on the same split and scored on the same test period.

- ``recency_rule``: the team's rule of thumb, "the longer since the last order, the likelier lost":
  rank by days since the last order.
- ``overdue_rule``: the same against the customer's own rhythm: rank by ``overdue_ratio`` (days
  since the last order over the usual gap between orders).
  Both rules become probabilities by Platt scaling on the validation period (monotone, so the
  ranking is the rule's own).
- ``logistic_rfm``: logistic regression on the RFM features, a scikit-learn pipeline with median
  imputation, a log transform of the amounts and counts, and scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from training.dataset import LABEL, TimeSplit
from training.model import PlattCalibrator

RULES = {
    "recency_rule": "days_since_last_order",
    "overdue_rule": "overdue_ratio",
}
RFM_RAW = ("days_since_last_order", "orders_365d", "revenue_365d")


@dataclass
class RecencyRule:
    """Churn risk as a monotone function of one recency column.

    Attributes:
        column: the column ranked (``overdue_ratio`` or ``days_since_last_order``).
        fill: the value used where the column is missing (its median on the training rows).
        calibrator: Platt scaling of ``log1p(value)``, fitted on the validation rows.
    """

    column: str
    fill: float = 0.0
    calibrator: PlattCalibrator | None = None

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The rule's raw score (higher = riskier).

        Args:
            frame: rows with ``column``.

        Returns:
            ``log1p`` of the column, missing values filled.
        """
        values = pd.to_numeric(frame[self.column], errors="coerce").astype(float).fillna(self.fill).clip(lower=0.0)
        return np.log1p(values.to_numpy())

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame) -> RecencyRule:
        """Set the fill value from ``train`` and calibrate on ``valid``.

        Args:
            train: training rows.
            valid: validation rows (with labels).

        Returns:
            self.
        """
        median = pd.to_numeric(train[self.column], errors="coerce").median()
        self.fill = float(median) if pd.notna(median) else 0.0
        self.calibrator = PlattCalibrator.fit(self.score(valid), valid[LABEL].to_numpy(dtype=float))
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability.

        Args:
            frame: rows with ``column``.

        Returns:
            Probabilities, shape [n].
        """
        if self.calibrator is None:
            raise RuntimeError("fit the rule before predicting")
        return self.calibrator(self.score(frame))


def rfm_columns(columns: Sequence[str]) -> list[str]:
    """The RFM inputs of the logistic baseline: the raw recency, frequency and value plus ``rfm_*_score``.

    Args:
        columns: the available columns.

    Returns:
        The column names present, in a fixed order.
    """
    scores = sorted(c for c in columns if c.startswith("rfm_") and c.endswith("_score"))
    return [c for c in RFM_RAW if c in columns] + scores


def logistic_rfm_pipeline(columns: Sequence[str], *, seed: int = 42) -> Pipeline:
    """Logistic regression on RFM columns: impute, log-transform counts and amounts, scale, fit.

    Args:
        columns: the RFM columns (see :func:`rfm_columns`).
        seed: random state of the solver.

    Returns:
        An unfitted scikit-learn pipeline taking a frame with ``columns``.
    """
    raw = [c for c in columns if c in RFM_RAW]
    scores = [c for c in columns if c not in RFM_RAW]
    signed_log = FunctionTransformer(lambda x: np.sign(x) * np.log1p(np.abs(x)), feature_names_out="one-to-one")
    transformers = []
    if raw:
        transformers.append(("raw", Pipeline([("impute", SimpleImputer(strategy="median")), ("log", signed_log), ("scale", StandardScaler())]), raw))
    if scores:
        transformers.append(("scores", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), scores))
    return Pipeline(
        [
            ("features", ColumnTransformer(transformers, remainder="drop")),
            ("model", LogisticRegression(C=1.0, max_iter=2000, random_state=seed)),
        ]
    )


@dataclass
class Baseline:
    """A fitted baseline: a name, what it uses, and how it predicts.

    Attributes:
        name: ``recency_rule``, ``overdue_rule`` or ``logistic_rfm``.
        description: one line for reports.
        columns: the input columns.
        estimator: a :class:`RecencyRule` or a fitted pipeline.
    """

    name: str
    description: str
    columns: list[str]
    estimator: RecencyRule | Pipeline

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probability per row.

        Args:
            frame: rows with the baseline's columns.

        Returns:
            Probabilities, shape [n].
        """
        if isinstance(self.estimator, RecencyRule):
            return self.estimator.predict_proba(frame)
        x = frame[self.columns].apply(pd.to_numeric, errors="coerce").astype(float)
        return self.estimator.predict_proba(x)[:, 1]


def fit_baselines(split: TimeSplit, *, seed: int = 42) -> dict[str, Baseline]:
    """Fit every baseline the split's columns allow.

    Args:
        split: the time split (baselines fit on train, the rule is calibrated on valid).
        seed: random state.

    Returns:
        Baseline name to fitted baseline (empty when no recency or RFM column is present).
    """
    out: dict[str, Baseline] = {}
    columns = list(split.train.columns)
    for name, column in RULES.items():
        if column in columns and split.train[column].notna().any():
            rule = RecencyRule(column).fit(split.train, split.valid)
            out[name] = Baseline(name, f"rank by {column}", [column], rule)
    rfm = rfm_columns(columns)
    if rfm:
        pipeline = logistic_rfm_pipeline(rfm, seed=seed)
        x = split.train[rfm].apply(pd.to_numeric, errors="coerce").astype(float)
        pipeline.fit(x, split.train[LABEL].to_numpy(dtype=int))
        out["logistic_rfm"] = Baseline("logistic_rfm", f"logistic regression on {', '.join(rfm)}", rfm, pipeline)
    return out
