"""The honest time split of labelled snapshots: train, then validation, then test, never random.

A snapshot taken on day ``d`` has a label that is only known on ``d + horizon``. A split that ends
on day ``s`` therefore keeps only the snapshots whose labels matured before the next split starts
(``d + horizon <= s``): the model never learns from an outcome that happened inside the period it
is judged on, exactly as if it had been trained on the first day of that period.

A short history (a few months of weekly matured snapshots) cannot hold three parts a horizon
apart. Then :func:`split_for_training` keeps the order but drops the gaps: the latest weeks are
the test period, the weeks before them the validation period, the rest training
(``evaluation`` "later-period-overlap"). Every part still lies later than the one before, but the
label windows of neighbouring parts overlap, so its figures lean optimistic; the rolling backtest
(``churn backtest``), which scores as of T and compares with what happened, is the honest test.
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
Evaluation = Literal["later-period", "later-period-overlap"]
LATER_PERIOD: Evaluation = "later-period"
OVERLAPPING: Evaluation = "later-period-overlap"
SHORT_PART_SHARE = 0.2
"""On a short history, the test and the validation period each take this share of the snapshot dates (at least one)."""
SHORT_CUSTOMER_SHARES = (0.6, 0.2, 0.2)
"""On a short history, the shares of customers whose rows may go to training, validation and test."""


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
        short_history: "auto" drops the gaps when the time split is impossible (see
            :func:`split_for_training`); "fail" raises instead.
    """

    test_snapshots: int = 3
    valid_snapshots: int = 3
    gap_days: int | None = None
    min_train_snapshots: int = 2
    min_test_customers: int = 100
    min_test_churned: int = 10
    short_history: Literal["auto", "fail"] = "auto"


@dataclass(frozen=True)
class TimeSplit:
    """Train, validation and test frames of one time split (each a slice of the labelled snapshots).

    Attributes:
        train: the oldest snapshots, for fitting.
        valid: the snapshots that choose the candidate, its trees and its blend weights.
        test: the latest matured snapshots, for the reported metrics and the served model's calibration.
        horizon_days: the label horizon the split was made for.
        gap_days: the gap left between the parts.
        evaluation: "later-period", or "later-period-overlap" when the parts' label windows overlap.
        matured: every matured snapshot (the parts and the gaps between them): what the served model is refitted on.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    horizon_days: int
    gap_days: int
    evaluation: Evaluation = LATER_PERIOD
    matured: pd.DataFrame | None = None

    @property
    def short(self) -> bool:
        """Whether the parts' label windows overlap (a short history)."""
        return self.evaluation == OVERLAPPING

    def before_test(self) -> pd.DataFrame:
        """Every matured snapshot whose label was known when the test period began (on a short history,
        of customers outside the test period): what the tested model is fitted on."""
        rows = self.everything()
        first = pd.to_datetime(self.test["as_of"]).min()
        dates = pd.to_datetime(rows["as_of"])
        keep = (dates <= first - pd.Timedelta(days=self.gap_days)) & (dates < first)
        if self.short:
            keep &= ~rows["customer_id"].isin(set(self.test["customer_id"]))
        return rows.loc[keep].reset_index(drop=True)

    def everything(self) -> pd.DataFrame:
        """Every matured snapshot, oldest first."""
        if self.matured is not None:
            return self.matured
        return pd.concat([self.train, self.valid, self.test], ignore_index=True)

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
        for name, frame in {**self.parts(), "refit": self.everything()}.items():
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
        The split; every customer-date is in at most one part, and each part ends at least
        ``gap_days`` before the next one starts.

    Raises:
        ShortHistoryError: too few snapshot dates for the three parts.
        DataError: no snapshot, one class of label, or too few customers or lost customers in the test period.
    """
    config = config or SplitConfig()
    gap = horizon_days if config.gap_days is None else config.gap_days
    _check_frame(frame, horizon_days)
    dates = np.sort(pd.to_datetime(frame["as_of"]).unique())
    found = _part_dates(dates, gap, config.test_snapshots, config.valid_snapshots, config.min_train_snapshots)
    if found is None:
        raise ShortHistoryError(
            f"too little matured history for an honest time split: {len(dates)} snapshot dates from "
            f"{pd.Timestamp(dates[0]).date()} to {pd.Timestamp(dates[-1]).date()}; the split needs "
            f"{config.test_snapshots} test dates, {config.valid_snapshots} validation dates ending {gap} days "
            f"before the test period, and {config.min_train_snapshots} training dates ending {gap} days before "
            f"the validation period; give a longer order history, a shorter horizon (`--horizon`), "
            f"or a later `--as-of`"
        )
    return _make_split(frame, found, horizon_days=horizon_days, gap=gap, evaluation=LATER_PERIOD, config=config)


def _check_frame(frame: pd.DataFrame, horizon_days: int) -> None:
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


def _part_dates(dates: np.ndarray, gap: int, n_test: int, n_valid: int, min_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The snapshot dates of train, validation and test, or None when they do not fit."""
    test_dates = dates[-n_test:]
    valid_end = pd.Timestamp(test_dates[0]) - pd.Timedelta(days=gap)
    valid_dates = dates[(dates <= valid_end) & (dates < test_dates[0])][-n_valid:]
    if len(dates) <= n_test or len(valid_dates) == 0:
        return None
    train_end = pd.Timestamp(valid_dates[0]) - pd.Timedelta(days=gap)
    train_dates = dates[(dates <= train_end) & (dates < valid_dates[0])]
    if len(train_dates) < min_train:
        return None
    return train_dates, valid_dates, test_dates


