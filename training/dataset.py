"""The honest time split of labelled snapshots: train, then validation, then test, never random.

A snapshot taken on day ``d`` has a label that is only known on ``d + horizon``. A split that ends
on day ``s`` therefore keeps only the snapshots whose labels matured before the next split starts
(``d + horizon <= s``): the model never learns from an outcome that happened inside the period it
is judged on, exactly as if it had been trained on the first day of that period.

A short history (a few months of matured snapshots) cannot hold three such parts. Then
:func:`split_for_training` falls back to folds of customers (:class:`CustomerFolds`): every
snapshot of a customer is in the same fold, so early stopping, tuning and calibration are judged
on customers the model has not seen. Its metrics are cross-validated on customers, not measured on
a later period (a split by time without the gaps would leak: neighbouring weekly snapshots share
most of their label window). The honest test of such a model is to score it at T and wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from features.dataset import DataError

LABEL = "churned"
KEY = ("customer_id", "as_of")
LATER_PERIOD = "later-period"
CUSTOMER_CV = "customer-cv"
Evaluation = Literal["later-period", "customer-cv"]


class ShortHistoryError(DataError):
    """The matured snapshots span too little time for the train, validation and test periods."""


@dataclass(frozen=True)
class SplitConfig:
    """How the matured snapshots are divided.

    Attributes:
        test_snapshots: the latest this many snapshot dates are the test set.
        valid_snapshots: the validation set is the latest this many dates that end ``gap_days``
            before the test set.
        gap_days: days between the last snapshot of one part and the first of the next; ``None``
            means the horizon, so that no label of an earlier part overlaps a later part.
        min_train_snapshots: fewest snapshot dates the training part may have.
        min_test_customers: fewest customers the test period must have.
        min_test_churned: fewest lost customers the test period must have.
        short_history: "auto" falls back to :class:`CustomerFolds` when the time split is
            impossible; "fail" raises instead.
        folds: the number of customer folds of that fallback.
    """

    test_snapshots: int = 3
    valid_snapshots: int = 3
    gap_days: int | None = None
    min_train_snapshots: int = 2
    min_test_customers: int = 100
    min_test_churned: int = 10
    short_history: Literal["auto", "fail"] = "auto"
    folds: int = 5


@dataclass(frozen=True)
class TimeSplit:
    """Train, validation and test frames of one time split (each a slice of the labelled snapshots).

    Attributes:
        train: the oldest snapshots, for fitting.
        valid: the snapshots for early stopping, tuning and calibration.
        test: the latest matured snapshots, for the reported metrics only.
        horizon_days: the label horizon the split was made for.
        gap_days: the gap left between the parts.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    horizon_days: int
    gap_days: int
    evaluation: Evaluation = LATER_PERIOD

    def parts(self) -> dict[str, pd.DataFrame]:
        """The three parts by name, in time order."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def periods(self) -> dict[str, tuple[str, str]]:
        """First and last as-of date (ISO) of each part.

        Returns:
            ``{"train": (first, last), "valid": ..., "test": ...}``.
        """
        return {name: _period(frame) for name, frame in self.parts().items()}

    def summary(self) -> dict[str, object]:
        """Sizes, churn rates and periods of the parts, for logging.

        Returns:
            A flat dict such as ``{"train_rows": 1200, "train_first": "2023-01-01", ...}``.
        """
        out: dict[str, object] = {"horizon_days": self.horizon_days, "gap_days": self.gap_days, "evaluation": self.evaluation}
        for name, frame in self.parts().items():
            first, last = _period(frame)
            out[f"{name}_rows"] = len(frame)
            out[f"{name}_customers"] = int(frame["customer_id"].nunique())
            out[f"{name}_snapshots"] = int(frame["as_of"].nunique())
            out[f"{name}_churn_rate"] = round(float(frame[LABEL].mean()), 6)
            out[f"{name}_first"] = first
            out[f"{name}_last"] = last
        return out


def _period(frame: pd.DataFrame) -> tuple[str, str]:
    dates = pd.to_datetime(frame["as_of"])
    return dates.min().date().isoformat(), dates.max().date().isoformat()


def matured(frame: pd.DataFrame, *, horizon_days: int, as_of: date) -> pd.DataFrame:
    """The snapshots whose label is known on ``as_of`` (``snapshot + horizon <= as_of``), with a label.

    Args:
        frame: labelled snapshots with ``as_of`` and ``churned``.
        horizon_days: the label horizon in days.
        as_of: the day the model is trained ("today").

    Returns:
        The rows with a matured, non-missing label (a new frame; the input is not changed).
    """
    dates = pd.to_datetime(frame["as_of"])
    cutoff = pd.Timestamp(as_of) - pd.Timedelta(days=horizon_days)
    keep = (dates <= cutoff) & frame[LABEL].notna()
    return frame.loc[keep]


def check_labels(frame: pd.DataFrame, *, where: str, horizon_days: int) -> None:
    """Raise :class:`DataError` when ``frame`` has no rows or only one class of label.

    Args:
        frame: labelled snapshots.
        where: what the rows are, for the message ("the matured snapshots", "the test period").
        horizon_days: the label horizon, for the advice in the message.
    """
    if frame.empty:
        raise DataError(f"{where} are empty: there is nothing to learn from")
    labels = frame[LABEL].astype(int)
    rate = float(labels.mean())
    if rate == 0.0:
        raise DataError(
            f"no customer was lost in {where} ({len(frame)} customer-dates, {_describe_period(frame)}): "
            f"a model needs lost customers to learn from; give a longer history, or a shorter horizon "
            f"than {horizon_days} days (`--horizon`)"
        )
    if rate == 1.0:
        raise DataError(
            f"every customer was lost in {where} ({len(frame)} customer-dates, {_describe_period(frame)}): "
            f"check that the orders table holds the whole history, or use a longer horizon than "
            f"{horizon_days} days (`--horizon`)"
        )


def _describe_period(frame: pd.DataFrame) -> str:
    first, last = _period(frame)
    return f"snapshots {first} to {last}" if first != last else f"snapshot {first}"


def time_split(frame: pd.DataFrame, *, horizon_days: int, config: SplitConfig | None = None) -> TimeSplit:
    """Split matured, labelled snapshots by time: oldest = train, then validation, latest = test.

    Args:
        frame: labelled snapshots (``customer_id``, ``as_of``, ``churned``, features), all matured.
        horizon_days: the label horizon in days.
        config: the sizes of the parts and the minimum test size; defaults when ``None``.

    Returns:
        The split; every customer-date is in exactly one part, and each part ends at least
        ``gap_days`` before the next one starts.

    Raises:
        DataError: no snapshot, one class of label, too few snapshot dates for the three parts,
            or too few customers or lost customers in the test period.
    """
    config = config or SplitConfig()
    gap = horizon_days if config.gap_days is None else config.gap_days
    if frame.empty:
        raise DataError(
            f"no matured snapshot: every label needs {horizon_days} days of history after its snapshot; "
            f"give a longer order history or a shorter horizon (`--horizon`)"
        )
    duplicated = frame.duplicated(list(KEY))
    if duplicated.any():
        raise DataError(
            f"{int(duplicated.sum())} customer-dates appear twice in the labelled snapshots "
            f"(first: {frame.loc[duplicated, list(KEY)].iloc[0].tolist()}): each customer needs one row per as-of date"
        )
    check_labels(frame, where="the matured snapshots", horizon_days=horizon_days)

    as_of = pd.to_datetime(frame["as_of"])
    dates = np.sort(as_of.unique())
    test_dates = dates[-config.test_snapshots:]
    valid_end = pd.Timestamp(test_dates[0]) - pd.Timedelta(days=gap)
    valid_dates = dates[dates <= valid_end][-config.valid_snapshots:]
    train_dates = dates[dates <= pd.Timestamp(valid_dates[0]) - pd.Timedelta(days=gap)] if len(valid_dates) else dates[:0]
    if len(dates) <= config.test_snapshots or len(valid_dates) == 0 or len(train_dates) < config.min_train_snapshots:
        raise ShortHistoryError(
            f"too little matured history for an honest time split: {len(dates)} snapshot dates from "
            f"{pd.Timestamp(dates[0]).date()} to {pd.Timestamp(dates[-1]).date()}; the split needs "
            f"{config.test_snapshots} test dates, {config.valid_snapshots} validation dates ending {gap} days "
            f"before the test period, and {config.min_train_snapshots} training dates ending {gap} days before "
            f"the validation period; give a longer order history, a shorter horizon (`--horizon`), "
            f"or a later `--as-of`"
        )

    parts = {
        "train": frame.loc[as_of.isin(train_dates)],
        "valid": frame.loc[as_of.isin(valid_dates)],
        "test": frame.loc[as_of.isin(test_dates)],
    }
    test = parts["test"]
    customers = int(test["customer_id"].nunique())
    churned = int(test[LABEL].astype(int).sum())
    if customers < config.min_test_customers or churned < config.min_test_churned:
        raise DataError(
            f"the test period ({_describe_period(test)}) has {customers} customers and {churned} lost customers; "
            f"at least {config.min_test_customers} customers and {config.min_test_churned} lost ones are needed "
            f"to measure a model; give data with more customers or a longer history"
        )
    for name, part in parts.items():
        check_labels(part, where=f"the {name} period", horizon_days=horizon_days)
    return TimeSplit(
        train=parts["train"].sort_values(list(KEY), kind="stable").reset_index(drop=True),
        valid=parts["valid"].sort_values(list(KEY), kind="stable").reset_index(drop=True),
        test=parts["test"].sort_values(list(KEY), kind="stable").reset_index(drop=True),
        horizon_days=horizon_days,
        gap_days=gap,
    )



@dataclass(frozen=True)
class CustomerFolds:
    """The short-history fallback: all matured snapshots, each customer in one of ``k`` folds.

    Attributes:
        frame: the labelled snapshots, sorted by ``customer_id`` and ``as_of``.
        fold: the fold (0 to k - 1) of each row; every row of a customer has the same fold.
        k: the number of folds.
        horizon_days: the label horizon.
    """

    frame: pd.DataFrame
    fold: np.ndarray
    k: int
    horizon_days: int
    evaluation: Evaluation = CUSTOMER_CV

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(fit, held_out)`` boolean row masks, one pair per fold."""
        return [(self.fold != j, self.fold == j) for j in range(self.k)]

    def periods(self) -> dict[str, tuple[str, str]]:
        """First and last as-of date (ISO) of the rows, under the names of the time split's parts.

        Returns:
            ``{"train": (first, last), "valid": ..., "test": ...}``, all the same period: every
            customer is fitted on in some folds and held out in one.
        """
        period = _period(self.frame)
        return {"train": period, "valid": period, "test": period}

    def summary(self) -> dict[str, object]:
        """Sizes, churn rate and period, with the keys of :meth:`TimeSplit.summary`, for logging.

        Returns:
            A flat dict; ``evaluation`` is "customer-cv" and ``folds`` the number of folds.
        """
        first, last = _period(self.frame)
        out: dict[str, object] = {"horizon_days": self.horizon_days, "gap_days": 0, "evaluation": self.evaluation, "folds": self.k}
        for name in ("train", "valid", "test"):
            out[f"{name}_rows"] = len(self.frame)
            out[f"{name}_customers"] = int(self.frame["customer_id"].nunique())
            out[f"{name}_snapshots"] = int(self.frame["as_of"].nunique())
            out[f"{name}_churn_rate"] = round(float(self.frame[LABEL].mean()), 6)
            out[f"{name}_first"] = first
            out[f"{name}_last"] = last
        return out


def customer_folds(frame: pd.DataFrame, *, horizon_days: int, config: SplitConfig | None = None, seed: int = 42) -> CustomerFolds:
    """Assign customers (with all their snapshots) to folds at random, for the short-history fallback.

    Args:
        frame: labelled, matured snapshots.
        horizon_days: the label horizon.
        config: ``folds`` and the minimum customers and lost customers (over all rows).
        seed: the seed of the assignment (the same customers get the same folds for any row order).

    Returns:
        The folds.

    Raises:
        DataError: one class of label, too few customers or lost customers, or a fold without both classes.
    """
    config = config or SplitConfig()
    check_labels(frame, where="the matured snapshots", horizon_days=horizon_days)
    ordered = frame.sort_values(list(KEY), kind="stable").reset_index(drop=True)
    customers = np.sort(ordered["customer_id"].astype(str).unique())
    churned = int(ordered.groupby("customer_id")[LABEL].max().sum())
    if len(customers) < max(config.min_test_customers, 2 * config.folds) or churned < config.min_test_churned:
        raise DataError(
            f"the matured snapshots ({_describe_period(ordered)}) have {len(customers)} customers, {churned} of them lost "
            f"at least once; at least {config.min_test_customers} customers and {config.min_test_churned} lost ones are "
            "needed to measure a model; give data with more customers or a longer history"
        )
    assignment = np.random.default_rng(seed).permutation(len(customers)) % config.folds
    fold = pd.Series(assignment, index=customers).reindex(ordered["customer_id"].astype(str)).to_numpy()
    for j in range(config.folds):
        check_labels(ordered.loc[fold == j], where=f"fold {j + 1} of the customers", horizon_days=horizon_days)
    return CustomerFolds(frame=ordered, fold=fold, k=config.folds, horizon_days=horizon_days)


def split_for_training(
    frame: pd.DataFrame, *, horizon_days: int, config: SplitConfig | None = None, seed: int = 42
) -> TimeSplit | CustomerFolds:
    """The time split, or folds of customers when the history is too short for one (and the config allows).

    Args:
        frame: labelled, matured snapshots.
        horizon_days: the label horizon.
        config: split sizes and the short-history policy.
        seed: the seed of the customer folds.

    Returns:
        A :class:`TimeSplit` (``evaluation`` "later-period") or :class:`CustomerFolds` ("customer-cv").

    Raises:
        DataError: see :func:`time_split` and :func:`customer_folds`.
    """
    config = config or SplitConfig()
    try:
        return time_split(frame, horizon_days=horizon_days, config=config)
    except ShortHistoryError:
        if config.short_history != "auto":
            raise
    return customer_folds(frame, horizon_days=horizon_days, config=config, seed=seed)