def _make_split(
    frame: pd.DataFrame,
    found: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    horizon_days: int,
    gap: int,
    evaluation: Evaluation,
    config: SplitConfig,
    groups: pd.Series | None = None,
) -> TimeSplit:
    as_of = pd.to_datetime(frame["as_of"])
    parts = {name: frame.loc[as_of.isin(d)] for name, d in zip(("train", "valid", "test"), found, strict=True)}
    if groups is not None:
        group = frame["customer_id"].astype(str).map(groups)
        parts = {name: part.loc[group.loc[part.index] == k] for k, (name, part) in enumerate(parts.items())}
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
    ordered = {name: part.sort_values(list(KEY), kind="stable").reset_index(drop=True) for name, part in parts.items()}
    return TimeSplit(
        **ordered,
        horizon_days=horizon_days,
        gap_days=gap,
        evaluation=evaluation,
        matured=frame.sort_values(["as_of", "customer_id"], kind="stable").reset_index(drop=True),
    )


def split_for_training(frame: pd.DataFrame, *, horizon_days: int, config: SplitConfig | None = None, seed: int = 42) -> TimeSplit:
    """The time split, or on a short history the same order without the gaps (when the config allows).

    The short-history split gives the latest :data:`SHORT_PART_SHARE` of the snapshot dates (at
    least one) to the test period, as many before them to validation, and the rest to training.
    Parts are still in time order, but neighbouring label windows overlap (``evaluation``
    "later-period-overlap"), so each part also takes its own customers (:data:`SHORT_CUSTOMER_SHARES`,
    drawn with ``seed``): a model must not be judged on customers whose next weeks it learned.

    Args:
        frame: labelled, matured snapshots.
        horizon_days: the label horizon.
        config: sizes of the time split and the short-history policy.
        seed: the seed of the short history's customer groups.

    Returns:
        The split.

    Raises:
        DataError: see :func:`time_split`; on a short history, also fewer than three snapshot dates.
    """
    config = config or SplitConfig()
    try:
        return time_split(frame, horizon_days=horizon_days, config=config)
    except ShortHistoryError:
        if config.short_history != "auto":
            raise
    dates = np.sort(pd.to_datetime(frame["as_of"]).unique())
    n = max(1, int(round(SHORT_PART_SHARE * len(dates))))
    found = _part_dates(dates, 0, n, n, 1)
    if found is None:
        raise ShortHistoryError(
            f"too little matured history to learn from: {len(dates)} snapshot date(s) from {pd.Timestamp(dates[0]).date()} "
            f"to {pd.Timestamp(dates[-1]).date()}; at least three are needed (one to fit on, one to choose the model, "
            f"one to test it); give a longer order history, a shorter horizon (`--horizon`), or a later `--as-of`"
        )
    ids = np.sort(frame["customer_id"].astype(str).unique())
    draw = np.random.default_rng(seed).random(len(ids))
    groups = pd.Series(np.searchsorted(np.cumsum(SHORT_CUSTOMER_SHARES)[:-1], draw, side="right"), index=ids)
    return _make_split(frame, found, horizon_days=horizon_days, gap=0, evaluation=OVERLAPPING, config=config, groups=groups)
